"""The question-answering pipeline: retrieve, decide whether the articles say, generate, cite."""
from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from common.citations import cited_numbers, strip_marks
from common.errors import InputError
from common.injection import normalise
from common.text import content_terms, detect_language
from index.embedder import CachedEmbedder
from index.store import IndexData
from rag.backends import Backend, Generation, Request, get_backend
from rag.coverage import found_across_languages, missing_terms
from rag.guard import Guard, Reset
from rag.prompt import ABSTAIN_TEXT
from rag.retriever import Filters, Retrieval, RetrievalConfig, evidence, load_reranker
from rag.settings import Settings
from rag.types import Answer, AskRequest, Citation, Hit
from rag.when import TimeScope, time_scope, today, without_time_words


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
    notes: tuple[str, ...] = ()  # what was done before generation (a follow-up rewritten)
    vector: object = None  # the question's embedding
    asked: str = ""  # the question as asked, when a follow-up was rewritten into ``question``
    scope: TimeScope = TimeScope()  # the period and recency the question asks for


@dataclass(frozen=True)
class _State:
    data: IndexData
    retrieval: Retrieval


class Pipeline:
    """Answers questions from the loaded index; ``swap`` replaces the index atomically."""

    def __init__(self, settings: Settings, embedder, data: IndexData, lexical=None):
        self.settings, self.embedder = settings, embedder
        # Backends and the citation check embed passage sentences again and again: one bounded,
        # locked cache in front of the model serves them all.
        self.sentence_embedder = CachedEmbedder(embedder)
        self._state = self._make_state(data, lexical)
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self.guard = Guard(settings, self.sentence_embedder, self.backend)

    @property
    def data(self) -> IndexData:
        """The index currently answered from."""
        return self._state.data

    def swap(self, data: IndexData, lexical=None) -> None:
        """Answer from ``data`` from now on; a question in flight keeps the index it started with."""
        self._state = self._make_state(data, lexical)

    def _make_state(self, data: IndexData, lexical=None) -> _State:
        """Retrieval over ``data``; its BM25 index (``lexical``, or read from its folder) is loaded now
        unless the default mode is dense, so that no question waits for it."""
        config = RetrievalConfig.of(self.settings)
        reranker = load_reranker(config.rerank_model) if config.rerank_model else None
        retrieval = Retrieval(data, self.embedder, config, lexical, reranker)
        if config.mode != "dense":
            retrieval.lexical  # noqa: B018 (loads it)
        return _State(data, retrieval)

    def warm_up(self) -> None:
        """Run one question through the default backend so the first reader does not wait for the models'
        lazy start-up (the reader's, compiled once for OpenVINO) or the sentence cache (a server calls this
        once it has loaded)."""
        if len(self.data):
            self.ask(self.data.chunks[0].title or self.data.chunks[0].text[:200])

    def backend(self, name: str | None = None) -> Backend:
        """The named backend (default from settings), created once."""
        name = self.settings.backend if name is None else name  # "" is a name, and an unknown one
        with self._lock:
            if name not in self._backends:
                self._backends[name] = get_backend(name, self.settings, self.sentence_embedder)
            return self._backends[name]

    def search(self, question: str, top_k: int | None = None, mode: str | None = None, filters=None) -> list[Hit]:
        """The passages retrieval finds for ``question``, best first, with no answer made (what evals measure)."""
        retrieval = self._state.retrieval
        return retrieval.search(question, retrieval.embed(question), top_k or self.settings.top_k, mode, filters)

    def ask(self, request: AskRequest | str, **options) -> Answer:
        """Answer the question from the articles, or abstain when they don't say.

        ``request`` is an ``AskRequest``, or the question alone with its fields as keywords
        (``pipeline.ask("Qui ?", top_k=3, mode="dense")``).
        """
        turn = self._retrieve(_request(request, options))
        return self._finish(turn, self._generate(turn))

    def ask_stream(self, request: AskRequest | str, **options) -> Iterator[dict]:
        """Events of one answer: ``citations`` (the passages), ``delta`` (answer text pieces), ``done``.

        A streaming backend's pieces are passed on as they come (a generative backend's sentence by
        sentence, once their citations are checked); a non-streaming backend's answer is sent in pieces
        of a few words once it is ready. ``reset`` (rare) says to discard the text so far: a generative
        backend failed mid-answer and the fallback's answer follows. ``done`` carries the whole ``Answer``.
        """
        turn = self._retrieve(_request(request, options))
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
            if isinstance(piece, Reset):  # a generative backend failed mid-answer: start again
                yield {"event": "reset", "data": {"reason": piece.reason}}
                continue
            yield {"event": "delta", "data": {"text": piece}}
        if "error" in outcome:
            raise outcome["error"]
        answer = self._finish(turn, outcome["generation"])
        if not streamed:
            for piece in re.findall(r"\S+\s*", answer.answer):
                yield {"event": "delta", "data": {"text": piece}}
        yield {"event": "done", "data": answer.to_dict()}

    def _retrieve(self, request: AskRequest) -> _Turn:
        question, history = self.check_question(request.question), request.history
        asked = question
        state, chosen = self._state, self.backend(request.backend)
        started = time.perf_counter()
        standalone = self.guard.standalone(question, history, chosen)
        question, timings = standalone.question, ({"rewrite": _ms(started)} if history else {})
        mark = time.perf_counter()
        vector = state.retrieval.embed(question)
        timings["embed"] = _ms(mark)
        mark = time.perf_counter()
        scope = time_scope(question, today(self.settings.today))
        hits, note = self._search_in_time(state.retrieval, question, vector, request, scope)
        timings["search"] = _ms(mark)
        notes = tuple(n for n in (standalone.note, note) if n)
        return _Turn(question, detect_language(question, default="fr"), tuple(hits), chosen,
                     tuple(history or ()), timings, started, notes, vector,
                     asked=asked if asked != question else "", scope=scope)

    def _search_in_time(self, retrieval: Retrieval, question: str, vector, request: AskRequest,
                        scope: TimeScope) -> tuple[list[Hit], str]:
        """The passages, read in the time the question names. A period ("en 2024", "cette semaine") is
        preferred, not imposed: its articles are used when the best of them is about as relevant as the
        best of any date (``PERIOD_MARGIN``; a year can also be the date of the event asked about, as in
        "will it open in 2026?"); one that can only be of publication ("cette semaine", "since June") is used
        whenever its articles pass the abstention threshold. For the latest, passages close to the best are
        put newest first.
        Filters the request sets itself are never widened."""
        k, filters = request.top_k or self.settings.top_k, request.filters or Filters()
        own = bool(filters.date_from or filters.date_to)
        depth = k * LATEST_DEPTH if scope.latest and not scope.period else k
        hits = retrieval.search(question, vector, depth, request.mode, request.filters)
        note = ""
        if scope.period and not own:
            dated = retrieval.search(question, vector, k, request.mode,
                                     replace(filters, date_from=scope.date_from, date_to=scope.date_to))
            span = _span(scope)
            margin = float("inf") if scope.strict else PERIOD_MARGIN
            if dated and evidence(dated) >= max(self.settings.abstain_threshold, evidence(hits) - margin):
                hits, note = dated, f"the question names a period («{scope.words}»): passages of articles {span}"
            else:
                note = (f"the question names a period («{scope.words}»), but no article {span} answers as well "
                        "as articles of other dates: passages of any date")
        elif scope.latest:
            hits = newest_first_hits(hits)[:k]
            note = f"the question asks for the latest («{scope.words}»): the newest relevant passages first"
        return hits, note

    def _generate(self, turn: _Turn, on_delta=None) -> Generation | None:
        """The backend's answer, or None when the best evidence is below the abstention threshold."""
        mark = time.perf_counter()
        best = evidence(turn.hits)
        missing, across = self._missing_terms(turn)
        generation = None
        if missing:
            generation = Generation("", abstained=True, notes=[
                f"the retrieved passages never mention {', '.join(missing)}"])
        elif best >= self.gate(turn.backend):
            request = Request(turn.question, turn.hits, turn.language, turn.history, self.settings.answer_sentences,
                              on_delta, turn.vector, latest=turn.scope.latest or bool(turn.scope.period),
                              period=bool(turn.scope.period))
            generation = self._read_then_generate(turn.backend, request)
        turn.timings["generate"] = _ms(mark)
        if generation is not None and across:
            found = ", ".join(f"{name} as {word}" for name, word in across.items())
            generation = replace(generation, notes=[*generation.notes, f"names found in the other language: {found}"])
        return generation

    def gate(self, backend: Backend) -> float:
        """The evidence (best dense cosine) under which no backend is asked: ``abstain_threshold``, or lower
        for a backend that verifies its answers itself and says how low it reads (the reader's
        ``evidence_floor``, measured where its verifier was fitted)."""
        floor = getattr(backend, "evidence_floor", None)
        return self.settings.abstain_threshold if floor is None else min(self.settings.abstain_threshold, floor)

    def _missing_terms(self, turn: _Turn) -> tuple[list[str], dict[str, str]]:
        """The question's names and numbers that no passage holds, and the names found only under
        their name in another language (passages in another language than the question's)."""
        missing = without_time_words(turn.question, turn.scope, missing_terms(turn.question,
                                                                              [h.chunk.text for h in turn.hits]),
                                     [h.chunk.date for h in turn.hits])
        other = [h.chunk.text for h in turn.hits if h.chunk.language and h.chunk.language != turn.language]
        if not missing or not other:
            return missing, {}
        return found_across_languages(turn.question, missing, other, self.sentence_embedder.embed)

    def _read_then_generate(self, backend: Backend, request: Request) -> Generation:
        """The backend's answer. With ``RAG_READER_GATE`` and a generative backend, the reader reads
        first: when it finds no answer in any passage the question is never sent to the model (the
        answer abstains); when the model's checked answer does not contain what the reader found, the
        model answered something else than the question (an injected instruction obeyed, another fact)
        and the reader's answer is served instead, with a note."""
        if not self.settings.reader_gate or not getattr(backend, "generative", False):
            return self.guard.generate(backend, request)
        verdict = self.backend("reader").generate(replace(request, on_delta=None))
        if verdict.abstained:
            return Generation("", abstained=True, model=verdict.model, reading=verdict.reading, notes=[
                *verdict.notes, f"the reader found no answer in any passage; the question was not sent to "
                f"{backend.name}"])
        generation = self.guard.generate(backend, request)
        if generation.abstained or generation.fallback_from or answer_holds(generation.text, verdict.reading):
            return replace(generation, reading=verdict.reading)
        span, n = verdict.reading.get("text", ""), verdict.reading.get("n")
        note = (f"the {backend.name} answer does not contain the answer the reader found in passage [{n}] "
                f"(«{span}»); answered with the reader")
        if request.on_delta:
            request.on_delta(Reset(note))
            request.on_delta(verdict.text)
        return replace(verdict, notes=[note, *verdict.notes], fallback_from=backend.name, answered_by="reader")

    def _finish(self, turn: _Turn, generation: Generation | None) -> Answer:
        turn.timings["total"] = _ms(turn.started)
        abstained = generation is None or generation.abstained or not generation.text.strip()
        highlights = generation.highlights if generation and not abstained else {}
        cited = set() if abstained else set(cited_numbers(generation.text))
        citations = [Citation.of(n, hit, tuple(highlights.get(n, ())), n in cited)
                     for n, hit in enumerate(turn.hits, 1)]
        best = evidence(turn.hits)
        notes = list(turn.notes) + (list(generation.notes) if generation else [
            f"best passage cosine {best:.3f} is below the abstention threshold {self.gate(turn.backend)}"])
        fallback_from = generation.fallback_from if generation else ""
        return Answer(
            question=turn.question, asked=turn.asked,
            answer=ABSTAIN_TEXT.get(turn.language, ABSTAIN_TEXT["en"]) if abstained else generation.text,
            citations=citations, abstained=abstained,
            backend=_answered_by(generation, turn.backend.name, self.settings.fallback_backend),
            model=(generation.model if generation and generation.model else self.embedder.name),
            language=turn.language, timings_ms=dict(turn.timings), notes=notes, fallback_from=fallback_from,
            evidence=round(best, 4) if best > float("-inf") else None,
            reading=dict(generation.reading) if generation else {},
        )

    def check_question(self, question: str) -> str:
        """The question stripped, or an InputError that says what to fix."""
        if not isinstance(question, str):
            raise InputError("the question must be text; ask something about the articles")
        # What a model would read: lookalikes folded, invisible characters and control bytes (NUL…) dropped.
        question = _CONTROL.sub("", normalise(question)).strip()
        if not question:
            raise InputError("the question is empty (or only invisible characters); ask something about the articles")
        if len(question) > self.settings.max_question_chars:
            raise InputError(f"the question has {len(question)} characters; the limit is "
                             f"{self.settings.max_question_chars} (RAG_MAX_QUESTION_CHARS)")
        return question


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def answer_holds(text: str, reading: dict, share: float = 0.5) -> bool:
    """True when ``text`` states the reader's span: at least ``share`` of the span's content words
    (all of them for a span of one or two) appear in it, compared as accent-folded stems."""
    span = content_terms(reading.get("text", ""))
    if not span:
        return True  # nothing to compare (a span of stop words only)
    found = len(span & content_terms(strip_marks(text)))
    return found >= (len(span) if len(span) <= 2 else share * len(span))


