"""Build and update the index incrementally: only new or changed chunks are embedded, and on a large
index only they are written.

Below ``INCREMENTAL_MIN`` live chunks a write rebuilds the version as one segment (seconds at most). At
or above it, a write adds one segment with the added and replaced articles (a flat FAISS index and BM25
weighted with the main segment's frequencies) and tombstones the old chunks of replaced and deleted ones;
more than ``MAX_DELTAS`` small segments are merged into one. ``compact`` folds everything back into one
segment (the cost of a full build, run off the writer lock) once tombstones and small segments pass
``COMPACT_SHARE`` of the live chunks: ``compaction_due`` says when."""
from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import IndexMismatchError, NotFoundError
from index import duplicates
from index.chunker import Chunker
from index.duplicates import THRESHOLD as DUPLICATE_THRESHOLD
from index.duplicates import Incoming
from index.embedder import Embedder
from index.store import FORMAT, ArticleRecord, IndexData, IndexStore, Segment, faiss_description
from index.types import Article, Chunk

INCREMENTAL_MIN = 20_000  # live chunks from which a write adds a segment instead of rebuilding one
MAX_DELTAS = 8  # small segments beside the main one; one more and they are merged into one
COMPACT_SHARE = 0.1  # tombstoned + small-segment chunks, as a share of live ones, that make compaction due


