"""Wiring: settings -> embedder, chunker, index and pipeline. Used by the CLI, the API and the UI."""
from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from index.build import UpdateReport, load_or_empty, update_index
from index.chunker import Chunker
from index.embedder import load_embedder
from index.lexical import LexicalWriter
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
    return load_embedder(settings.embedding_model, settings.cache_dir,
                         **({} if settings.embedding_model.startswith("fake:")
                            else {"batch_size": settings.embed_batch_size, "progress": progress}))


def index_paths(settings: Settings, embedder, paths, delete=(), prune: bool = False,
                rebuild: bool = False, articles=()) -> tuple[IndexData, UpdateReport]:
    """Index the articles under ``paths`` (and ``articles`` given as objects) incrementally;
    ``prune`` deletes those whose files are gone."""
    articles = [*(load_articles(paths, settings.max_article_chars) if paths else []), *articles]
    store = IndexStore(settings.index_dir)
    return update_index(store, embedder, make_chunker(settings), articles,
                        delete=delete, prune_under=[str(p) for p in paths] if prune else None, rebuild=rebuild,
                        extra_writers=[LexicalWriter(store)])  # BM25 in the same version, same manifest


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
    data, report = index_paths(pipeline.settings, pipeline.embedder, [], delete=delete, articles=articles)
    with _LIVE_WRITES:
        if report.changed and (pipeline.data.path is None or Path(data.path).name > Path(pipeline.data.path).name):
            pipeline.swap(data)
    return report


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
