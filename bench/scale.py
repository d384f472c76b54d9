"""Index size at scale: build and write time, disk size, load time, RSS after load and after searches,
dense and hybrid search p95, recall@10 against exact search.

    .venv/bin/python bench/scale.py [--chunks 100000 300000] [--queries 300] [--keep DIR]

For each size, a synthetic index (PIAF sentences and clustered vectors, as ``bench/latency.py`` makes
them; one article per four chunks) is built with the FAISS structure ``index.store.build_faiss`` picks,
BM25 included, and written as a version through ``IndexStore.write``. A fresh Python process then loads
it (``IndexStore.load``, checksums not verified, then verified) and reports its RSS after the load and
after the searches (``served MB``: BM25 loaded, chunks read for the hits; ``anon MB``: the part of it that
is the process's own memory, the rest being pages of memory-mapped files, which the kernel can reclaim),
the dense search p50/p95 of queries near stored vectors (top 10, one thread), the hybrid p95 (dense top 50
and BM25 top 50 for a PIAF question, the best ten chunks read), and recall@10 of dense search against brute
force over the stored vectors (100 queries). Numbers are for this machine under its load (printed).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LOAD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
def rss(field="VmRSS"):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field + ":")).split()[1]) / 1024
from index.store import IndexStore
from index.lexical import load_lexical
import faiss
try:
    from index.segment import exact_top
except ImportError:  # the same script run on a checkout from before it existed
    def exact_top(vectors, queries, k):
        return faiss.knn(queries, np.ascontiguousarray(vectors), k, metric=faiss.METRIC_INNER_PRODUCT)[1]
faiss.omp_set_num_threads(1)
before = rss()
t = time.perf_counter(); data = IndexStore(sys.argv[1]).load(verify=False); load_s = time.perf_counter() - t
after = rss()
t = time.perf_counter(); IndexStore(sys.argv[1]).load(verify=True); verified_s = time.perf_counter() - t
rng = np.random.default_rng(1)
q = data.vectors[rng.integers(0, len(data.chunks), int(sys.argv[3]))].astype(np.float32)
q = q + rng.normal(scale=0.5 / np.sqrt(q.shape[1]), size=q.shape).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
questions = json.loads(sys.argv[4])
ms, hybrid, found = [], [], []
for v in q:
    t = time.perf_counter(); found.append([i for i, _ in data.search(v, 10)])
    ms.append(1000 * (time.perf_counter() - t))
t = time.perf_counter(); lexical = load_lexical(data); lexical_s = time.perf_counter() - t
for v, question in zip(q, questions):  # what a hybrid question costs: both lists, their chunks read
    t = time.perf_counter()
    positions = {i for i, _ in data.search(v, 50)} | {i for i, _ in lexical.search(question, 50)}
    texts = [data.chunks[i].text for i in sorted(positions)[:10]]
    hybrid.append(1000 * (time.perf_counter() - t))
cited = data.article_by_id[data.chunks[0].article_id].text if data.articles else ""
served, served_anon = rss(), rss("RssAnon")  # before the brute-force truth, whose buffers malloc may keep
truth = exact_top(data.vectors, q[:100], 10)
recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
print(json.dumps({"load_s": load_s, "verified_s": verified_s, "rss_before_mb": before, "rss_after_mb": after,
                  "rss_served_mb": served, "rss_served_anon_mb": served_anon, "lexical_s": lexical_s,
                  "search_p50_ms": float(np.percentile(ms, 50)), "search_p95_ms": float(np.percentile(ms, 95)),
                  "hybrid_p95_ms": float(np.percentile(hybrid, 95)), "recall@10": recall,
                  "faiss": data.manifest.get("faiss")}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--keep", type=Path, help="write the indexes here (default: a temporary folder)")
    args = parser.parse_args()
    from latency import PIAF, synthetic_chunks, synthetic_vectors

    from index.lexical import LexicalIndex
    from index.store import (
        ArticleRecord,
        IndexData,
        IndexStore,
        Segment,
        build_faiss,
        faiss_description,
        tune_ef_search,
    )

    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    print(f"{'chunks':>9} {'faiss':>14} {'build s':>8} {'bm25 s':>7} {'write s':>8} {'disk MB':>8} {'load s':>7} "
          f"{'verified s':>10} {'RSS MB':>7} {'served MB':>9} {'anon MB':>7} {'dense p50':>9} {'p95 ms':>7} "
          f"{'hybrid p95':>10} {'recall@10':>9}")
    with tempfile.TemporaryDirectory(prefix="newsrag-scale-") as tmp:
        base = args.keep or Path(tmp)
        for n in args.chunks:
            rng = np.random.default_rng(0)
            chunks, questions = synthetic_chunks(PIAF, n, rng)
            articles = synthetic_articles(chunks, ArticleRecord)
            vectors = synthetic_vectors(n, 384, rng)
            started = time.perf_counter()
            index, info = build_faiss(vectors), faiss_description(n)
            if hasattr(index, "hnsw"):
                quantised = "vectors" in inspect.signature(tune_ef_search).parameters  # (not before it existed)
                info = {**info, **(tune_ef_search(index, vectors) if quantised else tune_ef_search(index))}
            del vectors
            build_s = time.perf_counter() - started
            started = time.perf_counter()
            lexical = LexicalIndex.build(chunks)
            bm25_s = time.perf_counter() - started
            segment = Segment(articles, chunks, index, lexical, info=info)
            data = IndexData.of_segments({"format": 1, "faiss": info, "counts": {"chunks": n}}, [segment], {})
            store = IndexStore(base / f"n{n}")
            started = time.perf_counter()
            with store.lock():
                store.write(data)
            write_s = time.perf_counter() - started
            del data, segment, lexical, chunks, index, articles
            disk = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file()) / 1e6
            asked = json.dumps(questions[:args.queries])
            out = subprocess.run([sys.executable, "-c", LOAD, str(store.root), str(ROOT), str(args.queries), asked],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{n:>9} {r['faiss']['type']:>14} {build_s:>8.1f} {bm25_s:>7.1f} {write_s:>8.1f} {disk:>8.0f} "
                  f"{r['load_s']:>7.1f} {r['verified_s']:>10.1f} {r['rss_after_mb']:>7.0f} "
                  f"{r['rss_served_mb']:>9.0f} {r['rss_served_anon_mb']:>7.0f} "
                  f"{r['search_p50_ms']:>9.2f} {r['search_p95_ms']:>7.2f} {r['hybrid_p95_ms']:>10.2f} "
                  f"{r['recall@10']:>9.3f}", flush=True)
            if "efSearch" in r["faiss"]:
                print(f"{'':>9} efSearch {r['faiss']['efSearch']} chosen: recall@10 by efSearch "
                      f"{r['faiss']['recall_by_efSearch']} on {r['faiss']['recall_queries']} queries", flush=True)
    return 0


def synthetic_articles(chunks, record_type) -> list:
    """One article per four chunks (``synthetic_chunks`` numbers them so), its text theirs."""
    groups: dict[str, list] = {}
    for chunk in chunks:
        groups.setdefault(chunk.article_id, []).append(chunk)
    return [record_type(a, cs[0].title, "\n".join(c.text for c in cs), "2025-01-01", "", "", "fr", "",
                        f"synthetic-{a}", len(cs)) for a, cs in groups.items()]


if __name__ == "__main__":
    sys.exit(main())
