"""The question-answering pipeline: retrieve, decide whether the articles say, generate, cite."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from index.errors import InputError
from index.lang import detect_language
from index.store import IndexData
from rag.backends import Backend, Request, get_backend
from rag.retriever import DenseRetriever, Filters
from rag.settings import Settings
from rag.types import Answer, Citation

ABSTAIN_TEXT = {
    "fr": "Les articles ne le disent pas.",
    "en": "The articles don't say.",
}


@dataclass(frozen=True)
class _State:
    data: IndexData
    retriever: DenseRetriever


class Pipeline:
    """Answers questions from the loaded index; ``swap`` replaces the index atomically."""

    def __init__(self, settings: Settings, embedder, data: IndexData):
        self.settings, self.embedder = settings, embedder
        self._state = _State(data, DenseRetriever(data, embedder))
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    @property
    def data(self) -> IndexData:
        """The index currently answered from."""
        return self._state.data

    def swap(self, data: IndexData) -> None:
        """Answer from ``data`` from now on; a question in flight keeps the index it started with."""
        self._state = _State(data, DenseRetriever(data, self.embedder))

    def backend(self, name: str | None = None) -> Backend:
        """The named backend (default from settings), created once."""
        name = name or self.settings.backend
        with self._lock:
            if name not in self._backends:
                self._backends[name] = get_backend(name, self.settings, self.embedder)
            return self._backends[name]

    def ask(self, question: str, top_k: int | None = None, backend: str | None = None,
            filters: Filters | None = None, history: list[dict] | None = None) -> Answer:
        """Answer ``question`` from the articles, or abstain when they don't say."""
        question = self.check_question(question)
        state, chosen = self._state, self.backend(backend)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        vector = state.retriever.embed_query(question)
        timings["embed"] = _ms(started)
        mark = time.perf_counter()
        hits = state.retriever.search(vector, top_k or self.settings.top_k, filters)
        timings["search"] = _ms(mark)
        language = detect_language(question, default="fr")
        best = hits[0].score if hits else float("-inf")
        mark = time.perf_counter()
        if best < self.settings.abstain_threshold:
            generation = None
        else:
            generation = chosen.generate(Request(question, tuple(hits), language, tuple(history or ()),
                                                 self.settings.answer_sentences))
        timings["generate"] = _ms(mark)
        timings["total"] = _ms(started)
        abstained = generation is None or generation.abstained or not generation.text.strip()
        highlights = generation.highlights if generation and not abstained else {}
        citations = [Citation.of(n, hit, tuple(highlights.get(n, ()))) for n, hit in enumerate(hits, 1)]
        notes = list(generation.notes) if generation else [
            f"best passage score {best:.3f} is below the abstention threshold {self.settings.abstain_threshold}"]
        return Answer(
            question=question,
            answer=ABSTAIN_TEXT.get(language, ABSTAIN_TEXT["en"]) if abstained else generation.text,
            citations=citations, abstained=abstained, backend=chosen.name,
            model=(generation.model if generation and generation.model else self.embedder.name),
            language=language, timings_ms=timings, notes=notes,
        )

    def check_question(self, question: str) -> str:
        """The question stripped, or an InputError that says what to fix."""
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty; ask something about the articles")
        question = question.strip()
        if len(question) > self.settings.max_question_chars:
            raise InputError(f"the question has {len(question)} characters; the limit is "
                             f"{self.settings.max_question_chars} (RAG_MAX_QUESTION_CHARS)")
        return question


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
