"""Answer backends: one protocol, a registry of named factories."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.errors import ConfigError, UnknownNameError
from common.injection import blank_instructions
from common.text import blank_corrections
from rag.types import Hit


@functools.lru_cache(maxsize=4096)
def readable(text: str) -> str:
    """What a backend may answer from in a passage: its text with instruction sentences (never quoted to a model)
    and correction notes (they state the wrong value on purpose) replaced by spaces; same length, same offsets."""
    return blank_corrections(blank_instructions(text))


@dataclass(frozen=True)
class Request:
    """What a backend answers from: the question, its language and the numbered passages (1-based)."""

    question: str
    hits: tuple[Hit, ...]
    language: str = ""
    history: tuple[dict, ...] = ()
    max_sentences: int = 3
    on_delta: Callable[[str], None] | None = field(default=None, compare=False)
    """Streaming backends call this with each piece of text as it is produced; others ignore it."""
    query_vector: Any = field(default=None, compare=False)
    """The question's embedding (query prompt) when the pipeline has it, so backends need not embed again."""
    latest: bool = False
    """The question asks for the newest state of things ("dernier", "actuellement", "latest", "now") or about a
    period (``period``): the newest article among the relevant ones matters."""
    period: bool = False
    """The question names a period ("en octobre 2024", "cette semaine"): its passages are that period's."""


@dataclass
class Generation:
    """A backend's answer: text with [n] marks, the sentence spans it used per passage, and notes."""

    text: str
    abstained: bool = False
    highlights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    model: str = ""
    notes: list[str] = field(default_factory=list)
    fallback_from: str = ""  # the backend that failed, when this answer comes from the fallback
    answered_by: str = ""  # the backend that wrote this answer instead, when not the fallback
    reading: dict = field(default_factory=dict)
    """The reader's verdict when one was asked: best span, passage n, confidence, threshold, accepted."""


class Backend(Protocol):
    """Turns a question and numbered passages into an answer that cites them."""

    name: str

    def generate(self, request: Request) -> Generation: ...


BackendFactory = Callable[..., Backend]
BACKENDS: dict[str, BackendFactory] = {}
# name -> settings -> "" when the backend can answer with these settings, else what to set.
MISSING: dict[str, Callable[..., str]] = {}


def register(name: str, missing: Callable[..., str] | None = None) -> Callable[[BackendFactory], BackendFactory]:
    """Register a factory ``(settings, embedder) -> Backend`` under ``name``; ``missing(settings)`` says
    what the backend still needs ("" when configured)."""
    def decorate(factory: BackendFactory) -> BackendFactory:
        BACKENDS[name] = factory
        MISSING[name] = missing or (lambda settings: "")
        return factory
    return decorate


def get_backend(name: str, settings, embedder) -> Backend:
    """A new backend by name; the error lists the known names, or says what an unconfigured one needs."""
    _load_builtin()
    if name not in BACKENDS:
        raise UnknownNameError("backend", name, list(BACKENDS))
    missing = MISSING[name](settings)
    if missing:
        raise ConfigError(f"the {name} backend is not configured on this server: {missing}")
    return BACKENDS[name](settings, embedder)


def available_backends(settings) -> list[str]:
    """The backends that can answer with ``settings`` (what the UI, /v1/models and /ready offer)."""
    _load_builtin()
    return sorted(name for name in BACKENDS if not MISSING[name](settings))


def backend_names() -> list[str]:
    """The registered backend names."""
    _load_builtin()
    return sorted(BACKENDS)


def _load_builtin() -> None:
    from rag.backends import extractive, llamacpp, openai, reader  # noqa: F401  (register themselves)