@dataclass
class UpdateReport:
    """What an update did, and how long it took."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_total: int = 0
    incremental: bool = False  # written as a new segment beside the existing ones
    same_url: dict = field(default_factory=dict)  # given id -> the indexed article of the same URL it replaced
    seconds: dict = field(default_factory=dict)
    path: str = ""

    @property
    def changed(self) -> bool:
        """True when the update wrote a new version."""
        return bool(self.added or self.replaced or self.deleted)

    def summary(self) -> str:
        """One line for people."""
        by_url = "".join(f"; {new} has the URL of {old}, which it replaced" for new, old in self.same_url.items())
        return (f"{len(self.added)} added, {len(self.replaced)} replaced, {len(self.unchanged)} unchanged, "
                f"{len(self.deleted)} deleted; {self.chunks_embedded} chunks embedded, "
                f"{self.chunks_total} in the index{by_url}")


def expected_manifest(embedder: Embedder, chunker: Chunker) -> dict:
    """The manifest fields an index must have to be used with this embedder and chunker."""
    return {"format": FORMAT, "model": embedder.name, "dimension": embedder.dim, "normalized": True,
            "chunker": chunker.settings()}


def load_or_empty(store: IndexStore, embedder: Embedder, chunker: Chunker, rebuild: bool = False,
                  reuse: IndexData | None = None, lazy: bool = False) -> IndexData:
    """The live version if it matches the settings, an empty one if there is none (or ``rebuild``);
    segments already loaded in ``reuse`` are not read again, FAISS files only when needed with ``lazy``."""
    expect = expected_manifest(embedder, chunker)
    if store.exists() and not rebuild:
        return store.load(expect=expect, reuse=reuse, lazy=lazy)
    return IndexData({**expect, "counts": {"articles": 0, "chunks": 0}}, [], [],
                     np.zeros((0, embedder.dim), dtype=np.float32))


def update_index(store: IndexStore, embedder: Embedder, chunker: Chunker, articles: Iterable[Article] = (),
                 delete: Iterable[str] = (), prune_under: Iterable[str] | None = None,
                 rebuild: bool = False, reuse: IndexData | None = None,
                 duplicate_threshold: float = DUPLICATE_THRESHOLD) -> tuple[IndexData, UpdateReport]:
    """Add or replace ``articles`` and delete the ``delete`` ids.

    With ``prune_under`` (folder or file paths), also delete every indexed article that was loaded
    from under one of them but is not among ``articles`` (its file was removed).

    Unchanged articles (same content hash) are skipped; chunks whose id already exists keep their
    vector. ``reuse``: a version already in memory (the one a server serves), whose segments are not read
    again. A new or changed article whose MinHash similarity with an indexed one (or another of the write)
    reaches ``duplicate_threshold`` is recorded as its copy (index/duplicates.py). A replaced article keeps
    its earlier versions' dates and hashes in ``history``. Returns the live data and a report.
    """
    articles, delete = list(articles), set(delete)
    report, started = UpdateReport(), time.perf_counter()
    # Embed first, without the writer lock (the slow part: seconds per article on two cores), against
    # the live version as it is now; then take the lock only to apply and commit, embedding under it
    # just what another writer changed meanwhile (usually nothing).
    embedder, snapshot = _Prepared(embedder), None
    if articles:
        snapshot = load_or_empty(store, embedder.inner, chunker, rebuild, reuse=reuse, lazy=True)
        articles, report.same_url = same_url(snapshot, articles, delete)
        embedder.prepare(snapshot, articles, chunker)
    report.seconds["prepare"] = round(time.perf_counter() - started, 3)
    with store.lock():
        locked = time.perf_counter()
        # The version read before the lock is still the live one unless another writer committed since:
        # then it is read again (loading a large index twice would cost as much as the write).
        live = store.current_path() if store.exists() else None
        unchanged = snapshot is not None and (snapshot.path == live or rebuild)
        held = snapshot if snapshot is not None else reuse
        old = snapshot if unchanged else load_or_empty(store, embedder, chunker, rebuild, reuse=held, lazy=True)
        report.seconds["load"] = round(time.perf_counter() - locked, 3)
        articles, matched = same_url(old, articles, delete)  # also against what another writer committed since
        report.same_url.update(matched)
        missing = delete - set(old.article_by_id)
        if missing:
            raise NotFoundError(f"cannot delete unknown article(s) {', '.join(sorted(missing))}; "
                                "`rag articles` lists the indexed ones")
        given = {a.id for a in articles}
        if prune_under is not None:
            delete |= {r.id for r in old.articles if r.id not in given and _under(r.path, prune_under)}
        if given & delete:
            raise IndexMismatchError(f"article(s) {', '.join(sorted(given & delete))} both given and deleted")
        new = _apply(old, articles, delete, embedder, chunker, report, rebuild, duplicate_threshold)
        report.seconds["embed_locked"] = round(time.perf_counter() - locked - report.seconds["load"], 3)
        if report.changed or rebuild:
            report.path = str(store.write(new))
        else:
            new = old
        report.seconds["locked"] = round(time.perf_counter() - locked, 3)
    report.chunks_embedded = embedder.embedded
    report.chunks_total = len(new.chunks)
    report.seconds["total"] = round(time.perf_counter() - started, 3)
    return new, report


def same_url(data: IndexData, articles: list[Article], delete: set[str]) -> tuple[list[Article], dict[str, str]]:
    """The articles, those with a new id but the URL of an indexed article given that article's id: the same
    URL is the same article, a new version of it (a corrected page, a feed that changed its guids), which
    replaces it and keeps its history. Returns them and what was matched (given id -> indexed id)."""
    if not any(a.url.strip() and a.id not in data.article_by_id for a in articles):
        return articles, {}
    by_url = {r.url.strip(): r.id for r in data.articles if r.url.strip()}
    given = {a.id for a in articles}
    out, matched = [], {}
    for article in articles:
        known = by_url.get(article.url.strip()) if article.id not in data.article_by_id else None
        if known and known not in given and known not in delete:
            matched[article.id] = known
            article = dataclasses.replace(article, id=known)
        out.append(article)
    return out, matched


class _Prepared:
    """The embedder, with the vectors of an update's new chunks computed before the writer lock."""

    def __init__(self, inner: Embedder):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.ready: dict[str, np.ndarray] = {}
        self.embedded = 0

    def prepare(self, live: IndexData, articles: list[Article], chunker: Chunker) -> None:
        """Embed the chunks of ``articles`` that ``live`` has no vector for."""
        self.embed(passages_to_embed(live, articles, chunker), kind="passage")

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        if kind != "passage":
            return self.inner.embed(texts, kind=kind)
        todo = list(dict.fromkeys(t for t in texts if t not in self.ready))
        if todo:
            self.ready.update(zip(todo, self.inner.embed(todo, kind="passage")))
            self.embedded += len(todo)
        return np.stack([self.ready[t] for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)


def passages_to_embed(live: IndexData | None, articles: list[Article], chunker: Chunker) -> list[str]:
    """The distinct passage texts an update of ``live`` (None: an empty index) with ``articles`` embeds: those
    of the chunks of new or changed articles that ``live`` has no vector for, in the articles' order."""
    known = [a for a in articles if live is not None and a.id in live.article_by_id]
    have = {(c.id, c.title) for a in known for c in live.chunks_of(a.id)}  # chunk ids hold the article id
    hashes = {a.id: live.article_by_id[a.id].content_hash for a in known}
    texts = [passage_text(c) for a in articles if hashes.get(a.id) != a.content_hash
             for c in chunker.chunk(a) if (c.id, c.title) not in have]
    return list(dict.fromkeys(texts))


def _under(path: str, roots: Iterable[str]) -> bool:
    """True when ``path`` (possibly ``file:line``) is one of ``roots`` or inside one of them."""
    if not path:
        return False
    target = Path(re.sub(r":\d+$", "", path)).resolve()  # JSON Lines records are "file:line"
    return any(target == Path(r).resolve() or Path(r).resolve() in target.parents for r in roots)


def _apply(old: IndexData, articles: list[Article], delete: set[str], embedder: Embedder,
           chunker: Chunker, report: UpdateReport, rebuild: bool = False,
           threshold: float = DUPLICATE_THRESHOLD) -> IndexData:
    if _incremental(old, rebuild):  # only what changes is looked at: the cost does not grow with the index
        report.incremental = True
        report.deleted = sorted(delete)
        for article in articles:
            record = old.article_by_id.get(article.id)
            if record is None:
                report.added.append(article.id)
            elif record.content_hash == article.content_hash:
                report.unchanged.append(article.id)
            else:
                report.replaced.append(article.id)
        return _add_segment(old, articles, embedder, chunker, report, threshold)
    incoming = {a.id: a for a in articles}
    old_chunks: dict[str, list[Chunk]] = {}
    for chunk in old.chunks:
        old_chunks.setdefault(chunk.article_id, []).append(chunk)
    plan: list[tuple[ArticleRecord | Article, list[Chunk]]] = []
    for record in old.articles:  # existing order; a changed article stays in its place
        new = incoming.get(record.id)
        if record.id in delete:
            report.deleted.append(record.id)
        elif new is not None and new.content_hash != record.content_hash:
            report.replaced.append(record.id)
            plan.append((new, chunker.chunk(new)))
        else:
            if new is not None:
                report.unchanged.append(record.id)
            plan.append((record, old_chunks.get(record.id, [])))
    for article in articles:
        if article.id not in old.article_by_id:
            report.added.append(article.id)
            plan.append((article, chunker.chunk(article)))
    chunks = [chunk for _, cs in plan for chunk in cs]
    vectors = _vectors_for(chunks, old, embedder, report)
    records = _records(plan, vectors, old, delete, threshold)
    manifest = {**old.manifest, "counts": {"articles": len(records), "chunks": len(chunks)},
                "faiss": faiss_description(len(chunks)), "updated": _now()}
    reuse = [s.lexical for s in old.segments if s.chunks]
    return IndexData.of_segments(manifest, [_segment(records, chunks, vectors, reuse)], {})


def _incremental(old: IndexData, rebuild: bool) -> bool:
    """True when a write should add a segment: a large index, read from segments on disk."""
    return (not rebuild and len(old.chunks) >= INCREMENTAL_MIN and old.path is not None
            and not any(s.legacy or s.path is None for s in old.segments))


def _add_segment(old: IndexData, articles: list[Article], embedder: Embedder, chunker: Chunker,
                 report: UpdateReport, threshold: float = DUPLICATE_THRESHOLD) -> IndexData:
    """``old`` with a new segment holding the added and replaced articles, their old chunks tombstoned."""
    changed = set(report.added) | set(report.replaced)
    fresh = [(a, chunker.chunk(a)) for a in dict((a.id, a) for a in articles if a.id in changed).values()]
    chunks = [chunk for _, cs in fresh for chunk in cs]
    replaced = np.concatenate([old.positions_of(i) for i in report.replaced] or [np.zeros(0, np.int64)])
    dead = {name: set(ids) for name, ids in old.dead.items()}
    for article_id in [*report.replaced, *report.deleted]:
        dead[old.segment_of[article_id]].add(article_id)
    segments = list(old.segments)
    if chunks:
        main = old.segments[0]
        vectors = _vectors_for(chunks, old, embedder, report, replaced)
        records = _records(fresh, vectors, old, set(report.deleted), threshold)
        segments.append(_segment(records, chunks, vectors, stats=main.lexical_stats()))
    data = IndexData.of_segments(old.manifest, segments, {k: frozenset(v) for k, v in dead.items()})
    if len(data.segments) - 1 > MAX_DELTAS:
        data = _merge_deltas(data)
    data.manifest = {**old.manifest, "counts": {"articles": len(data.articles), "chunks": len(data.chunks)},
                     "updated": _now()}
    return data


def _records(plan: list[tuple[ArticleRecord | Article, list[Chunk]]], vectors: np.ndarray, old: IndexData,
             delete: set[str], threshold: float) -> list[ArticleRecord]:
    """The records of a write's plan (kept records as they are): new and changed articles get their
    story (the article they copy, if any) and signature, and a replaced one its history."""
    firsts = np.cumsum([0] + [len(cs) for _, cs in plan])[:-1]
    incoming = [Incoming(item.id, item.date, item.text, vectors[first] if cs else None)
                for (item, cs), first in zip(plan, firsts) if isinstance(item, Article)]
    if not incoming:
        return [item for item, _ in plan]
    batch = {a.id for a in incoming}

    def neighbours(vector: np.ndarray) -> list[str]:
        return [old.chunks[i].article_id for i, _ in old.search(vector, duplicates.NEIGHBOURS)]

    def known(article_id: str) -> tuple[str, str] | None:
        record = old.article_by_id.get(article_id)
        if record is None or article_id in batch or article_id in delete:
            return None
        return record.story_id, record.minhash or duplicates.encode(duplicates.signature(record.text))

    stories = duplicates.find_stories(incoming, neighbours, known, threshold)
    records = []
    for item, cs in plan:
        if isinstance(item, ArticleRecord):
            records.append(item)
            continue
        story, minhash = stories[item.id]
        extra = {"story": "" if story == item.id else story, "minhash": minhash}
        earlier = old.article_by_id.get(item.id)
        records.append(earlier.replaced_by(item, len(cs), **extra) if earlier is not None
                       else ArticleRecord.of(item, len(cs), **extra))
    return records


def _merge_deltas(data: IndexData) -> IndexData:
    """The main segment, and one segment with the live contents of all the others."""
    main, deltas = data.segments[0], data.segments[1:]
    records = [a for s in deltas for a in s.articles if a.id not in data.dead[s.name]]
    start = int(data.live_masks[0].sum())
    chunks = data.chunks[start:]
    merged = _segment(records, chunks, data.vectors[np.arange(start, len(data.chunks))],
                      [s.lexical for s in deltas], main.lexical_stats())
    return IndexData.of_segments(data.manifest, [main, merged], {main.name: data.dead[main.name]})


def _segment(records: list, chunks: list[Chunk], vectors: np.ndarray, reuse=(), stats=None) -> Segment:
    return Segment.build(records, chunks, vectors, reuse, stats)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def compaction_due(data: IndexData) -> bool:
    """True when tombstones and small segments pass COMPACT_SHARE of the live chunks."""
    if len(data.segments) == 1 and not data.tombstones:
        return False
    small = len(data.chunks) - int(data.live_masks[0].sum())
    return data.tombstones + small > COMPACT_SHARE * max(len(data.chunks), 1)


def compact(store: IndexStore, log=lambda message: None) -> IndexData | None:
    """Fold the live version into one segment; None when it is one already.

    The segment is built from a snapshot without the writer lock (at 1M chunks, minutes); under the lock,
    what was written meanwhile is kept: later segments stay beside the new one, and articles deleted or
    replaced since the snapshot are tombstoned in it."""
    if not store.exists():
        return None
    started = time.perf_counter()
    snapshot = store.load()
    if len(snapshot.segments) == 1 and not snapshot.tombstones and not snapshot.segments[0].legacy:
        return None
    log(f"compacting {len(snapshot.segments)} segments, {snapshot.tombstones} tombstoned chunks, "
        f"{len(snapshot.chunks)} live")
    merged = _segment(list(snapshot.articles), list(snapshot.chunks), snapshot.vectors,  # gathered in batches
                      [s.lexical for s in snapshot.segments])
    with store.lock():
        current = store.load(reuse=snapshot)
        before = {s.name for s in snapshot.segments}
        later = [s for s in current.segments if s.name not in before]
        kept = {a for a, name in current.segment_of.items() if name in before}
        dead = {merged.name: frozenset(a.id for a in merged.articles if a.id not in kept),
                **{s.name: current.dead[s.name] for s in later}}
        data = IndexData.of_segments({**current.manifest, "faiss": merged.info, "updated": _now()},
                                     [merged, *later], dead)
        data.manifest["counts"] = {"articles": len(data.articles), "chunks": len(data.chunks)}
        store.write(data)
    log(f"compacted in {time.perf_counter() - started:.1f} s: {len(data.segments)} segment(s)")
    return data


def _vectors_for(chunks: list[Chunk], old: IndexData, embedder: Embedder, report: UpdateReport,
                 candidates: np.ndarray | None = None) -> np.ndarray:
    """Vectors for ``chunks``: reused by chunk id where the old index has them (among the ``candidates``
    positions, or all), embedded otherwise."""
    positions = range(len(old.chunks)) if candidates is None else candidates.tolist()
    position = {(old.chunks[i].id, old.chunks[i].title): i for i in positions}
    todo = [i for i, c in enumerate(chunks) if (c.id, c.title) not in position]
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    reused = [i for i, c in enumerate(chunks) if (c.id, c.title) in position]
    if reused:
        vectors[reused] = old.vectors[[position[(chunks[i].id, chunks[i].title)] for i in reused]]
    if todo:
        vectors[todo] = embedder.embed([passage_text(chunks[i]) for i in todo], kind="passage")
    return vectors


def passage_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its title gives the passage context the chunk alone may lack."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text
