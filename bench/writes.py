"""What a write costs on a large index: add, replace and delete one article, before and after segments.

    .venv/bin/python bench/writes.py [--chunks 100000 300000 1000000] [--before-max 300000] [--keep DIR]

For each size a synthetic index is built (PIAF sentences, clustered vectors, four chunks per article, as
``bench/scale.py``) and written as one segment. Then, each in a fresh Python process whose time and peak
RSS (``ru_maxrss``) are printed:

- ``cli``: ``update_index`` as ``rag index`` runs it (the process loads the index itself);
- ``served``: the same write by a process that already serves the index (``reuse=``, as ``POST /articles``
  does, with the BM25 analyser and the tokenizer loaded); its load is not timed, its memory is counted;
- ``before``: the write as it was before segments (one segment rebuilt whole: FAISS and BM25), up to
  ``--before-max`` chunks (at 1M it is about 14 minutes, measured in issue 16);
- ``compact``: the compaction that folds the segments back into one (what runs in the background).

The article added has five chunks (the default chunker); its vectors come from the hash embedder, so the
times are the index's (the real e5 model adds about 1 s for five chunks on two cores). After the writes the
dense search p50/p95 over the segmented version (one small segment, tombstones) is printed beside the
one-segment version's. Numbers are for this machine under its load (printed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np
root, op, mode = sys.argv[1], sys.argv[3], sys.argv[4]
import index.build as build
from index.build import compact, update_index
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.store import IndexStore
from index.types import Article
import faiss
faiss.omp_set_num_threads(1)
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
store, emb, chunker = IndexStore(root), FakeEmbedder(384), Chunker()
text = open(sys.argv[5], encoding="utf-8").read()
reuse, loaded_mb = None, 0.0
if mode == "served":  # as a server that has answered questions: analyser and tokenizer loaded (and datasketch)
    from index.lexical import analyze
    from rag.service import warm_writer
    analyze("marché", "fr"), chunker.chunk(Article(id="warm", title="", text="Une phrase.")), warm_writer()
    reuse = store.load()
    reuse.vectors, reuse.faiss, [s.lexical for s in reuse.segments]  # noqa (as served: everything read)
    loaded_mb = rss()
if mode == "before":
    build.INCREMENTAL_MIN = 1 << 62
t, report = time.perf_counter(), None
if op == "add":
    _, report = update_index(store, emb, chunker, [Article(id="bench-new", title="Nouvel article", text=text,
                                                           language="fr")], reuse=reuse)
elif op == "replace":
    changed = Article(id="s7", title="Article remplacé", text=mode + " " + text[::-1], language="fr")
    _, report = update_index(store, emb, chunker, [changed], reuse=reuse)
elif op == "delete":
    _, report = update_index(store, emb, chunker, delete=["bench-new"], reuse=reuse)
elif op == "compact":
    compact(store)
seconds = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries the parent's maximum over fork and exec into ru_maxrss
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
out = {"seconds": seconds, "peak_mb": peak, "loaded_mb": loaded_mb}
if report is not None:
    out.update(chunks=report.chunks_embedded, incremental=report.incremental, steps=report.seconds)
if op == "search":
    data = store.load(verify=False)
    rng = np.random.default_rng(1)
    q = np.asarray(data.vectors[rng.integers(0, len(data.chunks), 300)], dtype=np.float32)
    q += rng.normal(scale=0.5 / np.sqrt(q.shape[1]), size=q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ms = []
    for v in q:
        t = time.perf_counter(); data.search(v, 10); ms.append(1000 * (time.perf_counter() - t))
    out.update(p50=float(np.percentile(ms, 50)), p95=float(np.percentile(ms, 95)), segments=len(data.segments),
               tombstones=data.tombstones)
print(json.dumps(out))
"""


