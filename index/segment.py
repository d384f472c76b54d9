"""A segment: an immutable part of the index (articles, chunks, their FAISS structure and BM25 matrix).

A version of the index (``index.store``) is a list of segments plus tombstones: the ids of articles
that a later write deleted or replaced, masked in the segment that holds their old chunks. Segments are
written once, under ``ROOT/segments/<name>/``, and shared by every version that lists them, so a write
that adds an article to a large archive writes a small segment and a manifest, not the archive again;
a server following the folder loads only the new segment (``IndexStore.load(reuse=...)``).

Files of a segment::

    articles.jsonl  chunks.jsonl  faiss.index  lexical.npz
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import time
from pathlib import Path

import numpy as np

from common.errors import IndexMismatchError
from common.paths import file_sha256
from index.lexical import FILENAME as LEXICAL_FILE
from index.lexical import LexicalIndex, LexicalStats
from index.table import ROWS_FILE, ChunkTable, read_articles, read_rows, write_lines, write_rows
from index.types import Chunk

FILES = ("articles.jsonl", "chunks.jsonl", "faiss.index", LEXICAL_FILE, ROWS_FILE)
EXACT_MAX = 200_000  # flat inner product up to here: p95 search stays well under 60 ms on 2 cores
# Past this, HNSW's vectors are scalar-quantised to 8 bits (a quarter of float32's memory: 384 MB instead of
# 1.5 GB at 1M chunks), which keeps a million chunks under 2 GB resident; recall is measured at each build.
COMPRESS_MIN = 500_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
# efSearch is chosen per build: the smallest of these whose measured recall@10 reaches RECALL_TARGET
# (synthetic queries can be easier than real ones, so not below the value used before measuring).
EF_SEARCH_CHOICES, RECALL_TARGET, RECALL_QUERIES = (128, 256, 512, 1024), 0.99, 200  # never below the old 128
RECALL_PLATEAU = 0.0025  # a doubled efSearch that gains less than this is not taken


ADD_BATCH = 65_536  # vectors added to a FAISS structure at a time


def new_name() -> str:
    """A segment or version name that sorts in creation order."""
    return f"{time.time_ns():020d}-{secrets.token_hex(3)}"


class Segment:
    """Articles, their chunks, the FAISS structure holding the chunks' vectors (once: ``vectors`` is a
    read-only view of its storage) and, once asked for, their BM25 index. ``path`` is None until written."""

    def __init__(self, articles: list, chunks: list[Chunk], faiss_index, lexical: LexicalIndex | None = None,
                 name: str = "", path: Path | None = None, info: dict | None = None):
        """``faiss_index`` may be None for a segment read from ``path``: its file is read when first searched
        (a write that only adds a segment beside it never reads it)."""
        self.articles, self.chunks, self._faiss = articles, ChunkTable.of(chunks), faiss_index
        self.name, self.path = name or f"s-{new_name()}", path
        self.info = info if info is not None else faiss_description(len(chunks))
        self._lexical = lexical
        self._vectors = None
        self._ranges: dict[str, np.ndarray] | None = None
        self.checksums: dict = {}  # of its files, once written or read
        self.legacy = False  # read from a version folder written before segments

    @classmethod
    def build(cls, articles: list, chunks: list[Chunk], vectors: np.ndarray, reuse=(),
              stats: LexicalStats | None = None) -> Segment:
        """A new segment: FAISS built from ``vectors`` (HNSW past EXACT_MAX, its efSearch tuned), BM25 from the
        chunks (analysis reused from the ``reuse`` lexical indexes; ``stats``: another segment's document
        frequencies, so a small segment's scores stay on the scale of the large one beside it)."""
        index, info = build_faiss(vectors), faiss_description(len(vectors))
        if hasattr(index, "hnsw"):  # the efSearch that reaches the recall target at this size
            info = {**info, **tune_ef_search(index, vectors)}  # against the float vectors, if it quantises
        return cls(articles, chunks, index, LexicalIndex.build(chunks, reuse, stats), info=info)

    def positions(self, article_id: str) -> np.ndarray:
        """Where an article's chunks are in this segment (chunks are stored article by article)."""
        if self._ranges is None:
            self._ranges = _article_ranges(self.articles, self.chunks)
        return self._ranges.get(article_id, np.zeros(0, dtype=np.int64))

    @property
    def faiss(self):
        """The FAISS structure, read from the segment's file on first use."""
        if self._faiss is None:
            import faiss

            index = faiss.read_index(str(self.path / "faiss.index"))
            if index.ntotal != len(self.chunks):
                raise IndexMismatchError(f"{self.path}: {index.ntotal} vectors for {len(self.chunks)} chunks; "
                                         "rebuild with `rag index --rebuild corpus/`")
            if hasattr(index, "hnsw") and "efSearch" in self.info:
                index.hnsw.efSearch = int(self.info["efSearch"])
            self._faiss = index
        return self._faiss

    @property
    def vectors(self) -> np.ndarray:
        """The chunks' vectors: a read-only view of the FAISS storage (decoded rows when it is quantised)."""
        if self._vectors is None:
            self._vectors = stored_vectors(self.faiss)
        return self._vectors

    @property
    def lexical(self) -> LexicalIndex:
        """The BM25 index: read from the segment's ``lexical.npz``, or built in memory when absent or stale."""
        if self._lexical is None:
            stored = _try_lexical(self.path / LEXICAL_FILE) if self.path is not None else None
            self._lexical = stored if stored is not None and stored.matches(self.chunks) else LexicalIndex.build(
                self.chunks)
        return self._lexical

    def lexical_stats(self) -> LexicalStats:
        """The BM25 statistics of the segment (``LexicalIndex.stats``), read off its file if not loaded."""
        if self._lexical is None and self.path is not None and (self.path / LEXICAL_FILE).exists():
            return LexicalIndex.stats_from_file(self.path / LEXICAL_FILE)
        return self.lexical.stats()

    def write(self, folder: Path) -> dict:
        """Write the segment's files into ``folder`` (fsynced); returns their checksums."""
        import faiss

        folder.mkdir()
        article_lines = write_lines(folder / "articles.jsonl", (dataclasses.asdict(a) for a in self.articles))
        chunk_lines = write_lines(folder / "chunks.jsonl", (dataclasses.asdict(c) for c in self.chunks))
        write_rows(folder / ROWS_FILE, self.chunks, chunk_lines, self.articles, article_lines,
                   getattr(type(self.articles[0]), "ON_DISK", ()) if self.articles else ())
        faiss.write_index(self.faiss, str(folder / "faiss.index"))
        (folder / LEXICAL_FILE).write_bytes(self.lexical.to_bytes())
        fsync_dir(folder)
        return {f: file_sha256(folder / f) for f in FILES}

    def describe(self, checksums: dict) -> dict:
        """The segment's entry in a version manifest."""
        return {"name": self.name, "articles": len(self.articles), "chunks": len(self.chunks),
                "faiss": self.info, "checksums": checksums}

    @classmethod
    def read(cls, folder: Path, entry: dict, verify: bool, record_type, lazy: bool = False) -> Segment:
        """The segment in ``folder`` that a manifest ``entry`` describes; IndexMismatchError if damaged.
        With ``lazy`` its FAISS file is read when first needed, not now."""
        if verify:
            verify_checksums(folder, entry.get("checksums", {}))
        rows = read_rows(folder, record_type)  # the sidecar; else every line is parsed
        chunks, articles = rows if rows is not None else (ChunkTable.read(folder / "chunks.jsonl"),
                                                          read_articles(folder / "articles.jsonl", record_type))
        info = dict(entry.get("faiss") or faiss_description(len(chunks)))
        segment = cls(articles, chunks, None, name=entry.get("name", ""), path=folder, info=info)
        if not lazy:
            segment.faiss  # noqa: B018 (reads and checks it now)
        segment.checksums = dict(entry.get("checksums", {}))
        return segment


def _article_ranges(articles: list, chunks: ChunkTable) -> dict[str, np.ndarray]:
    """Article id -> positions of its chunks: from the articles' chunk counts where they agree with the
    chunks (every write stores them so), else by reading every chunk's article id."""
    column = chunks.column("article_id")
    owner = np.array(column.values, dtype=object)[column.codes] if len(column.codes) else np.zeros(0, object)
    ends = np.cumsum([a.n_chunks for a in articles], dtype=np.int64)
    starts = ends - [a.n_chunks for a in articles]
    if (not len(articles) or ends[-1] == len(chunks)) and all(
            n == 0 or owner[start] == a.id == owner[start + n - 1]
            for a, start, n in zip(articles, starts.tolist(), (a.n_chunks for a in articles))):
        return {a.id: np.arange(start, end, dtype=np.int64) for a, start, end in zip(articles, starts, ends)}
    order = np.argsort(column.codes, kind="stable")
    bounds = np.searchsorted(column.codes[order], np.arange(len(column.values) + 1))
    return {value: order[bounds[i]:bounds[i + 1]].astype(np.int64) for i, value in enumerate(column.values)}


def _try_lexical(path: Path) -> LexicalIndex | None:
    try:
        return LexicalIndex.from_file(path)
    except (FileNotFoundError, IndexMismatchError):
        return None


def build_faiss(vectors: np.ndarray):
    """Exact inner-product search up to EXACT_MAX vectors, HNSW past it, its vectors quantised to 8 bits
    past COMPRESS_MIN (the quantiser trained on a sample of them)."""
    import faiss

    dim = vectors.shape[1] if len(vectors.shape) == 2 else 1
    if len(vectors) <= EXACT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        if len(vectors) < COMPRESS_MIN:
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), 100_000), replace=False)
            index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    for start in range(0, len(vectors), ADD_BATCH):  # batches: ``vectors`` may gather from other segments
        index.add(np.ascontiguousarray(vectors[start:start + ADD_BATCH], dtype=np.float32))
    return index


