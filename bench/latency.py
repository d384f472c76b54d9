"""Query latency on a 100k-chunk index: question embedding + dense search + BM25 + fusion.

    .venv/bin/python bench/latency.py [--chunks 100000] [--queries 300] [--hnsw]

The index is synthetic at that size (embedding 100k real passages takes hours on 2 cores):
- texts: passages of 4-9 sentences drawn from PIAF v1.0 paragraphs, so BM25 sees a real French
  vocabulary, with posting lists longer than a real corpus of that size would have;
- vectors: a mixture of 2,000 random unit centroids plus noise (cosines to the nearest centroid
  around 0.8, as e5 passages have), normalised, 384 dimensions like multilingual-e5-small.
Questions are real PIAF questions, embedded one at a time with the real model, as a user's are.
HNSW recall is measured with queries near the synthetic passages (a passage vector plus noise).
The FAISS structure is the one ``index.store.build_faiss`` picks for that size; ``--hnsw`` also
builds the HNSW structure used past ``EXACT_MAX`` and reports its recall@10 against exact search.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.sentences import split_sentences  # noqa: E402
from index.lexical import LexicalIndex  # noqa: E402
from index.store import EXACT_MAX, IndexData, build_faiss, faiss_description  # noqa: E402
from index.types import Chunk  # noqa: E402
from rag.retriever import Retrieval, RetrievalConfig  # noqa: E402
from rag.service import make_embedder  # noqa: E402
from rag.settings import get_settings  # noqa: E402

PIAF = ROOT.parent / "shared/datasets/piaf-v1.0/piaf-v1.0.json"


def synthetic_chunks(source: Path, n: int, rng) -> tuple[list[Chunk], list[str]]:
    """``n`` passages made of PIAF sentences, and PIAF's questions."""
    data = json.loads(source.read_text(encoding="utf-8"))["data"]
    sentences, questions = [], []
    for entry in data:
        for p in entry["paragraphs"]:
            sentences += [p["context"][a:b] for a, b in split_sentences(p["context"])]
            questions += [qa["question"] for qa in p["qas"]]
    chunks = []
    for i in range(n):
        text = " ".join(sentences[j] for j in rng.integers(0, len(sentences), rng.integers(4, 10)))
        title = data[i % len(data)]["title"]
        chunks.append(Chunk(id=f"s{i}#0", article_id=f"s{i // 4}", title=title, text=text, start=0,
                            end=len(text), language="fr"))
    return chunks, questions


def synthetic_vectors(n: int, dim: int, rng) -> np.ndarray:
    """Clustered unit vectors: 2,000 centroids plus noise."""
    centroids = rng.normal(size=(2000, dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    vectors = (centroids[rng.integers(0, 2000, n)]
               + rng.normal(scale=0.75 / np.sqrt(dim), size=(n, dim)).astype(np.float32))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def percentiles(ms: list[float]) -> str:
    """p50 / p95 / p99 / max of a list of milliseconds."""
    p = np.percentile(ms, [50, 95, 99])
    return f"p50 {p[0]:6.1f}  p95 {p[1]:6.1f}  p99 {p[2]:6.1f}  max {max(ms):6.1f} ms"


def hnsw_recall(vectors: np.ndarray, exact, queries: np.ndarray) -> str:
    """Search time and recall@10 of the HNSW structure against exact search."""
    import faiss

    from index.store import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M

    started = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction, hnsw.hnsw.efSearch = HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH
    hnsw.add(vectors)
    built = time.perf_counter() - started
    _, truth = exact.search(queries, 10)
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        _, ids = hnsw.search(q[None, :], 10)
        times.append(1000 * (time.perf_counter() - started))
        found.append(ids[0])
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    return (f"HNSW M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION} efSearch={HNSW_EF_SEARCH}: built in {built:.0f} s, "
            f"recall@10 vs exact {recall:.3f}, search {percentiles(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--source", type=Path, default=PIAF, help="SQuAD file giving sentences and questions")
    parser.add_argument("--hnsw", action="store_true", help="also measure HNSW recall against exact search")
    parser.add_argument("--faiss-threads", type=int, default=0, help="OpenMP threads for FAISS (default: its own)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="threads for the query embedding (default: torch's)")
    args = parser.parse_args()
    _set_threads(args.faiss_threads, args.torch_threads)
    rng = np.random.default_rng(0)
    settings = get_settings()
    embedder = make_embedder(settings)
    chunks, questions = synthetic_chunks(args.source, args.chunks, rng)
    vectors = synthetic_vectors(len(chunks), embedder.dim, rng)

    started = time.perf_counter()
    data = IndexData({"faiss": faiss_description(len(chunks))}, [], chunks, vectors, build_faiss(vectors))
    faiss_s = time.perf_counter() - started
    started = time.perf_counter()
    lexical = LexicalIndex.build(chunks)
    bm25_s = time.perf_counter() - started
    size = len(lexical.to_bytes()) / 1e6
    print(f"{len(chunks)} chunks, dim {embedder.dim}; FAISS {data.manifest['faiss']} (EXACT_MAX {EXACT_MAX}) "
          f"built in {faiss_s:.1f} s; BM25 built in {bm25_s:.1f} s "
          f"({len(lexical.vocab)} terms, lexical.npz {size:.0f} MB)")

    picked = [questions[i] for i in rng.choice(len(questions), args.queries, replace=False)]
    retrieval = Retrieval(data, embedder, RetrievalConfig.of(settings), lexical=lexical)
    for question in picked[:10]:  # warm-up: first calls allocate
        retrieval.search(question, retrieval.embed(question), settings.top_k)
    rows = {"embed": [], "dense": [], "lexical": [], "hybrid": [], "total (embed + hybrid)": []}
    for question in picked:
        started = time.perf_counter()
        vector = retrieval.embed(question)
        rows["embed"].append(1000 * (time.perf_counter() - started))
        for mode in ("dense", "lexical", "hybrid"):
            mark = time.perf_counter()
            retrieval.search(question, vector, settings.top_k, mode)
            rows[mode].append(1000 * (time.perf_counter() - mark))
        rows["total (embed + hybrid)"].append(rows["embed"][-1] + rows["hybrid"][-1])
    print(f"{args.queries} PIAF questions, top_k {settings.top_k}, fusion {settings.fusion}, "
          f"candidates {settings.fusion_candidates}; threads: torch {_threads()[0]}, FAISS {_threads()[1]}; "
          f"load average {open('/proc/loadavg').read().split()[0]}")
    for name, ms in rows.items():
        print(f"  {name:24s} {percentiles(ms)}")
    if args.hnsw:  # queries near the synthetic passages, as real questions are near real ones
        near = (vectors[rng.integers(0, len(vectors), args.queries)]
                + rng.normal(scale=0.03, size=(args.queries, embedder.dim)))
        print(hnsw_recall(vectors, data.faiss, (near / np.linalg.norm(near, axis=1, keepdims=True)).astype(np.float32)))


def _threads() -> tuple[int, int]:
    import faiss
    import torch

    return torch.get_num_threads(), faiss.omp_get_max_threads()


def _set_threads(faiss_threads: int, torch_threads: int) -> None:
    import faiss
    import torch

    if faiss_threads:
        faiss.omp_set_num_threads(faiss_threads)
    if torch_threads:
        torch.set_num_threads(torch_threads)


if __name__ == "__main__":
    main()
