"""Servers follow the index folder: what another process commits (the CLI, another replica) is served.

The unit tests run the follower in this process on a fake-embedder index; the last test starts two real
API processes (uvicorn, the real model) on one index folder and writes to it from here, as `rag index`
does, timing how long each takes to serve the new version.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from index.store import IndexStore
from index.types import Article
from rag.service import IndexFollower, index_paths
from tests.fakes import fake_pipeline

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = Path(__file__).parent / "data" / "articles"
ROME = ARTICLES / "metro-rome.md"


def _other_writer(pipeline, **kwargs):
    """A write by another process: straight to the store, the served pipeline not told."""
    return index_paths(pipeline.settings, pipeline.embedder, **kwargs)


def test_a_version_committed_elsewhere_is_served_and_an_older_one_never(tmp_path):
    pipeline = fake_pipeline(tmp_path / "index")
    follower = IndexFollower(pipeline, interval=0)
    assert not follower.check() and not follower.check(), "nothing new: nothing loaded"
    data, _ = _other_writer(pipeline, paths=[ROME])
    assert "metro-rome-ligne-c" not in pipeline.data.article_by_id
    assert follower.check() and pipeline.data.path == data.path and "metro-rome-ligne-c" in pipeline.data.article_by_id
    assert any(h.chunk.article_id == "metro-rome-ligne-c" for h in pipeline.search("métro de Rome archéologues"))
    _other_writer(pipeline, paths=[], delete=["metro-rome-ligne-c"])
    assert follower.check() and "metro-rome-ligne-c" not in pipeline.data.article_by_id
    assert all(h.chunk.article_id != "metro-rome-ligne-c" for h in pipeline.search("métro de Rome archéologues"))

    served = pipeline.data.path
    old = IndexStore(pipeline.data.path.parent)
    (old.root / "CURRENT").write_text(sorted(p.name for p in old.root.glob("v-*"))[0] + "\n")  # an older name
    follower.check()
    assert pipeline.data.path == served, "never swapped back to an older version"


def test_a_version_that_does_not_load_is_logged_and_the_served_one_kept(tmp_path, caplog):
    pipeline = fake_pipeline(tmp_path / "index")
    follower = IndexFollower(pipeline, interval=0)
    served = pipeline.data.path
    # Another process rebuilt the folder with another model: this server cannot read it.
    from index.build import update_index
    from index.chunker import Chunker
    from index.embedder import FakeEmbedder

    other, _ = update_index(IndexStore(tmp_path / "index"), FakeEmbedder(32), Chunker(), pipeline.data.articles,
                            rebuild=True)
    assert other.path != served
    with caplog.at_level(logging.ERROR, logger="rag"):
        assert not follower.check()
    assert pipeline.data.path == served and len(pipeline.search("Microsoft OpenAI")) > 0
    assert "not loaded, still serving" in caplog.text and "fake:32" in caplog.text
    caplog.clear()
    assert not follower.check() and not caplog.text, "the same version is not retried until a new commit"


def test_the_follower_thread_swaps_within_its_interval(tmp_path):
    pipeline = fake_pipeline(tmp_path / "index")
    follower = IndexFollower(pipeline, interval=0.05).start()
    try:
        data, _ = _other_writer(pipeline, paths=[ROME])
        deadline = time.monotonic() + 5
        while pipeline.data.path != data.path and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pipeline.data.path == data.path
    finally:
        follower.stop()


def test_an_api_delete_sees_an_article_the_cli_just_added(tmp_path):
    from rag.http.app import create_app
    from tests.live_server import live_server

    pipeline = fake_pipeline(tmp_path / "index", api_keys=["k"], follow_interval=3600)  # the thread never looks
    with live_server(create_app(lambda: pipeline, settings=pipeline.settings)) as url:
        _other_writer(pipeline, paths=[ROME])
        gone = httpx.delete(f"{url}/articles/metro-rome-ligne-c", headers={"authorization": "Bearer k"}, timeout=30)
        assert gone.status_code == 200, gone.text
        assert gone.json()["deleted"] == ["metro-rome-ligne-c"]


# --- two real server processes on one folder -------------------------------------------------------


def _start(index_dir: Path, cache_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "RAG_CACHE_DIR": str(cache_dir),
           "HF_HUB_OFFLINE": "1", "RAG_FOLLOW_INTERVAL": "0.25"}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "rag.http.app:create_default_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(condition, timeout: float) -> float:
    """Seconds until ``condition()`` held; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.slow
def test_two_server_processes_follow_a_cli_write_within_one_second(tmp_path, corpus_settings, embedder, e5_model_dir):
    settings = corpus_settings.model_copy(update={"index_dir": tmp_path / "index"})
    index_paths(settings, embedder, settings.corpus_dirs)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(e5_model_dir.parent)  # the model this session converted
    ports = [_free_port(), _free_port()]
    servers = [_start(settings.index_dir, cache, port, tmp_path / f"server{i}.log") for i, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]

    def ready(url: str) -> bool:
        try:
            return httpx.get(f"{url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def listed(url: str) -> set[str]:
        return {a["id"] for a in httpx.get(f"{url}/articles", timeout=5).json()}

    try:
        for url, server, i in zip(urls, servers, range(2)):
            try:
                _wait_until(lambda url=url: ready(url), 300)
            except AssertionError:
                server.terminate()
                raise AssertionError((tmp_path / f"server{i}.log").read_text()[-3000:]) from None
        article = Article("breve-rome", "Le métro de Rome ouvre une station au Colisée",
                          "La ligne C du métro de Rome dessert depuis lundi une station sous le Colisée. "
                          "Les archéologues y ont trouvé des thermes du IIe siècle.", "2025-06-01", language="fr")
        data, _ = index_paths(settings, embedder, [], articles=[article])  # what `rag index FILE` does
        committed = time.monotonic()
        version = Path(data.path).name
        for url in urls:
            _wait_until(lambda url=url: "breve-rome" in listed(url), 1.0 - (time.monotonic() - committed))
            assert httpx.get(f"{url}/ready", timeout=5).json()["version"] == version
        answer = httpx.post(f"{urls[1]}/ask", json={"question": "Qu'ont trouvé les archéologues sous le Colisée ?"},
                            timeout=60).json()
        assert "breve-rome" in {c["article_id"] for c in answer["citations"]}, answer

        index_paths(settings, embedder, [], delete=["breve-rome"])  # `rag index --delete breve-rome`
        committed = time.monotonic()
        for url in urls:
            _wait_until(lambda url=url: "breve-rome" not in listed(url), 1.0 - (time.monotonic() - committed))
        assert httpx.get(f"{urls[0]}/articles/breve-rome", timeout=5).status_code == 404
        answer = httpx.post(f"{urls[0]}/ask", json={"question": "Qu'ont trouvé les archéologues sous le Colisée ?"},
                            timeout=60).json()
        assert "breve-rome" not in {c["article_id"] for c in answer["citations"]}
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
