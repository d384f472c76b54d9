"""Deterministic verification of a generated answer's citations against the cited passages.

The answer is cut into sentences (citation marks after a sentence's full stop belong to that
sentence). For each sentence and each passage it cites, support is decided by rules, not by a model:

- every number of the sentence must appear in the passage, and every name (a capitalised word
  that does not start the sentence; acronyms of up to three letters such as IA/AI are exempt);
- and either ``LEXICAL_MIN`` of the sentence's other content words appear in the passage (matched
  by accent-folded form or French/English stem), or the sentence's embedding is within
  ``COSINE_MIN`` of one of the passage's sentences, with at least ``COSINE_LEXICAL_MIN`` of its
  words found when sentence and passage share a language (across languages words rarely match).

Citations to passages that don't exist are removed. A cited passage that does not support the
sentence loses its citation; when no cited passage supports it but another does, the citation
is moved there; when none does, the sentence is dropped (``mode="drop"``) or kept and reported
(``mode="flag"``). Sentences that say the articles don't say need no citation. Every change is
described in ``Checked.notes``. Embeddings are computed only when the words alone don't decide.

Given the question, a supported sentence must also be about it: it or the passage sentence it rests
on shares a content word with the question, or that passage sentence is within
``QUESTION_COSINE_MIN`` of the question by embedding; otherwise it is dropped like an unsupported one.
Sentences of the passage that instruct a model (``common.injection``) are blanked first, so an
answer that obeys an injected article ("PWNED") finds none of its words and is dropped.

Limits: this catches new numbers, new names, unrelated content and wrong passage numbers; it
cannot tell a negation or a swapped subject from the passage's own statement. The embedding
path is deliberately strict: with multilingual-e5-small, English fabrications about a French
passage scored up to 0.904 and faithful translations 0.903–0.932, so ``COSINE_MIN`` favours
dropping a true sentence over keeping a false one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from common.citations import MODEL_MARK, MODEL_MARKS_AFTER_STOP, format_marks, model_mark_numbers, strip_attribution
from common.injection import blank_instructions
from common.sentences import sentence_spans, split_sentences
from common.text import NAME, NUMBER, WORD, content_terms, detect_language, fold
from rag.prompt import is_abstention
from rag.types import Hit

LEXICAL_MIN = 0.5
QUESTION_COSINE_MIN = 0.80  # question (query) vs the passage sentence an answer rests on, when no word is shared
COSINE_MIN = 0.92
COSINE_LEXICAL_MIN = 0.34
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")


@dataclass(frozen=True)
class Support:
    """How passage ``n`` supports a sentence, and the span of its closest sentence."""

    n: int
    ok: bool
    lexical: float
    cosine: float | None
    missing: tuple[str, ...]
    span: tuple[int, int] | None


@dataclass
class Checked:
    """The verified answer text, the passage spans it rests on, and what was changed."""

    text: str
    highlights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kept: int = 0
    dropped: int = 0
    flagged: int = 0


class Verifier:
    """Checks answers against passages; thread-safe (it holds no state of its own)."""

    def __init__(self, embedder, mode: str = "drop"):
        self.embedder, self.mode = embedder, mode

    def checker(self, hits: tuple[Hit, ...], language: str = "", question: str = "") -> CitationChecker:
        """A checker for one answer over these numbered passages (to ``question``, when given)."""
        return CitationChecker(self, hits, language, question)

    def vectors(self, sentences: list[str]) -> np.ndarray:
        """Passage-kind embeddings of ``sentences`` (the pipeline hands in its ``CachedEmbedder``)."""
        return self.embedder.embed(sentences, kind="passage")


@dataclass
class _Passage:
    """What support checks need of a passage, computed once per answer."""

    text: str
    language: str
    words: set[str]
    stems: set[str]
    numbers: set[str]
    spans: list[tuple[int, int]]
    vectors: np.ndarray | None = None


class CitationChecker:
    """Verifies one answer, whole (``check``) or streamed (``feed`` pieces, then ``close``)."""

    def __init__(self, verifier: Verifier, hits: tuple[Hit, ...], language: str = "", question: str = ""):
        self.verifier, self.hits, self.language, self.question = verifier, hits, language, question
        self._question_terms = _terms(question) if question else set()
        self._question_vector = None
        self.result = Checked("")
        self._raw, self._done, self._passages = "", 0, {}

    def check(self, text: str) -> Checked:
        """The verified form of a whole answer."""
        self.feed(text)
        return self.close()

    def feed(self, piece: str) -> str:
        """Take a piece of a streamed answer; return the verified text of the sentences it completed."""
        self._raw += piece
        units = self._units()
        return self._emit(units[self._done:-1] if len(units) > 1 else [])

    def close(self) -> Checked:
        """Verify what is left of the answer and return the result."""
        self._emit(self._units()[self._done:])
        return self.result

    def _units(self) -> list[tuple[str, str]]:
        """The answer's sentences so far, each with the separator that precedes it."""
        text = MODEL_MARKS_AFTER_STOP.sub(lambda m: m.group(2) + m.group(1), self._raw)
        spans = split_sentences(text)
        return [(text[prev[1]:a] if prev else "", text[a:b]) for prev, (a, b) in zip([None] + spans, spans)]

    def _emit(self, units: list[tuple[str, str]]) -> str:
        out = ""
        for separator, raw in units:
            self._done += 1
            sentence = self._check_sentence(self._done, raw)
            if sentence:
                joiner = ("\n" if "\n" in separator else " ") if self.result.text or out else ""
                out += joiner + sentence
        self.result.text += out
        return out

    def _check_sentence(self, k: int, raw: str) -> str | None:
        """The sentence with verified citations, or None when it is dropped."""
        cited = [n for m in MODEL_MARK.finditer(raw) for n in model_mark_numbers(m.group(1))]
        body = re.sub(r"\s+([.,;:!?…])", r"\1", MODEL_MARK.sub("", raw)).strip()
        claim = strip_attribution(body) or body  # "Selon l'article du 24 juin 2025, …": the claim is what follows
        if not WORD.search(body) or re.fullmatch(r"\d{1,2}[.)]", body):  # bare marks or a list number
            return None
        if is_abstention(body):
            return body
        notes = self.result.notes
        unknown = sorted({n for n in cited if not 1 <= n <= len(self.hits)})
        if unknown:
            notes.append(f"sentence {k}: removed citation {format_marks(unknown)}: there is no such passage "
                         f"(the answer had {len(self.hits)})")
        valid = list(dict.fromkeys(n for n in cited if 1 <= n <= len(self.hits)))
        supports = [self.support(claim, n) for n in valid]
        kept = [s for s in supports if s.ok]
        for s in supports:
            if not s.ok and kept:
                notes.append(f"sentence {k}: removed citation [{s.n}]: that passage does not support it")
        if not kept:
            kept = self._elsewhere(k, claim, valid)
        if not kept:
            return self._reject(k, body, valid, "is not supported by the passages", "no passage supports it")
        if self.question and not self._answers(body, kept):
            return self._reject(k, body, [s.n for s in kept], "does not answer the question",
                                "it does not answer the question")
        self.result.kept += 1
        for s in kept:
            spans = self.result.highlights.setdefault(s.n, [])
            if s.span and s.span not in spans:
                spans.append(s.span)
        return f"{body} {format_marks([s.n for s in kept])}"

    def _elsewhere(self, k: int, body: str, cited: list[int]) -> list[Support]:
        """The best supporting passage the sentence did not cite, as its new citation."""
        others = [self.support(body, n) for n in range(1, len(self.hits) + 1) if n not in cited]
        others = sorted((s for s in others if s.ok), key=lambda s: (-s.lexical, -(s.cosine or 0), s.n))
        if not others:
            return []
        what = f"cited {format_marks(cited)} but is supported by" if cited else "had no citation; cited"
        self.result.notes.append(f"sentence {k} {what} [{others[0].n}]; citation corrected")
        return others[:1]

    def _answers(self, body: str, kept: list[Support]) -> bool:
        """The sentence is about the question: it, or the passage sentence it rests on, shares a content
        word with the question (either language's stems), or that passage sentence is close to the
        question by embedding. Catches a supported sentence that answers something else, such as an
        obeyed injection whose word happens to be in the article."""
        spans = [self._passage(s.n).text[a:b] for s in kept if s.span for a, b in [s.span]]
        if self._question_terms & set().union(_terms(body), *map(_terms, spans)):
            return True
        if not spans:
            return False
        if self._question_vector is None:
            self._question_vector = self.verifier.embedder.embed([self.question], kind="query")[0]
        return float(np.max(self.verifier.vectors(spans) @ self._question_vector)) >= QUESTION_COSINE_MIN

    def _reject(self, k: int, body: str, marks: list[int], flagged: str, dropped: str) -> str | None:
        """A sentence that fails a check: kept with its marks and reported (``flag``), or dropped."""
        short = body if len(body) <= 80 else body[:77] + "…"
        if self.verifier.mode == "flag":
            self.result.flagged += 1
            self.result.notes.append(f"sentence {k} {flagged} (flagged): {short!r}")
            return f"{body} {format_marks(marks)}".strip()
        self.result.dropped += 1
        self.result.notes.append(f"sentence {k} was dropped: {dropped}: {short!r}")
        return None

    def support(self, sentence: str, n: int) -> Support:
        """Whether passage ``n`` supports ``sentence``, by numbers, names, words and embeddings."""
        p, sentence = self._passage(n), _LIST_MARKER.sub("", sentence)
        language = detect_language(sentence, self.language or p.language)
        missing = tuple([x for x in _numbers(sentence) if x not in p.numbers]
                        + [x for x in _names(sentence) if fold(x) not in p.words])
        names = {fold(x) for x in _names(sentence)}
        words = [w for w in WORD.findall(_plain(sentence))
                 if fold(w) not in names and not w.isdigit() and content_terms(w, language)]
        found = [w for w in words if _found(w, language, p)]
        lexical = len(found) / len(words) if words else 1.0
        span = _best_span(p, found)
        if missing:
            return Support(n, False, lexical, None, missing, span)
        if lexical >= LEXICAL_MIN:
            return Support(n, True, lexical, None, (), span)
        cosine, best = self._cosine(sentence, p)
        ok = cosine >= COSINE_MIN and (lexical >= COSINE_LEXICAL_MIN or language != p.language)
        return Support(n, ok, lexical, cosine, (), span or best)

    def _cosine(self, sentence: str, p: _Passage) -> tuple[float, tuple[int, int] | None]:
        if not p.spans:
            return 0.0, None
        if p.vectors is None:
            p.vectors = self.verifier.vectors([p.text[a:b] for a, b in p.spans])
        scores = p.vectors @ self.verifier.vectors([sentence])[0]
        i = int(np.argmax(scores))
        return float(scores[i]), p.spans[i]

    def _passage(self, n: int) -> _Passage:
        if n not in self._passages:
            chunk = self.hits[n - 1].chunk
            # An instruction to the model in the article supports nothing (an obeyed injection finds no words).
            text, language = blank_instructions(chunk.text), chunk.language or detect_language(chunk.text, "fr")
            words = {fold(w) for w in WORD.findall(_plain(text))}
            stems = content_terms(text, language) | content_terms(text, "en" if language == "fr" else "fr")
            self._passages[n] = _Passage(text, language, words, stems, set(_numbers(text)), sentence_spans(text))
        return self._passages[n]


