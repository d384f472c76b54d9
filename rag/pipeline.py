"""The question-answering pipeline: retrieve, decide whether the articles say, generate, cite."""
from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from index.errors import InputError
from index.lang import detect_language
from index.store import IndexData
from rag.backends import Backend, Generation, Request, get_backend
from rag.retriever import DenseRetriever, Filters
from rag.settings import Settings
from rag.types import Answer, Citation, Hit

ABSTAIN_TEXT = {
    "fr": "Les articles ne le disent pas.",
    "en": "The articles don't say.",
}


@dataclass(frozen=True)
class _Turn:
    """One question on its way through the pipeline."""

    question: str
    language: str
    hits: tuple[Hit, ...]
    backend: Backend
    history: tuple[dict, ...]
    timings: dict
    started: float


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
        turn = self._retrieve(question, top_k, backend, filters, history)
        return self._finish(turn, self._generate(turn))

    def ask_stream(self, question: str, top_k: int | None = None, backend: str | None = None,
                   filters: Filters | None = None, history: list[dict] | None = None) -> Iterator[dict]:
        """Events of one answer: ``citations`` (the passages), ``delta`` (answer text pieces), ``done``.

        A streaming backend's pieces are passed on as they come; a non-streaming backend's answer
        is sent in pieces of a few words once it is ready. ``done`` carries the whole ``Answer``.
        """
        turn = self._retrieve(question, top_k, backend, filters, history)
        yield {"event": "citations", "data": [Citation.of(n, h).__dict__ for n, h in enumerate(turn.hits, 1)]}
        pieces: queue.Queue = queue.Queue()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["generation"] = self._generate(turn, on_delta=pieces.put)
            except BaseException as exc:  # handed to the consumer, raised there
                outcome["error"] = exc
            pieces.put(None)

        threading.Thread(target=work, daemon=True).start()
        streamed = False
        for piece in iter(pieces.get, None):
            streamed = True
            yield {"event": "delta", "data": {"text": piece}}
        if "error" in outcome:
            raise outcome["error"]
        answer = self._finish(turn, outcome["generation"])
        if not streamed:
            for piece in re.findall(r"\S+\s*", answer.answer):
                yield {"event": "delta", "data": {"text": piece}}
        yield {"event": "done", "data": answer.to_dict()}

    def _retrieve(self, question, top_k, backend, filters, history) -> "_Turn":
        question = self.check_question(question)
        state, chosen = self._state, self.backend(backend)
        started = time.perf_counter()
        vector = state.retriever.embed_query(question)
        timings = {"embed": _ms(started)}
        mark = time.perf_counter()
        hits = state.retriever.search(vector, top_k or self.settings.top_k, filters)
        timings["search"] = _ms(mark)
        return _Turn(question, detect_language(question, default="fr"), tuple(hits), chosen,
                     tuple(history or ()), timings, started)

    def _generate(self, turn: "_Turn", on_delta=None) -> Generation | None:
        """The backend's answer, or None when the best evidence is below the abstention threshold."""
        mark = time.perf_counter()
        best = turn.hits[0].score if turn.hits else float("-inf")
        generation = None
        if best >= self.settings.abstain_threshold:
            generation = turn.backend.generate(Request(turn.question, turn.hits, turn.language, turn.history,
                                                       self.settings.answer_sentences, on_delta))
        turn.timings["generate"] = _ms(mark)
        return generation

    def _finish(self, turn: "_Turn", generation: Generation | None) -> Answer:
        turn.timings["total"] = _ms(turn.started)
        abstained = generation is None or generation.abstained or not generation.text.strip()
        highlights = generation.highlights if generation and not abstained else {}
        citations = [Citation.of(n, hit, tuple(highlights.get(n, ()))) for n, hit in enumerate(turn.hits, 1)]
        best = turn.hits[0].score if turn.hits else float("-inf")
        notes = list(generation.notes) if generation else [
            f"best passage score {best:.3f} is below the abstention threshold {self.settings.abstain_threshold}"]
        return Answer(
            question=turn.question,
            answer=ABSTAIN_TEXT.get(turn.language, ABSTAIN_TEXT["en"]) if abstained else generation.text,
            citations=citations, abstained=abstained, backend=turn.backend.name,
            model=(generation.model if generation and generation.model else self.embedder.name),
            language=turn.language, timings_ms=dict(turn.timings), notes=notes,
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
