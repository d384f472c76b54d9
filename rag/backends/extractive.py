"""The default backend: picks the passage sentences that answer best, each cited [n].

Needs no model beyond the embedder. Each sentence of the retrieved passages is scored by
the cosine between its embedding and the question's, plus a bonus for the question's content
words it contains (stemmed, accents folded). The best sentence leads; others follow when they
score close to it and say something new. Where the question's language differs from the
passages', sentences in the question's language are preferred when they score about as well.
A question asking for an amount or a date is answered only by sentences that state one; when
none does, the backend abstains (the near-miss "how much did Google invest?" retrieves the
sentence about Microsoft's investment, which has a number, but the pipeline's name check
catches that one).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from common.sentences import sentence_spans
from common.text import content_terms, detect_language
from rag.backends import Generation, Request, readable, register
from rag.coverage import has_date, has_number, wants_amount, wants_date, wants_measure
from rag.when import according_to

LEXICAL_WEIGHT = 0.15  # weight of the share of question terms a sentence contains
FOLLOW_MARGIN = 0.02  # a further sentence must score within this of the best one
REDUNDANT = 0.93  # cosine above which two sentences say the same thing
LANGUAGE_MARGIN = 0.05
LATEST_MARGIN = 0.1  # "the latest" (or a period): a newer article's sentence leads within this of the best
RECENT_MARGIN = 0.0  # any other question: the same, within this
TYPE_MARGIN = 0.05  # a sentence of the asked type (amount, date) must score within this of the best


@dataclass(frozen=True)
class Candidate:
    """A sentence of passage ``n``: its span in the passage text, language and score."""

    n: int
    start: int
    end: int
    text: str
    language: str
    score: float
    vector: np.ndarray
    article: str = ""  # the article of passage ``n``
    lead: bool = False  # chosen to lead whatever its score (the newest of the relevant ones)


class ExtractiveBackend:
    """Answers with sentences taken verbatim from the passages."""

    name = "extractive"

    def __init__(self, embedder, max_sentences: int = 3):
        self.embedder, self.max_sentences = embedder, max_sentences

    def generate(self, request: Request) -> Generation:
        """The best sentences, in the order of their scores, each followed by its [n]."""
        candidates = self.candidates(request)
        if not candidates:
            return Generation("", abstained=True, model=self.embedder.name, notes=["no sentence in the passages"])
        margin = LATEST_MARGIN if request.latest else RECENT_MARGIN
        candidates, note = answer_type_filter(request.question, candidates, max(TYPE_MARGIN, margin))
        if not candidates:
            return Generation("", abstained=True, model=self.embedder.name, notes=[note])
        dates = {n: hit.chunk.date for n, hit in enumerate(request.hits, 1)}
        candidates = newest_leads(candidates, dates, margin)
        chosen = newest_first(self.select(candidates, request.language, request.max_sentences or self.max_sentences),
                              dates)
        highlights: dict[int, list[tuple[int, int]]] = {}
        for c in chosen:
            highlights.setdefault(c.n, []).append((c.start, c.end))
        return Generation(dated(chosen, dates, request.language or "fr"), highlights=highlights,
                          model=self.embedder.name)

    def candidates(self, request: Request) -> list[Candidate]:
        """Every sentence of the passages with its score, best first."""
        items = []
        for n, hit in enumerate(request.hits, 1):
            text = readable(hit.chunk.text)  # never quote an instruction to a model
            for a, b in sentence_spans(text):
                items.append((n, a, b, text[a:b], hit.chunk.language or detect_language(text[a:b], "fr"),
                              hit.chunk.article_id))
        if not items:
            return []
        question = request.query_vector
        if question is None:
            question = self.embedder.embed([request.question], kind="query")[0]
        vectors = self.embedder.embed([i[3] for i in items], kind="passage")  # the pipeline's CachedEmbedder
        q_terms = content_terms(request.question, request.language or "fr")
        out = []
        for (n, a, b, sentence, lang, article), vector in zip(items, vectors):
            overlap = len(q_terms & content_terms(sentence, lang)) / len(q_terms) if q_terms else 0.0
            score = float(vector @ question) + LEXICAL_WEIGHT * overlap
            out.append(Candidate(n, a, b, sentence, lang, score, vector, article))
        return sorted(out, key=lambda c: -c.score)

    def select(self, candidates: list[Candidate], language: str, limit: int) -> list[Candidate]:
        """The leading sentence and close runners-up that are not redundant with it.

        A sentence in the question's language may lead instead of the best one only when it is from the
        same article and about as relevant (a bilingual article); never from another article, where
        preferring the language would trade relevance for it."""
        best = candidates[0].score
        if candidates[0].lead:  # the newest relevant sentence leads (a question asking for the latest)
            lead = candidates[0]
            rest = [c for c in candidates[1:] if float(c.vector @ lead.vector) < REDUNDANT]
            return [lead, *(self.select(rest, language, limit - 1) if rest and limit > 1 else [])]
        if language and candidates[0].language != language:
            same = [c for c in candidates if c.language == language and c.score >= best - LANGUAGE_MARGIN
                    and c.article == candidates[0].article]
            candidates = same or candidates
            best = candidates[0].score
        chosen: list[Candidate] = []
        for c in candidates:
            if len(chosen) == limit or c.score < best - FOLLOW_MARGIN:
                break
            if all(float(c.vector @ k.vector) < REDUNDANT for k in chosen):
                chosen.append(c)
        return chosen


def newest_leads(candidates: list[Candidate], dates: dict[int, str], margin: float = LATEST_MARGIN) -> list[Candidate]:
    """A sentence of the newest article among those scoring within ``margin`` of the best sentence leads, when
    that best one is older: an older article's sentence may score higher for being closer to the question's
    words, not for being current. Of the newest article's sentences in the margin, the one that leads is the
    most relevant plus the most like the best sentence (the same fact, told later: "the ticket now costs
    2.30" after "the ticket will go up to 2.30"); the older best one follows, as earlier."""
    if not candidates or margin <= 0:
        return candidates
    best = candidates[0]
    pool = [c for c in candidates if c.score >= best.score - margin and dates.get(c.n)]
    newest = max((dates[c.n] for c in pool), default="")
    if not newest or dates.get(best.n) == newest:
        return candidates
    lead = max((c for c in pool if dates[c.n] == newest), key=lambda c: c.score + float(c.vector @ best.vector))
    return [replace(lead, lead=True), *(c for c in candidates if c is not lead)]


def newest_first(chosen: list[Candidate], dates: dict[int, str]) -> list[Candidate]:
    """The chosen sentences grouped by article, the newest article first (two articles that disagree over
    time: the newer leads), each article's sentences in their order of relevance; undated articles last."""
    if len({c.article for c in chosen}) < 2:
        return chosen
    if chosen[0].lead:
        return [chosen[0], *newest_first(chosen[1:], dates)]
    first_date: dict[str, str] = {}
    for c in chosen:
        first_date.setdefault(c.article, dates.get(c.n) or "")
    articles = sorted(first_date, key=first_date.get, reverse=True)  # stable: equal dates keep their order
    return [c for article in articles for c in chosen if c.article == article]


def dated(chosen: list[Candidate], dates: dict[int, str], language: str) -> str:
    """The answer text: each sentence cited [n], the first one from each article introduced by that article's
    date ("Selon l'article du 24 juin 2025 :"), an older one after a newer as earlier."""
    parts, previous, first = [], None, dates.get(chosen[0].n, "") if chosen else ""
    for c in chosen:
        date = dates.get(c.n, "")
        lead = according_to(date, language, earlier=bool(first and date and date < first)) \
            if c.article != previous else ""
        parts.append(f"{lead} {c.text} [{c.n}]" if lead else f"{c.text} [{c.n}]")
        previous = c.article
    return " ".join(parts)


def answer_type_filter(question: str, candidates: list[Candidate],
                       margin: float = TYPE_MARGIN) -> tuple[list[Candidate], str]:
    """Only sentences of the kind the question asks for: a number for "how much", a date for "when", a number
    with its unit for a measure ("quelle température", "what does it cost": degrees, a currency).

    The typed sentence must also be about as relevant as the best sentence overall: a number in a
    sentence on another subject does not answer "how much".
    """
    measure = wants_measure(question)
    if measure is not None:
        kind, units = measure
        test = lambda sentence: bool(units.search(sentence))  # noqa: E731  ("cinq ans": units, no digit)
    elif wants_amount(question):
        kind, test = "an amount", has_number
    elif wants_date(question):
        kind, test = "a date", has_date
    else:
        return candidates, ""
    typed = [c for c in candidates if test(c.text) and c.score >= candidates[0].score - margin]
    return typed, f"the question asks for {kind}; no relevant passage sentence states one"


@register("extractive")
def _factory(settings, embedder) -> ExtractiveBackend:
    return ExtractiveBackend(embedder, settings.answer_sentences)