def build_base(root: Path, n: int) -> dict:
    """A synthetic index of ``n`` chunks (articles of four chunks) written as one segment; what it cost."""
    from latency import PIAF, synthetic_chunks, synthetic_vectors

    from index.build import expected_manifest
    from index.chunker import Chunker
    from index.embedder import FakeEmbedder
    from index.store import ArticleRecord, IndexData, IndexStore, Segment

    rng = np.random.default_rng(0)
    chunks, _ = synthetic_chunks(PIAF, n, rng)
    by_article: dict[str, list] = {}
    for c in chunks:
        by_article.setdefault(c.article_id, []).append(c)
    records = [ArticleRecord(a, cs[0].title, "\n".join(c.text for c in cs), "", "", "", "fr", "", f"synthetic-{a}",
                             len(cs)) for a, cs in by_article.items()]
    vectors = synthetic_vectors(n, 384, rng)
    started = time.perf_counter()
    segment = Segment.build(records, chunks, vectors)
    build_s = time.perf_counter() - started
    del vectors
    manifest = {**expected_manifest(FakeEmbedder(384), Chunker()), "counts": {"articles": len(records), "chunks": n},
                "faiss": segment.info}
    store = IndexStore(root)
    started = time.perf_counter()
    with store.lock():
        store.write(IndexData.of_segments(manifest, [segment], {}))
    return {"build_s": build_s, "write_s": time.perf_counter() - started, "faiss": segment.info}


def run(root: Path, op: str, mode: str, text_file: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(ROOT), op, mode, str(text_file)],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{op} {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def article_text() -> str:
    """About five default chunks (256 tokens each) of PIAF sentences."""
    from latency import PIAF

    from common.sentences import split_sentences
    from index.chunker import Chunker
    from index.types import Article

    data = json.loads(PIAF.read_text(encoding="utf-8"))["data"]
    context = " ".join(p["context"] for p in data[3]["paragraphs"] + data[4]["paragraphs"])
    sentences = [context[a:b] for a, b in split_sentences(context)]
    chunker, text = Chunker(), ""
    for sentence in sentences:
        text += sentence + " "
        if len(chunker.chunk(Article(id="x", title="", text=text))) >= 5:
            break
    return text.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--before-max", type=int, default=300_000)
    parser.add_argument("--keep", type=Path, help="write the indexes here (default: a temporary folder)")
    parser.add_argument("--build", nargs=2, metavar=("ROOT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        root = Path(args.build[0])
        built = build_base(root, int(args.build[1]))
        (root / "built.json").write_text(json.dumps(built))
        return 0
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="newsrag-writes-") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        text_file = base / "article.txt"
        text_file.write_text(article_text(), encoding="utf-8")
        for n in args.chunks:
            root, built_root = base / f"n{n}", base / f"n{n}-base"
            if not (built_root / "CURRENT").exists():  # kept with --keep: a later run reuses it
                shutil.rmtree(built_root, ignore_errors=True)  # built in a process of its own, whose memory goes
                subprocess.run([sys.executable, __file__, "--build", str(built_root), str(n)], check=True)
            built = json.loads((built_root / "built.json").read_text())
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(built_root, root)
            faiss = built["faiss"]
            print(f"\n{n:,} chunks: base built in {built['build_s']:.0f} s (FAISS + BM25), written in "
                  f"{built['write_s']:.1f} s; {faiss['type']}"
                  + (f", efSearch {faiss['efSearch']} (recall@10 {faiss['recall@10']})" if "efSearch" in faiss
                     else ""), flush=True)
            print(f"{'write':>8} {'mode':>8} {'seconds':>8} {'peak MB':>8} {'served MB':>9}  steps", flush=True)
            plan = [(op, mode) for mode in ("cli", "served") for op in ("add", "replace", "delete")]
            plan += [("search", "cli"), ("compact", "cli"), ("search", "cli")]
            if n <= args.before_max:
                plan += [(op, "before") for op in ("add", "replace", "delete")]
            for op, mode in plan:
                r = run(root, op, mode, text_file)
                if op == "search":
                    print(f"{'search':>8} {'':>8} p50 {r['p50']:.2f} ms, p95 {r['p95']:.2f} ms over {r['segments']} "
                          f"segment(s), {r['tombstones']} tombstoned chunks", flush=True)
                    continue
                steps = " ".join(f"{k} {v}" for k, v in r.get("steps", {}).items())
                print(f"{op:>8} {mode:>8} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} "
                      f"{(format(r['loaded_mb'], '.0f') if r['loaded_mb'] else ''):>9}  {steps}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
