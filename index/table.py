"""Chunks and articles of a segment with their text left on disk: what a large archive holds in memory.

Parsed into Python objects, a chunk costs about 2 KB of memory and an article more, so an archive of a
million chunks held ~5 GB of text that a question reads a few passages of. A table read from a segment's
JSON Lines file keeps, per row, where its line starts and the few columns that every search or filter
reads for all rows (chunk ids, article ids, dates, languages); a row is parsed from its line when asked
for (the hits of a question), through a small cache. An article read so (``StoredArticle``) keeps its
metadata and reads its text and MinHash signature from its line when asked.

A segment written since also holds ``rows.npz`` (``write_rows``): the line offsets, the columns and the
articles' metadata, so reading a segment of a million chunks parses no JSON line (``read_rows``); a
segment without it, or whose sidecar does not match its files, is scanned line by line instead.

The file stays open from the read on, so a segment that a later write prunes can still be read by a
version that lists it (the data outlives the folder entry on POSIX systems).
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from index.types import Chunk, analysis_key, keys_digest

COLUMNS = ("article_id", "date", "language")
ROWS_FILE = "rows.npz"
ROWS_VERSION = 1
CACHE_ROWS = 4096  # parsed rows kept per table: a few hundred questions' hits


class Column:
    """A string column as codes into its distinct values (dates and languages repeat, ids per article)."""

    def __init__(self, codes: np.ndarray, values: list[str]):
        self.codes, self.values = codes, values

    @classmethod
    def of(cls, strings) -> Column:
        """The column of a sequence of strings."""
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(s, len(index)) for s in strings), dtype=np.int32)
        return cls(codes, list(index))

    def where(self, predicate) -> np.ndarray:
        """A boolean mask of the rows whose value satisfies ``predicate`` (evaluated once per value)."""
        passes = np.fromiter((bool(predicate(v)) for v in self.values), dtype=bool, count=len(self.values))
        return passes[self.codes] if len(self.codes) else np.zeros(0, dtype=bool)

    @classmethod
    def concat(cls, columns: list[Column], masks: list[np.ndarray]) -> Column:
        """The rows of each column that its mask keeps, one after the other, with shared values."""
        index: dict[str, int] = {}
        parts = []
        for column, mask in zip(columns, masks):
            remap = np.array([index.setdefault(v, len(index)) for v in column.values], dtype=np.int32)
            parts.append(remap[column.codes[mask]] if len(remap) else np.zeros(0, dtype=np.int32))
        return cls(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32), list(index))


class LineFile:
    """Rows of a JSON Lines file read by position: their line offsets, one open file, a bounded cache."""

    def __init__(self, path: Path, starts: np.ndarray, lengths: np.ndarray):
        self.path, self.starts, self.lengths = path, starts, lengths
        self._file = open(path, "rb")  # noqa: SIM115 (open for the table's life: see the module docstring)
        self._cache: dict[int, dict] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.starts)

    def row(self, i: int) -> dict:
        """The parsed line of row ``i``."""
        found = self._cache.get(i)
        if found is None:
            found = json.loads(os.pread(self._file.fileno(), int(self.lengths[i]), int(self.starts[i])))
            with self._lock:
                if len(self._cache) >= CACHE_ROWS:
                    self._cache.clear()
                self._cache[i] = found
        return found

    def rows(self) -> Iterator[dict]:
        """Every row in order, read sequentially (not cached)."""
        with open(self.path, "rb") as fh:
            yield from (json.loads(line) for line in fh if line.strip())

    def close(self) -> None:
        self._file.close()


def scan(path: Path, keep) -> tuple[np.ndarray, np.ndarray, list]:
    """Offsets and lengths of the non-blank lines of ``path``, and ``keep(record)`` of each parsed line."""
    starts, lengths, kept = [], [], []
    offset = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                starts.append(offset)
                lengths.append(len(line))
                kept.append(keep(json.loads(line)))
            offset += len(line)
    return np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int32), kept


def read_articles(path: Path, record_type) -> list:
    """The records of an ``articles.jsonl``, each made by ``record_type.stored(fields, lines, row)`` from its
    line's fields but those named in ``record_type.ON_DISK`` (read from the line when asked for)."""
    on_disk = set(getattr(record_type, "ON_DISK", ()))
    starts, lengths, kept = scan(path, lambda r: {k: v for k, v in r.items() if k not in on_disk})
    if not on_disk:
        return [record_type(**fields) for fields in kept]
    lines = LineFile(path, starts, lengths)
    return [record_type.stored(fields, lines, row) for row, fields in enumerate(kept)]


