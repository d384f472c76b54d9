"""What answering takes and returns: the ask request, retrieval modes, hits, citations and answers."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from index.types import Chunk

if TYPE_CHECKING:
    from rag.retriever import Filters

Mode = Literal["dense", "lexical", "hybrid"]
MODES: tuple[str, ...] = typing.get_args(Mode)  # the retrieval modes; hybrid is the default


@dataclass(frozen=True)
class AskRequest:
    """One question and how to answer it: what ``rag ask``, ``POST /ask``, the OpenAI door, the UI and
    the evaluations hand to ``Pipeline.ask``. ``None`` means the setting's default."""

    question: str
    top_k: int | None = None
    backend: str | None = None
    filters: Filters | None = None
    history: tuple[dict, ...] = ()  # earlier turns, {"role": "user"|"assistant", "content": ...}
    mode: str | None = None  # retrieval mode, one of MODES


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its score (and, in hybrid mode, each component's score)."""

    chunk: Chunk
    score: float
    scores: dict = field(default_factory=dict, compare=False)
    source: str = ""  # the article's source (outlet, agency)
    copies: tuple = ()  # the story's other versions: {"article_id", "title", "source", "date", "url"}


@dataclass(frozen=True)
class Citation:
    """Passage number ``n`` of an answer: the chunk it shows, its span and its score."""

    n: int
    chunk_id: str
    article_id: str
    title: str
    date: str
    url: str
    text: str
    start: int
    end: int
    score: float
    highlights: tuple = ()  # (start, end) offsets inside ``text`` of the sentences the answer used
    cited: bool = False  # the answer cites it ([n] in its text); the others were retrieved, not used
    scores: dict = field(default_factory=dict, compare=False)  # dense cosine, BM25, fused, rerank
    source: str = ""  # the article's source (outlet, agency)
    copies: tuple = ()  # the same story published elsewhere: {"article_id", "title", "source", "date", "url"}

    @classmethod
    def of(cls, n: int, hit: Hit, highlights: tuple = (), cited: bool = False) -> Citation:
        """The citation numbered ``n`` for a hit."""
        c = hit.chunk
        names = {"dense": "dense", "lexical": "bm25", "fused": "fused", "rerank": "rerank"}
        scores = {names[k]: round(float(v), 4) for k, v in hit.scores.items() if k in names}
        return cls(n, c.id, c.article_id, c.title, c.date, c.url, c.text, c.start, c.end,
                   round(hit.score, 4), tuple(highlights), cited, scores, hit.source, tuple(hit.copies))


@dataclass
class Answer:
    """An answer, its numbered sources and how long each step took.

    ``citations`` holds the passages given to the backend, numbered from 1; the ``[n]`` marks
    in ``answer`` refer to them. ``abstained`` is true when the articles do not say.
    """

    question: str
    answer: str
    citations: list[Citation]
    abstained: bool
    backend: str
    model: str
    language: str = ""
    asked: str = ""  # the question as asked, when it was a follow-up made standalone into ``question``
    timings_ms: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fallback_from: str = ""  # the generative backend that failed when ``backend`` answered in its place
    evidence: float | None = None  # best dense cosine among the passages (what the abstention gate reads)
    reading: dict = field(default_factory=dict)
    """The reader's verdict: the best span (also when rejected), its passage n, confidence and threshold."""

    def to_dict(self) -> dict:
        """The JSON shape of ``rag ask --json`` and ``POST /ask``."""
        data = dataclasses.asdict(self)
        for citation in data["citations"]:
            citation["highlights"] = [list(h) for h in citation["highlights"]]
        data["reading"] = data["reading"] or None
        return data
