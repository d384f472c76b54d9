"""The index on disk: versions made of shared, immutable segments, each version swapped in atomically.

Layout of ``ROOT``::

    ROOT/CURRENT                 name of the live version folder (replaced atomically)
    ROOT/v-<ns time>-<rand>/     manifest.json: the version's segments, their checksums, its tombstones
    ROOT/segments/s-<ns time>-<rand>/   articles.jsonl, chunks.jsonl, faiss.index, lexical.npz

A version is a list of segments (``index.segment``) and tombstones: per segment, the ids of the articles
a later write deleted or replaced, whose chunks are masked there (FAISS searches them with an ID selector
that skips them; BM25 drops their scores). A write adds a segment holding only what it adds or replaces
(or rebuilds one segment of everything: small indexes, ``--rebuild``, compaction), then writes the new
manifest, fsyncs, and replaces CURRENT; a crash at any point leaves the previous version whole. Writers
take an exclusive lock on ROOT/.lock. The vectors live once, inside each segment's FAISS storage.

Versions written before segments kept their files in the version folder (and once a ``vectors.npy``):
they still load, as one segment, and the next write rewrites them as a segment.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import time
from pathlib import Path

import numpy as np

from common.errors import IndexMismatchError, IndexMissingError
from index.segment import (
    EF_SEARCH_CHOICES,
    EXACT_MAX,
    HNSW_EF_SEARCH,
    RECALL_TARGET,
    Segment,
    build_faiss,
    faiss_description,
    fsync_dir,
    fsync_dir_only,
    new_name,
    remove_tree,
    stored_vectors,
    tune_ef_search,
    verify_checksums,
)
from index.table import LineFile, LiveChunks, locate
from index.types import Article, Chunk

__all__ = ["FORMAT", "EXACT_MAX", "HNSW_EF_SEARCH", "EF_SEARCH_CHOICES", "RECALL_TARGET", "ArticleRecord",
           "IndexData", "IndexStore", "Segment", "build_faiss", "faiss_description", "stored_vectors",
           "tune_ef_search", "check_manifest"]

FORMAT = 1
MASKED_BATCH = 65_536  # rows gathered at a time by a filtered search
SEGMENTS = "segments"


@dataclasses.dataclass(frozen=True, slots=True)
class ArticleRecord:
    """An indexed article: its metadata, text and content hash (slots: an archive holds millions)."""

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
    updated: str = ""  # the date of this version, when it corrects or updates the one of ``date``
    history: tuple = ()  # earlier versions, oldest first: {"date", "updated", "content_hash", "replaced_at"}
    story: str = ""  # the article this one is a copy of (wire copies, index/duplicates.py); "" when none
    minhash: str = ""  # MinHash signature of the text (index/duplicates.py), base64
    ON_DISK = ("text", "minhash")  # what a record read from a segment leaves there (``StoredArticle``)

    def __post_init__(self):
        object.__setattr__(self, "history", tuple(self.history))  # a list when read back from JSON

    @classmethod
    def of(cls, article: Article, n_chunks: int, **extra) -> ArticleRecord:
        """The record for an article cut into ``n_chunks`` chunks (``extra``: history, story, minhash)."""
        return cls(article.id, article.title, article.text, article.date, article.url, article.source,
                   article.language, article.path, article.content_hash, n_chunks, article.updated, **extra)

    @property
    def story_id(self) -> str:
        """The id its copies and itself share: the first indexed version's."""
        return self.story or self.id

    def replaced_by(self, article: Article, n_chunks: int, **extra) -> ArticleRecord:
        """The record of ``article``, a new version of this one: this version joins the history."""
        version = {"date": self.date, "updated": self.updated, "content_hash": self.content_hash,
                   "replaced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return ArticleRecord.of(article, n_chunks, history=(*self.history, version), **extra)

    @staticmethod
    def stored(fields: dict, lines: LineFile, row: int) -> StoredArticle:
        """The record of a segment's line ``row`` whose ``fields`` were read without ``StoredArticle.ON_DISK``."""
        return StoredArticle.at(fields, lines, row)


class StoredArticle(ArticleRecord):
    """An ``ArticleRecord`` read from a segment: its text and signature stay in the segment's file and are
    read from their line when asked for (``index.table``); everything else is in memory. Built with its
    fields (``dataclasses.replace``, ``StoredArticle(**fields)``) it holds them all, like its base."""

    def __eq__(self, other):
        if not isinstance(other, ArticleRecord):
            return NotImplemented
        return dataclasses.astuple(self) == dataclasses.astuple(other)

    def __hash__(self):
        return hash(dataclasses.astuple(self))

    __slots__ = ("_line", "_text", "_minhash")

    @classmethod
    def at(cls, fields: dict, lines: LineFile, row: int) -> StoredArticle:
        record = object.__new__(cls)
        for field in dataclasses.fields(cls):
            if field.name not in cls.ON_DISK:
                default = field.default if field.default is not dataclasses.MISSING else ""
                object.__setattr__(record, field.name, fields.get(field.name, default))
        object.__setattr__(record, "_line", (lines, row))
        record.__post_init__()
        return record

    def _field(self, name: str) -> str:
        held = getattr(self, "_" + name, None)
        if held is not None:
            return held
        lines, row = self._line
        return lines.row(row).get(name, "")

    def _hold(name: str):  # noqa: N805 (a property factory used in the class body)
        return property(lambda self: self._field(name),
                        lambda self, value: object.__setattr__(self, "_" + name, value))

    text = _hold("text")
    minhash = _hold("minhash")
    del _hold


class IndexData:
    """A version of the index, loaded or freshly built: its segments' live articles and chunks, in segment
    order, their vectors and search. Chunk positions (``chunks[i]``, ``vectors[i]``, search results) count
    live chunks only; tombstoned ones are invisible."""

    def __init__(self, manifest: dict, articles: list[ArticleRecord], chunks: list[Chunk],
                 vectors: np.ndarray | None = None, faiss_index=None, path: Path | None = None):
        """One new segment from ``vectors`` (its FAISS structure is built from them, and holds them from then
        on) or from a built ``faiss_index``."""
        if faiss_index is None:
            segment = Segment.build(articles, chunks, vectors)
        else:
            segment = Segment(articles, chunks, faiss_index)
        self._init({**manifest, "faiss": {**manifest.get("faiss", {}), **segment.info}}, [segment], {}, path)

    @classmethod
    def of_segments(cls, manifest: dict, segments: list[Segment], dead: dict[str, frozenset],
                    path: Path | None = None) -> IndexData:
        """The version made of ``segments`` with the ``dead`` article ids (per segment name) masked."""
        data = cls.__new__(cls)
        data._init(manifest, segments, dead, path)
        return data

    def _init(self, manifest: dict, segments: list[Segment], dead: dict[str, frozenset], path: Path | None):
        self.manifest, self.segments, self.path = manifest, segments, path
        self.dead = {s.name: frozenset(dead.get(s.name, ())) for s in segments}
        self.live_masks = [_live(s, self.dead[s.name]) for s in segments]
        self.articles = [a for s in segments for a in s.articles if a.id not in self.dead[s.name]]
        self.article_by_id = {a.id: a for a in self.articles}
        self.segment_of = {a.id: s.name for s in segments for a in s.articles if a.id not in self.dead[s.name]}
        self.chunks = LiveChunks([s.chunks for s in segments], self.live_masks)
        self._offsets = np.cumsum([0] + [int(m.sum()) for m in self.live_masks])
        self._dead_ids = [np.flatnonzero(~m).astype(np.int64) for m in self.live_masks]
        self._selectors = [_skip(ids) for ids in self._dead_ids]
        self._vectors, self._global = None, {}
        self._number = {s.name: i for i, s in enumerate(segments)}
        self._stories: dict[str, list[ArticleRecord]] | None = None

    @property
    def vectors(self):
        """The live chunks' vectors, held once: a view of the FAISS storage of a version of one segment
        without tombstones (valid as long as this object holds the index), else gathered per lookup."""
        if self._vectors is None:
            simple = len(self.segments) == 1 and not len(self._dead_ids[0])
            self._vectors = self.segments[0].vectors if simple else _Rows(self)
        return self._vectors

    @property
    def faiss(self):
        """The main segment's FAISS structure."""
        return self.segments[0].faiss

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def tombstones(self) -> int:
        """Chunks masked in their segments (deleted or replaced since the segment was written)."""
        return sum(len(ids) for ids in self._dead_ids)

    def global_positions(self, segment: int) -> np.ndarray:
        """For each chunk of segment number ``segment``: its position among live chunks, -1 if tombstoned."""
        if segment not in self._global:
            live = self.live_masks[segment]
            self._global[segment] = np.where(live, self._offsets[segment] + np.cumsum(live) - 1, -1)
        return self._global[segment]

    def positions_of(self, article_id: str) -> np.ndarray:
        """The positions (in ``chunks``) of a live article's chunks; empty for an unknown one."""
        name = self.segment_of.get(article_id)
        if name is None:
            return np.zeros(0, dtype=np.int64)
        number = self._number[name]
        return self.global_positions(number)[self.segments[number].positions(article_id)]

    @property
    def has_copies(self) -> bool:
        """True when some story has more than one live version."""
        self.copies("")
        return bool(self._stories)

    def copies(self, article_id: str) -> list[ArticleRecord]:
        """The other live versions of an article's story (wire copies, index/duplicates.py), oldest first."""
        if self._stories is None:
            stories: dict[str, list[ArticleRecord]] = {}
            for a in self.articles:
                stories.setdefault(a.story_id, []).append(a)
            self._stories = {k: sorted(v, key=lambda a: (a.date or "9999", a.id)) for k, v in stories.items()
                             if len(v) > 1}
        record = self.article_by_id.get(article_id)
        story = self._stories.get(record.story_id, ()) if record is not None else ()
        return [a for a in story if a.id != article_id]

    def chunks_of(self, article_id: str) -> list[Chunk]:
        """A live article's chunks, in order."""
        return [self.chunks[i] for i in self.positions_of(article_id)]

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``k`` best (chunk position, inner product) pairs; ``allowed`` masks chunk positions."""
        if not len(self.chunks) or k <= 0:
            return []
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if allowed is not None:
            return _masked_search(self.vectors, query[0], k, allowed)
        found = []
        for number, segment in enumerate(self.segments):
            live = int(self._offsets[number + 1] - self._offsets[number])
            if not live:
                continue
            scores, ids = segment.faiss.search(query, min(k, live), params=_params(segment.faiss,
                                                                                     self._selectors[number]))
            positions = self.global_positions(number)
            found += [(int(positions[i]), float(score)) for i, score in zip(ids[0], scores[0]) if i >= 0]
        found.sort(key=lambda f: (-f[1], f[0]))
        return found[:k]


def _live(segment: Segment, dead: frozenset) -> np.ndarray:
    """Which chunks of ``segment`` are live when the ``dead`` articles are masked."""
    live = np.ones(len(segment.chunks), dtype=bool)
    for article_id in dead:
        live[segment.positions(article_id)] = False
    return live


def _skip(dead: np.ndarray):
    """A FAISS ID selector that rejects the ``dead`` ids (None when there are none); the selector it wraps
    is kept on it, since FAISS does not own it."""
    if not len(dead):
        return None
    import faiss

    batch = faiss.IDSelectorBatch(dead)
    selector = faiss.IDSelectorNot(batch)
    selector.inner = batch
    return selector


def _params(index, selector):
    """Search parameters that skip ``selector``'s ids, with the index's own efSearch for HNSW."""
    if selector is None:
        return None
    import faiss

    if hasattr(index, "hnsw"):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)


class _Rows:
    """The live vectors of a segmented version, gathered from the segments' storage on indexing (no copy
    of the whole is ever held): ``rows[positions]`` is a (len(positions), d) array."""

    def __init__(self, data: IndexData):
        chunks = data.chunks  # its segment and row of each live position, computed once for both
        self.segment, self.local = (chunks.segment, chunks.local) if hasattr(chunks, "segment") else locate(
            data.live_masks)
        self.segments = data.segments  # their vectors are read when first gathered from
        self.dim = int(data.manifest.get("dimension") or data.segments[-1].vectors.shape[1])
        self.shape, self.dtype = (len(self.segment), self.dim), np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.segment)

    def __getitem__(self, positions) -> np.ndarray:
        index = np.arange(len(self))[positions] if isinstance(positions, slice) else np.asarray(positions)
        if index.ndim == 0:
            return self.segments[self.segment[index]].vectors[self.local[index]]
        out = np.empty((len(index), self.dim), dtype=np.float32)
        segments = self.segment[index]
        for number in np.unique(segments):
            rows = segments == number
            out[rows] = self.segments[number].vectors[self.local[index[rows]]]
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or np.float32, copy=False)


def _masked_search(vectors, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
    positions = np.flatnonzero(allowed)
    if not len(positions):
        return []
    scores = np.concatenate([vectors[positions[start:start + MASKED_BATCH]] @ query  # bounded memory
                             for start in range(0, len(positions), MASKED_BATCH)])
    top = np.argsort(-scores, kind="stable")[:k]
    return [(int(positions[i]), float(scores[i])) for i in top]


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

    def load(self, expect: dict | None = None, verify: bool = True, reuse: IndexData | None = None,
             lazy: bool = False) -> IndexData:
        """Load the live version; refuse it if damaged or if ``expect`` (model, dimension, chunker) differs.
        Segments already loaded in ``reuse`` (a version loaded before) are taken from it, not read again;
        with ``lazy``, FAISS files are read when first searched (what a write that adds a segment needs).

        A reader that loses a race with writers (its version pruned by two writes while it reads) reads
        the new live version instead: it is told to rebuild only when the live version itself is bad."""
        for attempt in range(LOAD_ATTEMPTS):
            path = self.current_path()
            try:
                return self._load(path, expect, verify, reuse, lazy)
            except (IndexMismatchError, FileNotFoundError):
                if self.current_path() == path or attempt == LOAD_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _load(self, path: Path, expect: dict | None, verify: bool, reuse: IndexData | None,
              lazy: bool = False) -> IndexData:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            raise IndexMismatchError(f"{path}: manifest missing or unreadable; "
                                     "rebuild with `rag index --rebuild corpus/`") from exc
        check_manifest(manifest, expect or {}, self.root)
        if "segments" not in manifest:  # written before segments: the version folder is the one segment
            if verify:
                verify_checksums(path, manifest.get("checksums", {}))
            entry = {"name": "", "faiss": manifest.get("faiss"), "checksums": {}}
            segment = Segment.read(path, entry, False, ArticleRecord)
            segment.legacy = True
            return IndexData.of_segments(manifest, [segment], {}, path)
        known = {s.name: s for s in (reuse.segments if reuse is not None else []) if s.path is not None}
        segments = [known.get(entry["name"]) or Segment.read(self.root / SEGMENTS / entry["name"], entry, verify,
                                                             ArticleRecord, lazy)
                    for entry in manifest["segments"]]
        dead = {name: frozenset(ids) for name, ids in manifest.get("tombstones", {}).items()}
        return IndexData.of_segments(manifest, segments, dead, path)

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

    def write(self, data: IndexData) -> Path:
        """Write ``data`` as a new version and make it live; returns its folder. Only its segments that are
        not on disk yet are written. Call under ``lock()``."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SEGMENTS).mkdir(exist_ok=True)
        previous = self.current_path().name if self.exists() else ""
        name = f"v-{new_name()}"
        entries, written = [], []
        tmp = self.root / f".tmp-{name}"
        try:
            for segment in data.segments:
                entries.append(segment.describe(self._put(segment, written)))
            tmp.mkdir()
            tombstones = {s.name: sorted(data.dead[s.name]) for s in data.segments if data.dead.get(s.name)}
            manifest = {**data.manifest, "segments": entries, "tombstones": tombstones}
            manifest.pop("checksums", None)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
            fsync_dir(tmp)
            tmp.rename(self.root / name)
            fsync_dir_only(self.root)
            _replace_text(self.root / "CURRENT", name)
        except BaseException:
            remove_tree(tmp)
            for segment in data.segments:
                if segment.path in written:
                    remove_tree(segment.path)
                    segment.path = None
            raise
        data.manifest, data.path = manifest, self.root / name
        self._prune(keep={name, previous})
        return self.root / name

    def _put(self, segment: Segment, written: list[Path]) -> dict:
        """Write ``segment`` under ``segments/`` unless it is there already; returns its checksums."""
        folder = self.root / SEGMENTS / segment.name
        if segment.path == folder and not segment.legacy:
            return segment.checksums  # read with it from the manifest that listed it, or set when written
        if segment.legacy:  # rewritten as a segment of its own, under a new name
            segment.name = f"s-{new_name()}"
            folder = self.root / SEGMENTS / segment.name
        tmp = folder.with_name(f".tmp-{segment.name}")
        checksums = segment.write(tmp)
        tmp.rename(folder)
        fsync_dir_only(folder.parent)
        segment.path, segment.legacy, segment.checksums = folder, False, checksums
        written.append(folder)
        return checksums

    def _prune(self, keep: set[str]) -> None:
        """Remove leftovers of crashed writes (``.tmp-*`` folders, ``.CURRENT.*`` files, version folders
        and segments that never became live) and old versions, keeping the live one and the one it replaced
        (what CURRENT named, not the next folder by name) with their segments, so that a reader who read
        CURRENT just before the swap can still open its files. Call under ``lock()``."""
        used = set()
        for name in keep:
            try:
                manifest = json.loads((self.root / name / "manifest.json").read_text())
            except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
                continue
            used |= {entry["name"] for entry in manifest.get("segments", [])}
        for child in self.root.iterdir():
            if child.is_dir() and child.name not in keep and child.name.startswith(("v-", ".tmp-")):
                remove_tree(child)
            elif child.is_file() and child.name.startswith(".CURRENT."):
                child.unlink(missing_ok=True)
        segments = self.root / SEGMENTS
        for child in segments.iterdir() if segments.is_dir() else ():
            if child.name not in used:
                remove_tree(child)


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


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    with open(tmp, "w") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir_only(path.parent)