def _terms(text: str) -> set[str]:
    return content_terms(text, "fr") | content_terms(text, "en")


def _plain(text: str) -> str:
    return text.replace("’", " ").replace("'", " ")


def _found(word: str, language: str, p: _Passage) -> bool:
    """A content word of the sentence appears in the passage (folded, or by either language's stem)."""
    terms = content_terms(word, language)
    return fold(word) in p.words or bool(terms & p.stems) or bool(content_terms(word, p.language) & p.stems)


def _best_span(p: _Passage, found: list[str]) -> tuple[int, int] | None:
    """The passage sentence holding most of the sentence's words."""
    if not p.spans or not found:
        return None
    wanted = {fold(w) for w in found}
    scores = [len(wanted & {fold(w) for w in WORD.findall(_plain(p.text[a:b]))}) for a, b in p.spans]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return p.spans[best] if scores[best] else None


def _numbers(text: str) -> list[str]:
    return [m.replace(",", ".") for m in NUMBER.findall(text)]


def _names(sentence: str) -> list[str]:
    """Capitalised words after the first word, except short acronyms (IA, AI, UE, US)."""
    out, first = [], WORD.search(sentence)
    for m in NAME.finditer(sentence):
        word = m.group().strip("’'-")
        if (first and m.start() <= first.start()) or (word.isupper() and len(word) <= 3):
            continue
        out.extend(w for w in re.split(r"[’'-]", word) if w[:1].isupper())
    return out


