"""Index size at scale: build and write time, disk size, load time and RSS after load, dense search p95.

    .venv/bin/python bench/scale.py [--chunks 100000 300000] [--queries 300] [--keep DIR]

For each size, a synthetic index (PIAF sentences and clustered vectors, as ``bench/latency.py`` makes
them) is built with the FAISS structure ``index.store.build_faiss`` picks, BM25 included, and written
as a version through ``IndexStore.write``. A fresh Python process then loads it (``IndexStore.load``,
checksums not verified, then verified) and reports its RSS before and after the load, and the
dense search p95 of queries near stored vectors. Numbers are for this machine under its load (printed).
"""
from __future__ import annotations

import argparse
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
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
from index.store import IndexStore
import faiss
faiss.omp_set_num_threads(1)
before = rss()
t = time.perf_counter(); data = IndexStore(sys.argv[1]).load(verify=False); load_s = time.perf_counter() - t
after = rss()
t = time.perf_counter(); IndexStore(sys.argv[1]).load(verify=True); verified_s = time.perf_counter() - t
rng = np.random.default_rng(1)
q = data.vectors[rng.integers(0, len(data.chunks), int(sys.argv[3]))].astype(np.float32)
q = q + rng.normal(scale=0.5 / np.sqrt(q.shape[1]), size=q.shape).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
ms = []
for v in q:
    t = time.perf_counter(); data.search(v, 10); ms.append(1000 * (time.perf_counter() - t))
print(json.dumps({"load_s": load_s, "verified_s": verified_s, "rss_before_mb": before, "rss_after_mb": after,
                  "search_p50_ms": float(np.percentile(ms, 50)), "search_p95_ms": float(np.percentile(ms, 95)),
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
    from index.store import IndexData, IndexStore, Segment, build_faiss, faiss_description, tune_ef_search

    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    print(f"{'chunks':>9} {'faiss':>14} {'build s':>8} {'bm25 s':>7} {'write s':>8} {'disk MB':>8} {'load s':>7} "
          f"{'verified s':>10} {'RSS MB':>7} {'search p50':>10} {'p95 ms':>7}")
    with tempfile.TemporaryDirectory(prefix="newsrag-scale-") as tmp:
        base = args.keep or Path(tmp)
        for n in args.chunks:
            rng = np.random.default_rng(0)
            chunks, _ = synthetic_chunks(PIAF, n, rng)
            vectors = synthetic_vectors(n, 384, rng)
            started = time.perf_counter()
            index, info = build_faiss(vectors), faiss_description(n)
            if hasattr(index, "hnsw"):
                info = {**info, **tune_ef_search(index)}
            del vectors
            build_s = time.perf_counter() - started
            started = time.perf_counter()
            lexical = LexicalIndex.build(chunks)
            bm25_s = time.perf_counter() - started
            segment = Segment([], chunks, index, lexical, info=info)
            data = IndexData.of_segments({"format": 1, "faiss": info, "counts": {"chunks": n}}, [segment], {})
            store = IndexStore(base / f"n{n}")
            started = time.perf_counter()
            with store.lock():
                store.write(data)
            write_s = time.perf_counter() - started
            del data, segment, lexical, chunks, index
            disk = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file()) / 1e6
            out = subprocess.run([sys.executable, "-c", LOAD, str(store.root), str(ROOT), str(args.queries)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{n:>9} {r['faiss']['type']:>14} {build_s:>8.1f} {bm25_s:>7.1f} {write_s:>8.1f} {disk:>8.0f} "
                  f"{r['load_s']:>7.1f} {r['verified_s']:>10.1f} {r['rss_after_mb']:>7.0f} "
                  f"{r['search_p50_ms']:>10.2f} {r['search_p95_ms']:>7.2f}", flush=True)
            if "efSearch" in r["faiss"]:
                print(f"{'':>9} efSearch {r['faiss']['efSearch']} chosen: recall@10 by efSearch "
                      f"{r['faiss']['recall_by_efSearch']} on {r['faiss']['recall_queries']} queries", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
