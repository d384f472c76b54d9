"""Ingest throughput per engine: the whole indexing pipeline and the raw embedder, torch fp32 against OpenVINO int8.

    .venv/bin/python bench/ingest.py [--source ../shared/datasets/piaf-v1.0/piaf-v1.0.json] [--limit N]
                                     [--rounds 2] [--engines torch openvino]

For each engine (``RAG_ENGINE``: the default model run by torch fp32 or by OpenVINO with int8 weights), in
rounds that alternate the engines (the shared machine's load drifts): chunks/s of (a) the embedder alone on
the exact passage texts the index embeds, and (b) ``update_index`` from loaded articles to a written index
(chunking, embedding, FAISS, BM25, atomic write). Prints the load average, the medians, each engine's ratio
to the first one, the pipeline's share of the raw speed (target >= 90%), and the cosine between the engines'
vectors of the same chunks (the adoption rule asks >= 0.99; nDCG@10 is bench/encoders.py --ndcg).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.build import passage_text, update_index  # noqa: E402
from index.loaders import load_articles  # noqa: E402
from index.store import IndexStore  # noqa: E402
from rag.service import make_chunker, make_embedder  # noqa: E402
from rag.settings import get_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared/datasets/piaf-v1.0/piaf-v1.0.json"),
                        help="articles to ingest (any format `rag index` reads); default PIAF v1.0")
    parser.add_argument("--limit", type=int, default=60, help="articles to use (default 60)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each running every engine (default 2)")
    parser.add_argument("--engines", nargs="+", default=["torch", "openvino"], choices=["torch", "openvino"])
    args = parser.parse_args()
    settings = get_settings()
    articles = load_articles([args.source])[: args.limit]
    chunker = make_chunker(settings)
    texts = [passage_text(c) for a in articles for c in chunker.chunk(a)]
    embedders = {e: make_embedder(settings.model_copy(update={"engine": e})) for e in args.engines}
    for embedder in embedders.values():
        embedder.embed(texts[:64], "passage")  # warm-up
    raw: dict[str, list[float]] = {e: [] for e in embedders}
    pipeline: dict[str, list[float]] = {e: [] for e in embedders}
    vectors: dict[str, np.ndarray] = {}
    print(f"articles: {len(articles)}  chunks: {len(texts)}  batch: {settings.embed_batch_size}  "
          f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    for r in range(args.rounds):
        order = list(embedders) if r % 2 == 0 else list(reversed(embedders))
        for engine in order:
            started = time.perf_counter()
            vectors[engine] = embedders[engine].embed(texts, "passage")
            raw[engine].append(len(texts) / (time.perf_counter() - started))
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                data, _ = update_index(IndexStore(tmp), embedders[engine], chunker, articles)
                pipeline[engine].append(len(data.chunks) / (time.perf_counter() - started))
            print(f"  round {r + 1} {engine:<9} raw {raw[engine][-1]:6.1f}  pipeline {pipeline[engine][-1]:6.1f} "
                  f"chunks/s  (load {os.getloadavg()[0]:.1f})", flush=True)
    first = args.engines[0]
    base = statistics.median(pipeline[first])
    for engine in embedders:
        p, a = statistics.median(pipeline[engine]), statistics.median(raw[engine])
        print(f"{engine:<9} raw {a:6.1f} chunks/s  pipeline {p:6.1f} chunks/s  ×{p / base:.2f} of {first}  "
              f"pipeline / raw {p / a:.1%} (target >= 90%)")
    for engine in list(embedders)[1:]:
        cos = (vectors[engine] * vectors[first]).sum(1)
        print(f"cosine {engine} vs {first}: min {cos.min():.5f}  mean {cos.mean():.5f}  (rule: >= 0.99)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
