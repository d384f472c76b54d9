"""Answer backends: one protocol, a registry of named factories."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.errors import UnknownNameError
from rag.types import Hit


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


def register(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Register a factory ``(settings, embedder) -> Backend`` under ``name``."""
    def decorate(factory: BackendFactory) -> BackendFactory:
        BACKENDS[name] = factory
        return factory
    return decorate


def get_backend(name: str, settings, embedder) -> Backend:
    """A new backend by name; the error lists the known names."""
    _load_builtin()
    if name not in BACKENDS:
        raise UnknownNameError("backend", name, list(BACKENDS))
    return BACKENDS[name](settings, embedder)


def backend_names() -> list[str]:
    """The registered backend names."""
    _load_builtin()
    return sorted(BACKENDS)


def _load_builtin() -> None:
    from rag.backends import extractive, llamacpp, openai, reader  # noqa: F401  (register themselves)
