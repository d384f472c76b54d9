"""How soon N server processes on one index folder serve what another process commits.

    .venv/bin/python bench/follow.py [--servers 2] [--writes 10] [--interval 0.25]

Builds a temporary index of the bundled corpus, starts ``--servers`` API processes on it (``uvicorn
--factory rag.http.app:create_default_app``, each on its own 127.0.0.1 port, ``RAG_FOLLOW_INTERVAL``
``--interval``), then from this process alternately adds and deletes a short article ``--writes`` times,
as ``rag index`` does, and polls every server's ``GET /ready`` every 10 ms until it names the committed
version. Prints the delay from commit to served, per server, median and max. Loopback only; the
servers are stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.types import Article  # noqa: E402
from rag.service import index_paths, make_embedder  # noqa: E402
from rag.settings import Settings  # noqa: E402

ARTICLE = Article("breve-rome", "Le métro de Rome ouvre une station au Colisée",
                  "La ligne C du métro de Rome dessert depuis lundi une station sous le Colisée. "
                  "Les archéologues y ont trouvé des thermes du IIe siècle.", "2025-06-01", language="fr")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--writes", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.25, help="RAG_FOLLOW_INTERVAL of the servers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsrag-follow-") as tmp:
        settings = Settings(index_dir=Path(tmp) / "index")
        embedder = make_embedder(settings)
        index_paths(settings, embedder, settings.corpus_dirs)
        ports = [_free_port() for _ in range(args.servers)]
        servers = [_start(settings, port, args.interval, Path(tmp) / f"server{i}.log") for i, port in enumerate(ports)]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in urls:
                _wait(lambda url=url: _version(url) is not None, 600)
            delays: list[list[float]] = [[] for _ in urls]
            for n in range(args.writes):
                change = {"articles": [ARTICLE]} if n % 2 == 0 else {"delete": [ARTICLE.id]}
                data, _ = index_paths(settings, embedder, [], **change)
                committed, version = time.monotonic(), Path(data.path).name
                pending = set(range(len(urls)))
                while pending and time.monotonic() - committed < 30:
                    for i in list(pending):
                        if _version(urls[i]) == version:
                            delays[i].append(time.monotonic() - committed)
                            pending.discard(i)
                    time.sleep(0.01)
                if pending:
                    sys.exit(f"server(s) {sorted(pending)} did not serve {version} within 30 s")
            print(f"{args.servers} server processes, follow interval {args.interval} s, {args.writes} writes "
                  f"(add/delete), {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
            for i, d in enumerate(delays):
                print(f"  server {i}: commit -> served  median {1000 * statistics.median(d):6.0f} ms   "
                      f"max {1000 * max(d):6.0f} ms")
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)
    return 0


def _start(settings: Settings, port: int, interval: float, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAG_INDEX_DIR": str(settings.index_dir), "HF_HUB_OFFLINE": "1",
           "RAG_FOLLOW_INTERVAL": str(interval)}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "rag.http.app:create_default_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _version(url: str) -> str | None:
    try:
        return httpx.get(f"{url}/ready", timeout=2).json()["version"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"not ready within {timeout:.0f} s")
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