PERIOD_MARGIN = 0.05  # a named period's best passage may be this much less similar (cosine) than any date's best
LATEST_DEPTH = 3  # "the latest": this many times the passages are searched, so newer ones are among them
LATEST_MARGIN = 0.05  # ... and those within this cosine of the best come first, newest first


def newest_first_hits(hits: list[Hit]) -> list[Hit]:
    """Passages whose dense cosine is within ``LATEST_MARGIN`` of the best, newest article first (equal
    dates by relevance); then the others in their order."""
    if not hits:
        return hits
    best = evidence(hits)
    close = [h for h in hits if h.scores.get("dense", h.score) >= best - LATEST_MARGIN]
    rest = [h for h in hits if h.scores.get("dense", h.score) < best - LATEST_MARGIN]
    return sorted(close, key=lambda h: h.chunk.date or "", reverse=True) + rest


def _span(scope: TimeScope) -> str:
    if scope.date_from and scope.date_to:
        return f"published from {scope.date_from} to {scope.date_to}"
    return f"published since {scope.date_from}" if scope.date_from else f"published until {scope.date_to}"


def _answered_by(generation: Generation | None, asked: str, fallback: str) -> str:
    if generation is None or not generation.fallback_from:
        return asked
    return generation.answered_by or fallback


def _request(request: AskRequest | str, options: dict) -> AskRequest:
    """The request ``ask`` was given, or one made from a question and keyword fields."""
    if isinstance(request, AskRequest):
        if options:
            raise TypeError("give an AskRequest or keyword options, not both")
        return request
    history = options.pop("history", None) or ()
    return AskRequest(request, history=tuple(history), **options)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
