"""Load benchmark of ``POST /ask``: p50/p95 latency and requests/s at 1, 4 and 16 concurrent clients.

    .venv/bin/python bench/load.py [--requests 200] [--clients 1 4 16] [--backend reader] [--mode hybrid]
                                   [--workers 1] [--faiss-threads 1] [--torch-threads 0] [--engine openvino]

Starts the API alone (``uvicorn --factory rag.http.app:create_default_app``) in a subprocess on
127.0.0.1, on a temporary index of the bundled corpus with the real default model, asks every
question once to warm it up, then for each number of clients sends ``--requests`` questions (and
stops a level after ``--budget`` seconds) from that many concurrent clients. ``--workers N`` serves
with N processes on the one index (``uvicorn --workers N``; each follows the folder), ``--faiss-threads``
sets ``RAG_FAISS_THREADS`` (0: FAISS's default, every core). Loopback only; the server is stopped at
the end. Targets at 1 client: p95 <= 300 ms with the reader (the default), <= 100 ms with the extractive backend.
"""
from __future__ import annotations

import argparse
import asyncio
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
QUESTIONS = [
    "Combien Microsoft a-t-il investi dans OpenAI ?",
    "How much has Microsoft invested in OpenAI?",
    "Avec qui Sam Altman a-t-il discuté de l'avenir du partenariat ?",
    "Quand Sam Altman a-t-il parlé de son échange avec Satya Nadella ?",
    "Quels produits de Microsoft reposent sur les technologies d'OpenAI ?",
    "What are OpenAI and Microsoft renegotiating?",
    "Pourquoi des dirigeants d'OpenAI envisagent-ils une procédure officielle ?",
    "Depuis quand Microsoft et OpenAI travaillent-ils ensemble ?",
    "Quelle est la recette de la ratatouille ?",
    "Who won the 2024 Champions League final?",
]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per level of concurrency."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="newsrag-load-") as tmp:
        port = _free_port()
        server, log = _start_server(Path(tmp), port, args)
        try:
            url = f"http://127.0.0.1:{port}"
            ready = _wait_ready(url, server, log, args.start_timeout)
            print(f"server: {ready['articles']} article(s), {ready['chunks']} chunks, model {ready['model']}, "
                  f"backend {args.backend}, engine {args.engine}, mode {args.mode or 'default'}, "
                  f"{args.workers} process(es), "
                  f"FAISS threads {args.faiss_threads or 'default'}, model threads {args.torch_threads or 'default'}, "
                  f"{os.cpu_count()} CPU(s), loopback, "
                  f"load average {os.getloadavg()[0]:.1f}")
            asyncio.run(_levels(url, args, server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200, help="requests per level (default 200)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    p.add_argument("--backend", default="reader", help="answer backend of each request (default: reader)")
    p.add_argument("--mode", default=None, help="retrieval mode sent with each question (default: the server's)")
    p.add_argument("--budget", type=float, default=120.0, help="seconds at most per level")
    p.add_argument("--start-timeout", type=float, default=600.0, help="seconds to wait for the index and model")
    p.add_argument("--workers", type=int, default=1, help="server processes on the one index (uvicorn --workers)")
    p.add_argument("--faiss-threads", type=int, default=1, help="RAG_FAISS_THREADS of the server (0: FAISS's default)")
    p.add_argument("--torch-threads", type=int, default=0, help="RAG_TORCH_THREADS of the server: threads per "
                   "inference of its models (0: every core)")
    p.add_argument("--engine", default="openvino", choices=["openvino", "torch"], help="RAG_ENGINE of the server")
    return p


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(tmp: Path, port: int, args) -> tuple[subprocess.Popen, Path]:
    """The API in its own process(es) (so that the load generator does not share its GIL)."""
    if args.workers > 1:  # build the index once, before the workers start (each would otherwise sync it)
        env = {**os.environ, "RAG_INDEX_DIR": str(tmp / "index"), "RAG_CORPUS_DIRS": str(ROOT / "corpus")}
        subprocess.run([sys.executable, "-m", "newsrag.cli", "index", str(ROOT / "corpus")], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL)
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp / "index"), "RAG_CORPUS_DIRS": str(ROOT / "corpus"),
           "RAG_BACKEND": args.backend, "HF_HUB_OFFLINE": "1", "RAG_FAISS_THREADS": str(args.faiss_threads),
           "RAG_TORCH_THREADS": str(args.torch_threads), "RAG_ENGINE": args.engine}
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "rag.http.app:create_default_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log", "--workers", str(args.workers)]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), log


def _wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server stopped:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/ready", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    sys.exit(f"the server was not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


async def _levels(url: str, args, pid: int) -> None:
    limits = httpx.Limits(max_connections=max(args.clients), max_keepalive_connections=max(args.clients))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        for question in QUESTIONS:  # warm-up: the backends cache sentence vectors
            (await client.post("/ask", json=_body(question, args))).raise_for_status()
        print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
              f"{'req/s':>6} {'server p50: total':>17} {'embed':>6} {'generate':>8} {'CPU ms/req':>10}")
        for clients in args.clients:
            cpu = _cpu_seconds(pid)
            latencies, server_ms, errors, seconds = await _level(client, clients, args)
            cpu_ms = (_cpu_seconds(pid) - cpu) * 1000 / max(1, len(latencies))
            print(_row(clients, latencies, server_ms, errors, seconds) + f" {cpu_ms:>10.1f}", flush=True)


async def _level(client: httpx.AsyncClient, clients: int, args) -> tuple[list[float], list[dict], int, float]:
    """Latencies (client side), the server's own step timings, errors and wall time of one level."""
    latencies, server_ms, errors, sent = [], [], 0, 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal errors, sent
        while sent < args.requests and time.perf_counter() - started < args.budget:
            question = QUESTIONS[sent % len(QUESTIONS)]
            sent += 1
            t0 = time.perf_counter()
            r = await client.post("/ask", json=_body(question, args))
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                errors += 1
            else:
                server_ms.append(r.json()["timings_ms"])

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, server_ms, errors, time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the server process and its workers have used: a cost that other load on the
    machine does not inflate much, unlike latency."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _body(question: str, args) -> dict:
    return {"question": question, "backend": args.backend, **({"mode": args.mode} if args.mode else {})}


def _row(clients: int, latencies: list[float], server_ms: list[dict], errors: int, seconds: float) -> str:
    p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
    step = {k: statistics.median(t.get(k, 0) for t in server_ms) if server_ms else 0
            for k in ("total", "embed", "generate")}
    return (f"{clients:>7} {len(latencies):>8} {errors:>6} {p50:>7.1f} {p95:>7.1f} {max(latencies):>7.1f} "
            f"{len(latencies) / seconds:>6.1f} {step['total']:>17.1f} {step['embed']:>6.1f} {step['generate']:>8.1f}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


if __name__ == "__main__":
    sys.exit(main())
