"""Archives on a Ray cluster: chunks/s of ``rag index --ray`` with 1 and 2 nodes, against a local index.

    .venv/bin/python bench/ray_ingest.py [--source ../shared/datasets/piaf-v1.0/piaf-v1.0.json] [--limit N]

The same articles are indexed four times into fresh folders: locally (``update_index`` with the settings'
model, loaded first), with torch on every core and on one thread as in an actor; then through
``index.distributed.index_on_ray`` on a local Ray cluster of 1 node, then of 2 nodes (tests/ray_cluster.py:
``ray start`` on loopback addresses, one CPU and one embedding actor per node, one torch thread per actor).
Ray's times include starting the actors and loading a model in each; "then" is the rate of one actor's
embedding once its model is loaded (passages / the actors' time in ``embed``). The Ray indexes are checked
against the local one: same chunk ids, cosine of every vector pair.

On the project's 2-core machines the nodes share the same two cores: the second node adds a second actor,
not hardware, and the driver and the Ray daemons compete with the actors. The numbers show what Ray costs
(actor start, a model per actor, moving texts and vectors), not the speed-up of a real second machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.build import update_index  # noqa: E402
from index.distributed import index_on_ray  # noqa: E402
from index.loaders import load_articles  # noqa: E402
from index.store import IndexStore  # noqa: E402
from rag.service import embedder_options, make_chunker, make_embedder  # noqa: E402
from rag.settings import get_settings  # noqa: E402
from tests.ray_cluster import local_cluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared/datasets/piaf-v1.0/piaf-v1.0.json"),
                        help="articles to index (any format `rag index` reads); default PIAF v1.0")
    parser.add_argument("--limit", type=int, default=60, help="articles to use (default 60)")
    parser.add_argument("--nodes", default="1,2", help="cluster sizes to run (default 1,2)")
    args = parser.parse_args()
    settings = get_settings()
    articles = load_articles([args.source])[: args.limit]
    chunker = make_chunker(settings)
    started = time.perf_counter()
    embedder = make_embedder(settings)
    load_s = time.perf_counter() - started
    print(f"articles: {len(articles)}  model: {embedder.name}  CPUs: {os.cpu_count()}  "
          f"load average: {os.getloadavg()[0]:.1f}")
    local = None
    for threads in (torch.get_num_threads(), 1):  # 1: what each Ray actor has
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            local, _ = update_index(IndexStore(tmp), embedder, chunker, articles)
            local_s = time.perf_counter() - started
        print(f"local, {threads} torch thread(s)            : {len(local.chunks) / local_s:6.1f} chunks/s "
              f"({len(local.chunks)} chunks in {local_s:.1f} s; {load_s:.1f} s model load not counted)")
    env = {"RAG_CACHE_DIR": str(settings.cache_dir), "HF_HUB_OFFLINE": "1"}
    for nodes in [int(n) for n in args.nodes.split(",")]:
        with local_cluster(nodes=nodes, cpus=1, env=env) as cluster, tempfile.TemporaryDirectory() as tmp:
            data, report, run = index_on_ray(IndexStore(tmp), cluster.address, settings.embedding_model,
                                             embedder_options(settings), chunker, articles, lambda: embedder)
        same = [c.id for c in data.chunks] == [c.id for c in local.chunks]
        cosine = float(np.min(np.sum(np.asarray(data.vectors[np.arange(len(data.chunks))]) *
                                     np.asarray(local.vectors[np.arange(len(local.chunks))]), axis=1)))
        print(f"ray, {nodes} node(s), {run.actors} actor(s)        : {run.per_second:6.1f} chunks/s "
              f"({run.seconds:.1f} s; models loaded in up to {run.load_s:.1f} s, then "
              f"{run.per_actor_second:.1f} chunks/s per actor; {run.nodes} node(s) used; same chunk ids: {same}; "
              f"lowest cosine {cosine:.6f})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