def faiss_description(n: int) -> dict:
    """How the FAISS structure for ``n`` vectors is built, for the manifest."""
    if n <= EXACT_MAX:
        return {"type": "IndexFlatIP", "exact": True}
    kind = {"type": "IndexHNSWFlat"} if n < COMPRESS_MIN else {"type": "IndexHNSWSQ", "quantizer": "QT_8bit"}
    return {**kind, "exact": False, "M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH}


def tune_ef_search(index, vectors: np.ndarray | None = None, queries: int = RECALL_QUERIES, seed: int = 0) -> dict:
    """Set the HNSW ``index``'s efSearch to the smallest of EF_SEARCH_CHOICES whose recall@10 against exact
    search reaches RECALL_TARGET (else the largest), and return what was measured, for the manifest.

    Queries are stored vectors plus noise (cosine about 0.9 with their passage, as e5 questions are to
    their answers' passages); the exact top 10 is brute force over the original float ``vectors`` (the
    stored ones by default; a quantised index is measured against the vectors it was built from)."""
    vectors = stored_vectors(index) if vectors is None else vectors
    rng = np.random.default_rng(seed)
    sample = vectors[rng.integers(0, len(vectors), min(queries, len(vectors)))].astype(np.float32)
    sample += rng.normal(scale=0.5 / np.sqrt(vectors.shape[1]), size=sample.shape).astype(np.float32)
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    k = min(10, len(vectors))
    truth = exact_top(vectors, sample, k)
    measured, previous = {}, None
    for ef in EF_SEARCH_CHOICES:
        index.hnsw.efSearch = ef
        _, found = index.search(sample, k)
        measured[str(ef)] = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))
        if measured[str(ef)] >= RECALL_TARGET:
            break
        if previous is not None and measured[str(ef)] - measured[str(previous)] < RECALL_PLATEAU:
            ef = previous  # no better for twice the work: quantisation, not the graph, bounds the recall
            break
        previous = ef
    index.hnsw.efSearch = ef
    return {"efSearch": ef, "recall@10": round(measured[str(ef)], 4), "recall_by_efSearch": measured,
            "recall_queries": len(sample)}


