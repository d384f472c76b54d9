"""One sync of the feeds into the index, its report and its state (``feeds.json``); see ``index.feeds``."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from common.errors import InputError, RagError
from index.loaders import MAX_ARTICLE_CHARS, make_article, within_limit
from index.segment import fsync_dir_only
from index.types import Article

if TYPE_CHECKING:
    from index.build import UpdateReport
    from index.fetch import Fetcher, Page
    from index.store import IndexStore

from index.feeds.items import (
    FEED_ACCEPT,
    PAGE_ACCEPT,
    Feed,
    Item,
    hash_text,
    html_text,
    http_day,
    item_id,
    page_text,
    parse_every,
    parse_feed,
)

log = logging.getLogger("rag.feeds")

STATE_FILE, STATE_FORMAT, LOCK_FILE = "feeds.json", 1, ".feeds.lock"


@dataclass
class FeedReport:
    """What a sync did with one feed."""

    url: str
    title: str = ""
    fetched: int = 0  # documents received in full: the feed, pages
    not_modified: int = 0  # 304 answers: the feed, pages
    new: list[str] = field(default_factory=list)  # article ids added to the index
    changed: list[str] = field(default_factory=list)  # article ids replaced by a new version
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)  # article ids whose items left the feed this time
    dropped: list[str] = field(default_factory=list)  # article ids deleted from the index (drop_removed)
    failed: list[dict] = field(default_factory=list)  # {"item": link or guid, "error": message}: items skipped
    error: str = ""  # the feed itself could not be read; its state is kept as it was

    def summary(self) -> str:
        """One line for people, and one per failure."""
        head = f"{self.url}{f' ({self.title})' if self.title else ''}: "
        if self.error:
            return f"{head}FAILED: {self.error.removeprefix(f'{self.url}: ')}"
        counts = (f"{self.fetched} fetched, {self.not_modified} not modified, {len(self.new)} new, "
                  f"{len(self.changed)} changed, {self.unchanged} unchanged, {len(self.removed)} removed"
                  f"{f' ({len(self.dropped)} dropped)' if self.dropped else ''}, {len(self.failed)} failed")
        return "\n".join([head + counts, *(f"  failed: {f['item']}: {f['error']}" for f in self.failed)])


@dataclass
class SyncReport:
    """What a sync did: per feed, and the index write (None when there was nothing to write)."""

    feeds: list[FeedReport]
    update: UpdateReport | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every feed was read (items may still have failed)."""
        return not any(f.error for f in self.feeds)

    def summary(self) -> str:
        """Lines for people."""
        index = f"index: {self.update.summary()}" if self.update is not None else "index: nothing to write"
        return "\n".join([*(f.summary() for f in self.feeds), f"{index} ({self.seconds:.1f} s)"])

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {"feeds": [dataclasses.asdict(f) for f in self.feeds], "seconds": self.seconds,
                "index": dict(self.update.__dict__) if self.update is not None else None}


# --- the sync ------------------------------------------------------------------------------------------


class Writer(Protocol):
    """Where a sync writes: the ids indexed now, and one write of articles and deletions."""

    def ids(self) -> set[str]: ...

    def write(self, articles: list[Article], delete: list[str]) -> UpdateReport: ...


class StoreWriter:
    """Writes into ``store`` with ``update_index`` (the command line; a server writes through
    ``rag.service.update_live`` so that it serves the new version). ``embedder`` may be a function that
    returns one: it is called at the first write, so a sync with nothing new loads no model."""

    def __init__(self, store: IndexStore, embedder, chunker, **options):
        self.store, self._embedder, self.chunker, self.options = store, embedder, chunker, options
        self.data = None

    def ids(self) -> set[str]:
        """The ids in the live version (read once per sync; segments already read are kept)."""
        if not self.store.exists():
            return set()
        self.data = self.store.load(reuse=self.data, lazy=True)
        return set(self.data.article_by_id)

    def write(self, articles: list[Article], delete: list[str]) -> UpdateReport:
        """One ``update_index`` of ``articles`` and ``delete``."""
        from index.build import update_index

        if not hasattr(self._embedder, "embed"):
            self._embedder = self._embedder()
        self.data, report = update_index(self.store, self._embedder, self.chunker, articles, delete=delete,
                                         reuse=self.data, **self.options)
        return report


