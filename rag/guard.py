"""What the pipeline wraps around a backend: follow-up rewriting, citation checks and fallback.

- Before retrieval, a follow-up question is made standalone (``rag.rewrite``): by the request's
  chat model when the backend is generative and ``RAG_REWRITE=auto``, by the heuristic otherwise.
- After a generative backend answers, every sentence's citations are verified
  (``rag.citecheck``, ``RAG_CITATION_CHECK``). When streaming, sentences are verified as they
  complete, so the streamed text is the checked text.
- When a generative backend fails (``BackendError``: time-out, refused, HTTP error) or none of
  its sentences is supported, the ``RAG_FALLBACK_BACKEND`` (the reader) answers instead and
  the notes say why. If text had already been streamed, a ``Reset`` goes to the listener first.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from common.errors import BackendError
from rag.backends import Backend, Generation, Request
from rag.citecheck import CitationChecker, Verifier
from rag.prompt import is_abstention
from rag.rewrite import Rewrite, heuristic, last_question, rewrite


@dataclass(frozen=True)
class Reset:
    """Sent to a stream listener: discard the text so far, the answer starts again."""

    reason: str


class Guard:
    """Rewrites follow-ups, checks citations and falls back; one per pipeline."""

    def __init__(self, settings, embedder, backend_for: Callable[[str], Backend]):
        self.settings, self.backend_for = settings, backend_for
        self.verifier = Verifier(embedder, settings.citation_check)

    def standalone(self, question: str, history, backend: Backend) -> Rewrite:
        """``question`` made standalone from ``history`` as ``RAG_REWRITE`` says."""
        mode = self.settings.rewrite
        if mode == "off" or not history:
            return Rewrite(question)
        if mode == "heuristic" or not getattr(backend, "generative", False):
            previous = last_question(history)
            return heuristic(question, previous) if previous else Rewrite(question)
        return rewrite(question, history, getattr(backend, "chat", None))

    def generate(self, backend: Backend, request: Request) -> Generation:
        """The backend's answer, its citations checked; the fallback's when it fails."""
        if not getattr(backend, "generative", False):
            return backend.generate(request)
        listener = request.on_delta
        checker = (self.verifier.checker(request.hits, request.language, request.question)
                   if self._checking() else None)
        stream = _Stream(listener, checker)
        try:
            generation = backend.generate(dataclasses.replace(request, on_delta=stream.feed if listener else None))
        except BackendError as exc:
            return self._fallback(backend, request, str(exc), stream)
        if generation.abstained:
            return generation
        checked = stream.finish(generation.text)
        if checker is None:
            return generation
        if not checked.kept and not checked.flagged and not _only_abstention(checked.text):
            reason = f"no sentence of the {backend.name} answer was supported by the passages"
            return self._fallback(backend, request, reason, stream, checked.notes)
        return dataclasses.replace(generation, text=checked.text, highlights=checked.highlights,
                                   notes=[*generation.notes, *checked.notes, _summary(checked)])

    def _checking(self) -> bool:
        return self.settings.citation_check != "off"

    def _fallback(self, backend: Backend, request: Request, reason: str, stream: _Stream,
                  notes: list[str] = ()) -> Generation:
        """The fallback backend's answer, with a note that says why."""
        name = self.settings.fallback_backend
        if not name or name == backend.name:
            raise BackendError(f"{reason}; no fallback backend (RAG_FALLBACK_BACKEND) is set")
        how = "answered extractively" if name == "extractive" else f"answered with the {name} backend"
        note = f"{reason}; {how}"
        stream.reset(note)
        generation = self.backend_for(name).generate(dataclasses.replace(request, on_delta=None))
        stream.send(generation.text if not generation.abstained else "")
        return dataclasses.replace(generation, notes=[note, *notes, *generation.notes], fallback_from=backend.name)


class _Stream:
    """Passes a generative backend's streamed text on, sentence by sentence, once checked."""

    def __init__(self, listener, checker: CitationChecker | None):
        self.listener, self.checker, self.sent, self.fed = listener, checker, "", False

    def feed(self, piece: str) -> None:
        self.fed = True
        self.send(self.checker.feed(piece) if self.checker else piece)

    def finish(self, text: str):
        """The checked whole text (text of a backend that did not stream is fed now)."""
        if not self.fed:
            self.feed(text)
        if self.checker is None:
            return None
        before = len(self.checker.result.text)
        checked = self.checker.close()
        self.send(checked.text[before:])
        return checked

    def send(self, text: str) -> None:
        if text and self.listener:
            self.sent += text
            self.listener(text)

    def reset(self, reason: str) -> None:
        if self.sent and self.listener:
            self.listener(Reset(reason))
        self.sent = ""


def _only_abstention(text: str) -> bool:
    return bool(text.strip()) and is_abstention(text)


def _summary(checked) -> str:
    changed = len(checked.notes)
    return (f"citations checked: {checked.kept} sentence(s) supported, {checked.dropped} dropped, "
            f"{checked.flagged} flagged" + (f", {changed} change(s) noted" if changed else ""))
