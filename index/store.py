"""The index on disk: one folder per version, swapped in atomically.

Layout of ``ROOT``::

    ROOT/CURRENT            name of the live version folder (replaced atomically)
    ROOT/v-<ns time>-<rand>/   manifest.json, articles.jsonl, chunks.jsonl, faiss.index

A write builds a complete new version folder, fsyncs it, then replaces CURRENT; a crash at
any point leaves the previous version whole. Writers take an exclusive lock on ROOT/.lock.
The vectors live once, inside the FAISS structure (flat or HNSW-flat storage): ``IndexData.vectors``
is a read-only view of that storage, from which incremental updates take the vectors of unchanged
chunks (never re-embedded) and the FAISS structure is rebuilt on each write. Versions written
before this kept a ``vectors.npy`` too; it is still checksummed when present, but not read.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import IndexMismatchError, IndexMissingError
from common.paths import file_sha256
from index.types import Article, Chunk

FORMAT = 1
FILES = ("articles.jsonl", "chunks.jsonl", "faiss.index")
EXACT_MAX = 200_000  # flat inner product up to here: p95 search stays well under 60 ms on 2 cores
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
# efSearch is chosen per build: the smallest of these whose measured recall@10 reaches RECALL_TARGET
# (synthetic queries can be easier than real ones, so not below the value used before measuring).
EF_SEARCH_CHOICES, RECALL_TARGET, RECALL_QUERIES = (128, 256, 512, 1024), 0.99, 200  # never below the old 128


@dataclass(frozen=True)
class ArticleRecord:
    """An indexed article: its metadata, text and content hash."""

    id: str
    title: str
    text: str
    date: str
    url: str
    source: str
    language: str
    path: str
    content_hash: str
    n_chunks: int

    @classmethod
    def of(cls, article: Article, n_chunks: int) -> ArticleRecord:
        """The record for an article cut into ``n_chunks`` chunks."""
        return cls(article.id, article.title, article.text, article.date, article.url, article.source,
                   article.language, article.path, article.content_hash, n_chunks)


class IndexData:
    """A loaded (or freshly built) version of the index: chunks, vectors and the FAISS structure."""

    def __init__(self, manifest: dict, articles: list[ArticleRecord], chunks: list[Chunk],
                 vectors: np.ndarray | None = None, faiss_index=None, path: Path | None = None):
        """From ``vectors`` (the FAISS structure is built from them, and holds them from then on) or from a
        built ``faiss_index``."""
        self.manifest, self.articles, self.chunks, self.path = manifest, articles, chunks, path
        self.article_by_id = {a.id: a for a in articles}
        if faiss_index is None:
            faiss_index = build_faiss(vectors)
            if hasattr(faiss_index, "hnsw"):  # the efSearch that reaches the recall target at this size
                self.manifest = {**manifest, "faiss": {**manifest.get("faiss", {}), **tune_ef_search(faiss_index)}}
        self.faiss = faiss_index
        # One copy of the vectors: a view of the FAISS storage (valid as long as this object holds the index).
        self.vectors = stored_vectors(self.faiss)

    def __len__(self) -> int:
        return len(self.chunks)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``k`` best (chunk position, inner product) pairs; ``allowed`` masks chunk positions."""
        if not len(self.chunks) or k <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if allowed is not None:
            return _masked_search(self.vectors, query[0], k, allowed)
        scores, ids = self.faiss.search(query, min(k, len(self.chunks)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def _masked_search(vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
    positions = np.flatnonzero(allowed)
    if not len(positions):
        return []
    scores = vectors[positions] @ query
    top = np.argsort(-scores, kind="stable")[:k]
    return [(int(positions[i]), float(scores[i])) for i in top]


def build_faiss(vectors: np.ndarray):
    """Exact inner-product search up to EXACT_MAX vectors, HNSW past it."""
    import faiss

    dim = vectors.shape[1] if vectors.ndim == 2 else 1
    if len(vectors) <= EXACT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def tune_ef_search(index, queries: int = RECALL_QUERIES, seed: int = 0) -> dict:
    """Set the HNSW ``index``'s efSearch to the smallest of EF_SEARCH_CHOICES whose recall@10 against exact
    search reaches RECALL_TARGET (else the largest), and return what was measured, for the manifest.

    Queries are stored vectors plus noise (cosine about 0.9 with their passage, as e5 questions are to
    their answers' passages); the exact top 10 is brute force over the stored vectors (``faiss.knn``)."""
    import faiss

    vectors = stored_vectors(index)
    rng = np.random.default_rng(seed)
    sample = vectors[rng.integers(0, len(vectors), min(queries, len(vectors)))].astype(np.float32)
    sample += rng.normal(scale=0.5 / np.sqrt(vectors.shape[1]), size=sample.shape).astype(np.float32)
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    k = min(10, len(vectors))
    _, truth = faiss.knn(sample, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    measured = {}
    for ef in EF_SEARCH_CHOICES:
        index.hnsw.efSearch = ef
        _, found = index.search(sample, k)
        measured[str(ef)] = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))
        if measured[str(ef)] >= RECALL_TARGET:
            break
    return {"efSearch": ef, "recall@10": round(measured[str(ef)], 4), "recall_by_efSearch": measured,
            "recall_queries": len(sample)}


def stored_vectors(index) -> np.ndarray:
    """The vectors inside a flat or HNSW-flat FAISS index, as a read-only (n, d) view of its storage: no copy.

    The view keeps ``index`` alive (it is the array's base), so it stays valid whoever drops the index."""
    import faiss

    flat = faiss.downcast_index(index.storage) if hasattr(index, "storage") else faiss.downcast_index(index)
    if not flat.ntotal:
        return np.zeros((0, flat.d), dtype=np.float32)
    return np.asarray(_Storage(index, int(flat.get_xb()), (flat.ntotal, flat.d)))


class _Storage:
    """FAISS-owned float32 memory seen through numpy's array interface; holds the index that owns it."""

    def __init__(self, owner, address: int, shape: tuple[int, int]):
        self.owner = owner
        self.__array_interface__ = {"shape": shape, "typestr": "<f4", "data": (address, True), "version": 3}


def faiss_description(n: int) -> dict:
    """How the FAISS structure for ``n`` vectors is built, for the manifest."""
    if n <= EXACT_MAX:
        return {"type": "IndexFlatIP", "exact": True}
    return {"type": "IndexHNSWFlat", "exact": False, "M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION,
            "efSearch": HNSW_EF_SEARCH}


LOAD_ATTEMPTS = 5


class IndexStore:
    """Reads and writes versions of the index under one root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def exists(self) -> bool:
        """True when a complete version is in place."""
        return (self.root / "CURRENT").is_file()

    def current_path(self) -> Path:
        """The live version folder."""
        try:
            name = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            raise IndexMissingError(
                f"no index at {self.root}; build one with `rag index corpus/` (or `make run`, which builds it)"
            ) from None
        return self.root / name

    def load(self, expect: dict | None = None, verify: bool = True) -> IndexData:
        """Load the live version; refuse it if damaged or if ``expect`` (model, dimension, chunker) differs.

        A reader that loses a race with writers (its version pruned by two writes while it reads) reads
        the new live version instead: it is told to rebuild only when the live version itself is bad."""
        for attempt in range(LOAD_ATTEMPTS):
            path = self.current_path()
            try:
                return self._load(path, expect, verify)
            except (IndexMismatchError, FileNotFoundError):
                if self.current_path() == path or attempt == LOAD_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _load(self, path: Path, expect: dict | None, verify: bool) -> IndexData:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            raise IndexMismatchError(f"{path}: manifest missing or unreadable; "
                                     "rebuild with `rag index --rebuild corpus/`") from exc
        check_manifest(manifest, expect or {}, self.root)
        if verify:
            _verify_checksums(path, manifest)
        import faiss

        articles = [ArticleRecord(**json.loads(line)) for line in _lines(path / "articles.jsonl")]
        chunks = [Chunk(**json.loads(line)) for line in _lines(path / "chunks.jsonl")]
        index = faiss.read_index(str(path / "faiss.index"))
        if index.ntotal != len(chunks):
            raise IndexMismatchError(f"{path}: {index.ntotal} vectors for {len(chunks)} chunks; "
                                     "rebuild with `rag index --rebuild corpus/`")
        return IndexData(manifest, articles, chunks, faiss_index=index, path=path)

    @contextlib.contextmanager
    def lock(self):
        """An exclusive writer lock on the root, released on exit."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(self, data: IndexData, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write ``data`` as a new version and make it live; returns its folder. Call under ``lock()``."""
        import faiss

        self.root.mkdir(parents=True, exist_ok=True)
        previous = self.current_path().name if self.exists() else ""
        name = f"v-{time.time_ns():020d}-{secrets.token_hex(3)}"
        tmp = self.root / f".tmp-{name}"
        tmp.mkdir()
        try:
            _write_lines(tmp / "articles.jsonl", (dataclasses.asdict(a) for a in data.articles))
            _write_lines(tmp / "chunks.jsonl", (dataclasses.asdict(c) for c in data.chunks))
            faiss.write_index(data.faiss, str(tmp / "faiss.index"))
            for filename, payload in (extra_files or {}).items():
                (tmp / filename).write_bytes(payload)
            files = [*FILES, *(extra_files or {})]
            manifest = {**data.manifest, "checksums": {f: file_sha256(tmp / f) for f in files}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
            _fsync_dir(tmp)
            tmp.rename(self.root / name)
            _replace_text(self.root / "CURRENT", name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        data.manifest, data.path = manifest, self.root / name
        self._prune(keep={name, previous})
        return self.root / name

    def _prune(self, keep: set[str]) -> None:
        """Remove leftovers of crashed writes (``.tmp-*`` folders, ``.CURRENT.*`` files, version folders
        that never became live) and old versions, keeping the live one and the one it replaced (what
        CURRENT named, not the next folder by name), so that a reader who read CURRENT just before the
        swap can still open its files. Call under ``lock()``."""
        for child in self.root.iterdir():
            if child.is_dir() and child.name not in keep and child.name.startswith(("v-", ".tmp-")):
                shutil.rmtree(child, ignore_errors=True)
            elif child.is_file() and child.name.startswith(".CURRENT."):
                child.unlink(missing_ok=True)


def check_manifest(manifest: dict, expect: dict, root: Path) -> None:
    """Raise IndexMismatchError, with the fix, when the manifest disagrees with ``expect``."""
    if manifest.get("format") != FORMAT:
        raise IndexMismatchError(
            f"index at {root} has format {manifest.get('format')}, this version reads {FORMAT}; "
            "rebuild it with `rag index --rebuild corpus/`"
        )
    for key, value in expect.items():
        if manifest.get(key) != value:
            raise IndexMismatchError(
                f"index at {root} was built with {key}={manifest.get(key)!r} but the settings say {value!r}; "
                f"rebuild it with `rag index --rebuild corpus/`, or change the setting back"
            )


def _verify_checksums(path: Path, manifest: dict) -> None:
    for filename, expected in manifest.get("checksums", {}).items():
        if not (path / filename).exists() or file_sha256(path / filename) != expected:
            raise IndexMismatchError(
                f"{path / filename} is missing or damaged (checksum mismatch); "
                "rebuild with `rag index --rebuild corpus/`"
            )


def _lines(path: Path):
    with open(path, encoding="utf-8") as fh:
        yield from (line for line in fh if line.strip())


def _write_lines(path: Path, records) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _fsync_dir(path: Path) -> None:
    """Flush every file of ``path``, then the folder entry itself."""
    for child in path.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir_only(path)


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    with open(tmp, "w") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir_only(path.parent)


def _fsync_dir_only(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