class SyncStopped(Exception):
    """A sync was asked to stop (server shutdown) before it wrote anything."""


def sync_feeds(root: str | Path, urls: Iterable[str], fetcher: Fetcher, writer: Writer, drop_removed: bool = False,
               max_chars: int = MAX_ARTICLE_CHARS, wait: bool = True, stop: threading.Event | None = None,
               today: str = "") -> SyncReport | None:
    """Sync the feeds at ``urls`` into the index in ``root`` (its feeds.json beside it) once.

    A feed that fails is reported and the others go on; an item whose page fails is reported and
    skipped (tried again next time). Returns None when ``wait`` is false and another sync of ``root``
    is running. Raises what the index write raises, before the state is saved."""
    started, root = time.perf_counter(), Path(root)
    with _turn(root, wait) as mine:
        if not mine:
            return None
        state = load_state(root)
        run = _Sync(fetcher, writer.ids(), max_chars, today or dt.datetime.now(dt.UTC).date().isoformat(),
                    stop)
        reports, pending = [], {}
        for url in dict.fromkeys(u.strip() for u in urls if u.strip()):
            report, feed_state = run.feed(url, state["feeds"].get(url))
            reports.append(report)
            if feed_state is not None:
                pending[url] = feed_state
        delete = run.deletions(pending, {**state["feeds"], **pending}) if drop_removed else []
        run.check_stop()
        update = writer.write(list(run.articles.values()), delete) if run.articles or delete else None
        run.credit(reports, pending, update, delete)
        _note_same_url(pending, getattr(update, "same_url", None) or {})
        for feed_state in pending.values():
            feed_state["kept"] = [] if drop_removed else feed_state["kept"]
        save_state(root, {**state, "feeds": {**state["feeds"], **pending}})  # only now: the index write committed
    return SyncReport(reports, update, round(time.perf_counter() - started, 3))