class ChunkTable(Sequence):
    """A segment's chunks: in memory (a segment being written) or read by row from its ``chunks.jsonl``."""

    def __init__(self, rows: list[Chunk] | None = None, lines: LineFile | None = None,
                 ids: list[str] | None = None, columns: dict[str, Column] | None = None, key_digest: str = ""):
        self._rows, self._lines = rows, lines
        self._ids, self._columns, self._digest = ids, columns or {}, key_digest

    @classmethod
    def of(cls, chunks) -> ChunkTable:
        """A table over chunks held in memory (a table is returned as it is)."""
        return chunks if isinstance(chunks, ChunkTable) else cls(rows=list(chunks))

    @classmethod
    def read(cls, path: Path) -> ChunkTable:
        """The chunks of a ``chunks.jsonl``: one pass reads the columns and the analysis keys' digest."""
        def keep(record: dict) -> tuple:
            key = analysis_key(record["id"], record.get("language", ""), record["title"], record.get("heading", ""))
            return key, *(record.get(name, "") for name in COLUMNS)

        starts, lengths, kept = scan(path, keep)
        columns = {name: Column.of(row[i + 1] for row in kept) for i, name in enumerate(COLUMNS)}
        digest = keys_digest(row[0] for row in kept)
        return cls(lines=LineFile(path, starts, lengths), columns=columns, key_digest=digest)

    @property
    def in_memory(self) -> bool:
        return self._rows is not None

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._lines)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._rows is not None:
            return self._rows[i]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return Chunk(**self._lines.row(i))

    def __iter__(self) -> Iterator[Chunk]:
        if self._rows is not None:
            return iter(self._rows)
        return (Chunk(**record) for record in self._lines.rows())

    @property
    def ids(self) -> list[str]:
        """Every chunk's id, in order (read from the file when asked: only MMR needs them all)."""
        if self._ids is None:
            self._ids = [c.id for c in self._rows] if self._rows is not None else [
                r["id"] for r in self._lines.rows()]
        return self._ids

    def column(self, name: str) -> Column:
        """The ``article_id``, ``date`` or ``language`` of every chunk."""
        if name not in self._columns:
            self._columns[name] = Column.of(getattr(c, name) for c in self._rows)
        return self._columns[name]

    @property
    def key_digest(self) -> str:
        """sha1 of the chunks' analysis keys in order (``LexicalIndex.matches`` compares it)."""
        if not self._digest:
            self._digest = keys_digest(analysis_key(c.id, c.language, c.title, c.heading) for c in self._rows)
        return self._digest


