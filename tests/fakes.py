"""The one fake-embedder pipeline of the unit tests (deterministic hash vectors, no model to load)."""
from __future__ import annotations

from pathlib import Path

FAKE_DIM = 64


def fake_pipeline(index_dir: Path, articles=None, **overrides):
    """A Pipeline with ``FakeEmbedder(64)`` over the bundled corpus (or over ``articles``, a list of
    ``Article``), indexed into ``index_dir``; ``overrides`` are Settings fields."""
    from index.build import update_index
    from index.chunker import Chunker
    from index.embedder import FakeEmbedder
    from index.lexical import LexicalWriter
    from index.store import IndexStore
    from rag.pipeline import Pipeline
    from rag.service import index_paths
    from rag.settings import Settings

    settings = Settings(**{"index_dir": index_dir, "embedding_model": f"fake:{FAKE_DIM}", "abstain_threshold": 0.1,
                           **overrides})
    embedder = FakeEmbedder(FAKE_DIM)
    if articles is None:
        data, _ = index_paths(settings, embedder, settings.corpus_dirs)
    else:
        store = IndexStore(settings.index_dir)
        data, _ = update_index(store, embedder, Chunker(), articles, extra_writers=[LexicalWriter(store)])
    return Pipeline(settings, embedder, data)
