"""The reader's training data, made from a SQuAD-format file (PIAF v1.0) and nothing else.

Articles are split once, by a hash of their title, into a training part and a held-out part
(``HELD_OUT_SHARE``); the held-out articles and their questions are never trained on, and
``rag eval reader`` measures on them. Each training question gives:
- one answerable example: the window of its paragraph that holds the answer;
- near misses: the windows of its own article that do not hold the answer but share most of
  the question's words (the article is on the subject; the fact asked is elsewhere or absent);
- other-article negatives: the windows of other articles that share most of its words, as
  `rag eval calibrate` asks a question with its own article removed;
- with ``FACT_REMOVED``, a fact-removed negative: its own paragraph with the sentence holding the answer cut out,
  read at the place where that sentence was. The subject, the names and the neighbouring
  facts are all there; only the fact asked is not (the reader's hardest case in service: "the
  article mentions the EAST reactor's record, but not its temperature").
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from common.sentences import split_sentences
from common.text import content_terms
from index.squad import read_squad
from rag.reader.inputs import windows

HELD_OUT_SHARE = 5  # one article in five is held out
VERIFIER_SHARE = 10  # of the rest, one in ten trains the answerability verifier, not the reader
PARTS = ("reader", "verifier", "held-out")
NEAR_MISSES = 1
OTHER_ARTICLE = 1
# Off: measured with it (run 6, top 6 layers, 6 epochs), held-out PIAF end to end fell from AUC 0.870
# to 0.843 and from 41.0% to 38.5% of unanswerable questions abstained at 95% answered (README).
FACT_REMOVED = False


@dataclass(frozen=True)
class Example:
    """A question, a window's text and the answer's character span in it (None: no answer here)."""

    question: str
    window: str
    answer: tuple[int, int] | None
    kind: str  # "answer", "near-miss", "other-article" or "fact-removed"
    article: str


@dataclass(frozen=True)
class Question:
    """A SQuAD question with its article, paragraph and answer."""

    id: str
    question: str
    answer: str
    answer_start: int
    context: str
    article: str


def is_held_out(title: str) -> bool:
    """The fixed split: an article is held out when its title's hash falls in the held-out share."""
    return part_of(title) == "held-out"


def part_of(title: str) -> str:
    """The article's part: "held-out" (never trained on), "verifier" (trains the answerability
    verifier, so that it learns from readings of questions the reader never saw) or "reader"."""
    digest = int(hashlib.sha256(title.encode("utf-8")).hexdigest(), 16)
    if digest % HELD_OUT_SHARE == 0:
        return "held-out"
    return "verifier" if digest % VERIFIER_SHARE == 1 else "reader"


def read_questions(path: Path, part: str) -> list[Question]:
    """The questions of one part of the articles (``PARTS``)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    out = []
    for article in read_squad(path):
        if part_of(article.title) != part:
            continue
        for paragraph in article.paragraphs:
            out += [Question(qa.id, qa.question, qa.answer, qa.answer_start, paragraph.context, article.title)
                    for qa in paragraph.questions if qa.answer_start >= 0 and qa.answer]
    return out


def make_examples(questions: list[Question], seed: int, near_misses: int = NEAR_MISSES) -> list[Example]:
    """Answerable examples, ``near_misses`` near misses per question and other-article negatives, in a
    seeded random order. The held-out windows are always made with the default."""
    pool = _window_pool(questions)
    out: list[Example] = []
    for q in questions:
        positive = _answer_window(q)
        if positive is None:
            continue  # the answer crosses a window boundary (rare); the question gives no example
        out.append(positive)
        terms = content_terms(q.question)
        ranked = sorted(pool, key=lambda w: -len(terms & w[2]))
        near = [w for w in ranked if w[0] == q.article and q.answer not in w[1]][:near_misses]
        other = [w for w in ranked if w[0] != q.article][:OTHER_ARTICLE]
        out += [Example(q.question, w[1], None, "near-miss", q.article) for w in near]
        out += [Example(q.question, w[1], None, "other-article", q.article) for w in other]
        removed = _fact_removed(q) if FACT_REMOVED else None
        if removed is not None:
            out.append(removed)
    random.Random(seed).shuffle(out)
    return out


def _answer_window(q: Question) -> Example | None:
    end = q.answer_start + len(q.answer)
    for a, b in windows(q.context):
        if a <= q.answer_start and end <= b:
            return Example(q.question, q.context[a:b], (q.answer_start - a, end - a), "answer", q.article)
    return None


def _fact_removed(q: Question) -> Example | None:
    """The window of the paragraph, without the sentences holding the answer, at their place; None
    when nothing is left there or the answer's words still appear in what is left."""
    end = q.answer_start + len(q.answer)
    cut = [(a, b) for a, b in split_sentences(q.context) if a < end and b > q.answer_start]
    if not cut:
        return None
    at = cut[0][0]
    rest = q.context[:at] + q.context[cut[-1][1]:]
    spans = windows(rest)
    if not spans:
        return None
    a, b = next(((a, b) for a, b in spans if b >= at), spans[-1])
    text = rest[a:b]
    if q.answer.casefold() in text.casefold():
        return None
    return Example(q.question, text, None, "fact-removed", q.article)


def _window_pool(questions: list[Question]) -> list[tuple[str, str, frozenset]]:
    """Every window of every paragraph the questions come from: (article, text, content terms)."""
    seen, pool = set(), []
    for q in questions:
        if q.context in seen:
            continue
        seen.add(q.context)
        for a, b in windows(q.context):
            text = q.context[a:b]
            pool.append((q.article, text, frozenset(content_terms(text))))
    return pool