def exact_top(vectors, queries: np.ndarray, k: int) -> np.ndarray:
    """The positions of each query's ``k`` best inner products over ``vectors`` (an array, or rows gathered
    by indexing), by brute force over batches of ADD_BATCH rows."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), ADD_BATCH):
        rows = np.asarray(vectors[np.arange(start, min(start + ADD_BATCH, len(vectors)))], dtype=np.float32)
        scores = np.concatenate([best_scores, queries @ rows.T], axis=1)
        here = np.broadcast_to(np.arange(start, start + len(rows)), (len(queries), len(rows)))
        ids = np.concatenate([best_ids, here], axis=1)
        top = np.argpartition(-scores, min(k, scores.shape[1]) - 1, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    return best_ids


def stored_vectors(index) -> np.ndarray:
    """The vectors inside a flat or HNSW-flat FAISS index, as a read-only (n, d) view of its storage: no copy;
    for a quantised storage, rows decoded when indexed (``_Decoded``).

    The view keeps ``index`` alive (it is the array's base), so it stays valid whoever drops the index."""
    import faiss

    flat = faiss.downcast_index(index.storage) if hasattr(index, "storage") else faiss.downcast_index(index)
    if not isinstance(flat, faiss.IndexFlat):
        return _Decoded(index, flat)
    if not flat.ntotal:
        return np.zeros((0, flat.d), dtype=np.float32)
    return np.asarray(_Storage(index, int(flat.get_xb()), (flat.ntotal, flat.d)))


class _Decoded:
    """The vectors of a quantised FAISS storage, decoded row by row when indexed: ``rows[positions]`` is a
    (len(positions), d) float32 array (about 0.001 off the original cosines at 8 bits)."""

    def __init__(self, owner, storage):
        self.owner, self.storage = owner, storage
        self.shape, self.dtype = (storage.ntotal, storage.d), np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, positions) -> np.ndarray:
        if isinstance(positions, slice):
            positions = np.arange(*positions.indices(len(self)))
        single = np.ndim(positions) == 0
        ids = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        rows = self.storage.reconstruct_batch(ids) if len(ids) else np.zeros((0, self.shape[1]), np.float32)
        return rows[0] if single else rows

    def __array__(self, dtype=None, copy=None):
        """Every row decoded (what ``np.asarray`` of the whole asks for)."""
        rows = self[np.arange(len(self))]
        return rows if dtype is None else rows.astype(dtype)


class _Storage:
    """FAISS-owned float32 memory seen through numpy's array interface; holds the index that owns it."""

    def __init__(self, owner, address: int, shape: tuple[int, int]):
        self.owner = owner
        self.__array_interface__ = {"shape": shape, "typestr": "<f4", "data": (address, True), "version": 3}


def verify_checksums(path: Path, checksums: dict) -> None:
    """IndexMismatchError, with the fix, unless every file in ``checksums`` is there with that sha256."""
    for filename, expected in checksums.items():
        if not (path / filename).exists() or file_sha256(path / filename) != expected:
            raise IndexMismatchError(
                f"{path / filename} is missing or damaged (checksum mismatch); "
                "rebuild with `rag index --rebuild corpus/`"
            )


def fsync_dir(path: Path) -> None:
    """Flush every file of ``path``, then the folder entry itself."""
    for child in path.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir_only(path)


def fsync_dir_only(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a folder and what it holds, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)
