"""Wiring: settings -> embedder, chunker, index and pipeline. Used by the CLI, the API and the UI."""
from __future__ import annotations

import logging
import sys

from index.build import UpdateReport, load_or_empty, update_index
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
    return load_embedder(settings.embedding_model, settings.cache_dir,
                         **({} if settings.embedding_model.startswith("fake:")
                            else {"batch_size": settings.embed_batch_size, "progress": progress}))


def index_paths(settings: Settings, embedder, paths, delete=(), prune: bool = False,
                rebuild: bool = False) -> tuple[IndexData, UpdateReport]:
    """Index the articles under ``paths`` incrementally; ``prune`` deletes those whose files are gone."""
    articles = load_articles(paths) if paths else []
    return update_index(IndexStore(settings.index_dir), embedder, make_chunker(settings), articles,
                        delete=delete, prune_under=[str(p) for p in paths] if prune else None, rebuild=rebuild)


def sync_corpus(settings: Settings, embedder) -> tuple[IndexData, UpdateReport]:
    """Bring the index in line with the corpus folders: new, changed and removed files."""
    paths = [p for p in settings.corpus_dirs if p.exists()]
    return index_paths(settings, embedder, paths, prune=True)


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