def locate(live_masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For each live position across segments (their ``live_masks``): its segment number and its row there."""
    if not live_masks:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    segment = np.concatenate([np.full(int(m.sum()), i, dtype=np.int32) for i, m in enumerate(live_masks)])
    return segment, np.concatenate([np.flatnonzero(m) for m in live_masks]).astype(np.int64)


class LiveChunks(Sequence):
    """The live chunks of a version, across its segments' tables: position ``i`` counts live chunks only."""

    def __init__(self, tables: list[ChunkTable], live_masks: list[np.ndarray]):
        self.tables, self.masks = tables, live_masks
        self._simple = len(tables) == 1 and bool(live_masks[0].all())
        if not self._simple:
            self.segment, self.local = locate(live_masks)
        self._columns: dict[str, Column] = {}
        self._ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.tables[0]) if self._simple else len(self.segment)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._simple:
            return self.tables[0][i]
        return self.tables[int(self.segment[i])][int(self.local[i])]

    def __iter__(self) -> Iterator[Chunk]:
        for table, mask in zip(self.tables, self.masks):
            yield from (c for c, keep in zip(table, mask) if keep)

    def column(self, name: str) -> Column:
        """A column (``ChunkTable.column``) over the live chunks."""
        if name not in self._columns:
            self._columns[name] = Column.concat([t.column(name) for t in self.tables], self.masks)
        return self._columns[name]

    @property
    def ids(self) -> list[str]:
        """The live chunks' ids, in order."""
        if self._ids is None:
            self._ids = [i for t, m in zip(self.tables, self.masks) for i, keep in zip(t.ids, m) if keep]
        return self._ids


def write_lines(path: Path, records) -> tuple[np.ndarray, np.ndarray]:
    """``records`` as JSON Lines; returns each line's offset and length."""
    starts, lengths, offset = [], [], 0
    with open(path, "wb") as fh:
        for record in records:
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
            fh.write(line)
            starts.append(offset)
            lengths.append(len(line))
            offset += len(line)
    return np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int32)


def write_rows(path: Path, chunks: ChunkTable, chunk_lines, articles: list, article_lines, on_disk=()) -> None:
    """The sidecar of a segment's two JSON Lines files (``chunk_lines``, ``article_lines``: what
    ``write_lines`` returned for them): offsets, the chunks' columns and key digest, the articles' metadata."""
    columns = {name: chunks.column(name) for name in COLUMNS}
    meta = {"version": ROWS_VERSION, "chunks": len(chunks), "articles": len(articles),
            "key_digest": chunks.key_digest, "values": {name: c.values for name, c in columns.items()},
            "records": [{k: v for k, v in _fields(a).items() if k not in on_disk} for a in articles]}
    np.savez(path, meta=np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8),
             chunk_starts=chunk_lines[0], chunk_lengths=chunk_lines[1], article_starts=article_lines[0],
             article_lengths=article_lines[1], **{f"codes_{name}": c.codes for name, c in columns.items()})


def read_rows(folder: Path, record_type) -> tuple[ChunkTable, list] | None:
    """The chunks and articles of a segment folder from its ``rows.npz``; None when it has none or the
    sidecar does not describe its files (then they are scanned)."""
    path = folder / ROWS_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        arrays = {name: npz[name] for name in npz.files if name != "meta"}
    chunk_file, article_file = folder / "chunks.jsonl", folder / "articles.jsonl"
    if meta.get("version") != ROWS_VERSION or not _ends_at(chunk_file, arrays, "chunk") or not _ends_at(
            article_file, arrays, "article"):
        return None
    columns = {name: Column(arrays[f"codes_{name}"], meta["values"][name]) for name in COLUMNS}
    chunks = ChunkTable(lines=LineFile(chunk_file, arrays["chunk_starts"], arrays["chunk_lengths"]),
                        columns=columns, key_digest=meta["key_digest"])
    lines = LineFile(article_file, arrays["article_starts"], arrays["article_lengths"])
    stored = getattr(record_type, "stored", None)
    records = meta["records"]
    articles = ([stored(fields, lines, row) for row, fields in enumerate(records)] if stored
                else [record_type(**lines.row(row)) for row in range(len(records))])
    return chunks, articles


def _ends_at(path: Path, arrays: dict, kind: str) -> bool:
    """True when the offsets of ``kind`` rows end where the file does (a sidecar of these very lines)."""
    starts, lengths = arrays[f"{kind}_starts"], arrays[f"{kind}_lengths"]
    end = int(starts[-1]) + int(lengths[-1]) if len(starts) else 0
    return path.exists() and path.stat().st_size == end


def _fields(record) -> dict:
    import dataclasses

    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