class _Sync:
    """One sync's work: the articles to write and each feed's new state, committed together."""

    def __init__(self, fetcher: Fetcher, indexed: set[str], max_chars: int, today: str,
                 stop: threading.Event | None):
        self.fetcher, self.indexed, self.max_chars, self.today, self.stop = fetcher, indexed, max_chars, today, stop
        self.articles: dict[str, Article] = {}
        self.origin: dict[str, str] = {}  # article id -> the feed that gave it
        self.seen: dict[str, dict] = {}  # article id -> its item state, for an item listed by two feeds

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise SyncStopped("the sync was stopped before it wrote anything")

    def feed(self, url: str, saved: dict | None) -> tuple[FeedReport, dict | None]:
        """The feed's report and new state (None when it failed: its old state stays)."""
        saved = saved or {}
        report = FeedReport(url, title=saved.get("title", ""))
        try:
            return report, self._feed(url, saved, report)
        except RagError as exc:
            report.error = str(exc)
            return report, None

    def _feed(self, url: str, saved: dict, report: FeedReport) -> dict:
        old_items = saved.get("items", {})
        page = self.fetcher.get(url, saved.get("etag", ""), saved.get("last_modified", ""), accept=FEED_ACCEPT)
        if page.not_modified and any(s.get("full") and not self._known(s) for s in old_items.values()):
            report.not_modified += 1  # a text kept only in the feed is missing from the index: read it again
            page = self.fetcher.get(url, accept=FEED_ACCEPT)
        if page.not_modified:
            report.not_modified += 1
            feed = Feed(url, saved.get("title", ""), saved.get("language", ""),
                        tuple(Item.from_stored(key, s) for key, s in old_items.items()))
        else:
            report.fetched += 1
            feed = parse_feed(url, page.body, page.content_type, base=page.url)
            report.failed += [{"item": url, "error": problem} for problem in feed.problems]
        report.title = feed.title
        source = feed.title or urlsplit(url).hostname or url
        items = {}
        for item in feed.items:
            self.check_stop()
            items[item.key] = self.entry_item(item, old_items.get(item.key), url, source, report)
        report.removed = [_indexed_id(s) for key, s in old_items.items() if key not in items]
        listed = {_indexed_id(s) for s in items.values()}
        kept = [i for i in dict.fromkeys([*saved.get("kept", []), *report.removed]) if i not in listed]
        return {"title": feed.title, "language": feed.language, "etag": page.etag,
                "last_modified": page.last_modified, "checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "items": items, "kept": kept}  # kept: ids of items that left the feed, still in the index

    def _known(self, saved: dict) -> bool:
        """True when the item's text was indexed and is still there."""
        return bool(saved.get("text")) and _indexed_id(saved) in self.indexed

    def entry_item(self, item: Item, old: dict | None, feed_url: str, source: str, report: FeedReport) -> dict:
        """The item's new state; its article, when it is new or changed, joins the write."""
        article_id = item_id(feed_url, item.key)
        state = {"id": article_id, **item.stored()}
        if article_id in self.seen:  # listed by a feed synced before this one
            report.unchanged += 1
            return {**self.seen[article_id], **state}
        old = old if old and old.get("id") == article_id else None
        same = old is not None and self._known(old) and old.get("entry") == item.fingerprint
        if same and item.full and not item.content:  # kept from a feed that answered 304
            report.unchanged += 1
            return {**old, **state}
        try:
            text, page, meta = self.value_text(item, old if same else None, report)
            if text is None:
                return {**old, **state, "etag": page.etag, "last_modified": page.last_modified}
            text_hash = hash_text(text)
            if same and old.get("text") == text_hash:
                report.unchanged += 1
                return {**old, **state, **_validators(page)}
            article = self._article(item, article_id, text, text_hash, old, page, meta, source)
        except RagError as exc:
            report.failed.append({"item": item.link or item.key, "error": str(exc)})
            return old if old is not None else state  # a new item is tried again next time; an old one kept
        self.articles[article_id], self.origin[article_id] = article, feed_url
        self.seen[article_id] = {**state, "text": text_hash, "hash": article.content_hash,
                                 "updated": article.updated, **_validators(page)}
        return self.seen[article_id]

    def value_text(self, item: Item, old: dict | None, report: FeedReport) -> tuple[str | None, Page | None, dict]:
        """(text, page, page metadata); text None when the page answered 304 to ``old``'s validators."""
        if item.full:
            return item.content, None, {}
        page = self.fetcher.get(item.link, (old or {}).get("etag", ""), (old or {}).get("last_modified", ""),
                                accept=PAGE_ACCEPT)
        if page.not_modified:
            if old is None:
                raise InputError(f"{item.link}: the server answered 304 Not Modified to a request that was not "
                                 "conditional")
            report.not_modified += 1
            return None, page, {}
        report.fetched += 1
        text, meta = page_text(page)
        return text, page, meta

    def _article(self, item: Item, article_id: str, text: str, text_hash: str, old: dict | None,
                 page: Page | None, meta: dict, source: str) -> Article:
        date = item.published or meta.get("date", "")
        fields = {"id": article_id, "title": item.title or meta.get("title"), "date": date, "url": item.link,
                  "source": source, "language": item.language or meta.get("language"),
                  "updated": self._updated(item, date, text_hash, old, page)}
        article = make_article(fields, text, path=item.link or item.key)
        return within_limit(dataclasses.replace(article, path=""), self.max_chars, item.link or item.key)

    def _updated(self, item: Item, date: str, text_hash: str, old: dict | None, page: Page | None) -> str:
        """The date of this version: the feed's when it gives one; else, for a text that changed since it
        was indexed, the page's Last-Modified (or today); "" for a first version."""
        if item.updated and item.updated != date:
            return item.updated
        if old is None or not old.get("text"):
            return ""
        if old["text"] == text_hash:
            return old.get("updated", "")
        day = (http_day(page.last_modified) if page is not None else "") or self.today
        return day if day > date else ""

    def deletions(self, pending: dict, feeds: dict) -> list[str]:
        """Ids to delete with drop_removed: those of items that left their feed, unless a feed still lists them."""
        listed = {s["id"] for feed in feeds.values() for s in feed.get("items", {}).values()}
        kept = {article_id for feed in pending.values() for article_id in feed["kept"]}
        return sorted((kept & self.indexed) - listed - set(self.articles))

    def credit(self, reports: list[FeedReport], pending: dict, update: UpdateReport | None,
               delete: list[str]) -> None:
        """Count, per feed, what the index write added, replaced and left unchanged, and what it dropped."""
        if update is None:
            return
        by_url = {r.url: r for r in reports}
        item_of = {indexed: item for item, indexed in (getattr(update, "same_url", None) or {}).items()}
        origin = {**self.origin, **{indexed: self.origin[item] for indexed, item in item_of.items()}}
        for ids, kind in ((update.added, "new"), (update.replaced, "changed")):
            for article_id in ids:
                getattr(by_url[origin[article_id]], kind).append(article_id)
        for article_id in update.unchanged:
            by_url[origin[article_id]].unchanged += 1
        gone = set(delete)
        for url, feed_state in pending.items():
            by_url[url].dropped = [i for i in feed_state["kept"] if i in gone]


def _indexed_id(saved: dict) -> str:
    """The id an item's article has in the index: its own, or that of the indexed article of the same URL it
    replaced (``UpdateReport.same_url``)."""
    return saved.get("indexed_as") or saved["id"]


def _note_same_url(pending: dict, same_url: dict[str, str]) -> None:
    """Record on each item whose article took an indexed article's id (same URL) which id that is, so the
    next sync finds it indexed (and does not fetch it again for want of its own id)."""
    for feed_state in pending.values() if same_url else ():
        for saved in feed_state.get("items", {}).values():
            if saved.get("id") in same_url:
                saved["indexed_as"] = same_url[saved["id"]]


def _validators(page: Page | None) -> dict:
    return {"etag": page.etag, "last_modified": page.last_modified} if page is not None else {}


# --- the state file -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _turn(root: Path, wait: bool):
    """The sync lock of ``root`` (True), or False at once when another sync holds it and ``wait`` is false."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_state(root: str | Path) -> dict:
    """feeds.json of the index in ``root``; an empty state when there is none, or one this version cannot
    read (logged: the next sync fetches everything again, which is harmless)."""
    path = Path(root) / STATE_FILE
    empty = {"format": STATE_FORMAT, "feeds": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as exc:
        log.warning("%s unreadable (%s); every feed is read again", path, exc)
        return empty
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or not isinstance(state.get("feeds"), dict):
        log.warning("%s has another format; every feed is read again", path)
        return empty
    return state


def save_state(root: str | Path, state: dict) -> None:
    """Replace feeds.json atomically: a temporary file, fsync, rename, fsync of the folder."""
    root = Path(root)
    for leftover in root.glob(f".{STATE_FILE}.*"):  # of a crashed save; we hold the sync lock
        leftover.unlink(missing_ok=True)
    tmp = root / f".{STATE_FILE}.{secrets.token_hex(4)}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, ensure_ascii=False, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / STATE_FILE)
    fsync_dir_only(root)


__all__ = ["Feed", "FeedReport", "Item", "StoreWriter", "SyncReport", "SyncStopped", "Writer", "html_text",
           "item_id", "load_state", "page_text", "parse_every", "parse_feed", "save_state", "sync_feeds"]
