"""Answer-quality metrics, all deterministic: string metrics, evidence look-up, support tests.

Answers are compared after a French-aware normalisation (``normalize_answer``): citation marks,
case, accents, articles and punctuation are dropped, and numbers are written out, so
"13 milliards", "13 000 000 000" and "13 billion" all become ``13000000000``.

Support test (citation precision and groundedness), the ``SupportTest`` class: a claim is
supported by a passage when it appears in it verbatim (case, accents and spacing aside); or, in
the same language, when at least ``min_overlap`` of its content words (stemmed, stop words out)
are in the passage and its embedding cosine with the passage's closest sentence is at least
``min_cosine``; or, when the claim is in another language than the passage (an English answer
from a French article: few shared words), when that cosine is at least ``cross_cosine``.
Cosine alone is not enough in one language: with multilingual-e5-small, sentences of one
article on one topic reach 0.85-0.95 with each other without saying the same thing.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

from common.citations import MARK, MARK_RUN, cited_numbers, strip_attribution, strip_marks
from common.sentences import sentence_spans
from common.text import content_terms, detect_language, fold
from index.embedder import CachedEmbedder

_ARTICLES = frozenset("le la les l un une des du de d au aux a an the".split())
_SCALES = {
    "mille": 3, "milliers": 3, "millier": 3, "thousand": 3, "thousands": 3,
    "million": 6, "millions": 6,
    "milliard": 9, "milliards": 9, "md": 9, "mds": 9, "mrd": 9, "billion": 9, "billions": 9, "bn": 9,
    "trillion": 12, "trillions": 12,
}
_FR_SCALES = {"billion": 12, "billions": 12}  # in French a "billion" is 10^12
_SCALED = re.compile(r"(\d+(?:\.\d+)?)\s*(" + "|".join(sorted(_SCALES, key=len, reverse=True)) + r")\b")
_UNITS = ((re.compile(r"\$|\bus\$|\busd\b|\bdollars?\b"), " dollars "),
          (re.compile(r"€|\beur\b|\beuros?\b"), " euros "),
          (re.compile(r"%|\bpour ?cents?\b|\bper ?cent\b|\bpercent\b"), " pourcent "))


def normalize_answer(text: str, language: str = "fr") -> str:
    """Lower case, no accents, marks, articles or punctuation; numbers and units written one way."""
    text = fold(strip_marks(strip_attribution(text))).replace("\u00a0", " ").replace("\u202f", " ")
    text = re.sub(r"(?<=\d)[ .](?=\d{3}\b)", "", text)  # 13 000 / 13.000 -> 13000
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text) if language == "en" else text  # 13,000 -> 13000
    text = re.sub(r"(?<=\d),(?=\d)", ".", text)  # 1,5 -> 1.5
    text = _SCALED.sub(lambda m: _scaled(m, language), text)
    for pattern, unit in _UNITS:
        text = pattern.sub(unit, text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points only
    text = re.sub(r"[^\w\s.]", " ", text)
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def _scaled(match: re.Match, language: str) -> str:
    word = match.group(2)
    power = (_FR_SCALES.get(word) if language == "fr" else None) or _SCALES[word]
    try:
        value = Decimal(match.group(1)).scaleb(power)
    except InvalidOperation:
        return match.group(0)
    return format(value.normalize(), "f").split(".")[0] if value == value.to_integral() else format(value, "f")


def exact_match(prediction: str, expected: str, language: str = "fr") -> float:
    """1.0 when both normalise to the same text, else 0.0."""
    return float(normalize_answer(prediction, language) == normalize_answer(expected, language))


def token_f1(prediction: str, expected: str, language: str = "fr") -> float:
    """SQuAD token F1 between the normalised texts."""
    return _f1_parts(prediction, expected, language)[0]


def token_recall(prediction: str, expected: str, language: str = "fr") -> float:
    """Share of the expected answer's tokens found in the prediction (suits sentence-long answers)."""
    return _f1_parts(prediction, expected, language)[1]


def _f1_parts(prediction: str, expected: str, language: str) -> tuple[float, float]:
    pred = normalize_answer(prediction, language).split()
    gold = normalize_answer(expected, language).split()
    if not pred or not gold:
        return float(pred == gold), float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0, 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall), recall


def _loose(text: str) -> tuple[str, list[int]]:
    """``text`` folded with quotes unified and runs of spaces as one, and where each character came from."""
    chars, where = [], []
    for i, ch in enumerate(text):
        ch = fold(ch).replace("“", '"').replace("”", '"').replace("«", '"').replace("»", '"')
        if ch.isspace() or not ch:
            if chars and chars[-1] == " ":
                continue
            ch = " "
        for c in ch:
            chars.append(c)
            where.append(i)
    return "".join(chars), where


def find_span(text: str, quote: str) -> tuple[int, int] | None:
    """Where ``quote`` occurs in ``text``, ignoring case, accents and spacing; None when it does not."""
    needle = _loose(quote)[0].strip()
    if not needle:
        return None
    haystack, where = _loose(text)
    pos = haystack.find(needle)
    if pos < 0:
        return None
    return where[pos], where[pos + len(needle) - 1] + 1


def evidence_rank(passages: Sequence[str], evidence: str) -> int | None:
    """The 1-based rank of the first passage containing the evidence, or None."""
    for rank, passage in enumerate(passages, 1):
        if find_span(passage, evidence):
            return rank
    return None


def claims(answer: str) -> list[tuple[str, tuple[int, ...]]]:
    """The answer's sentences (without their date lead-ins), each with the passage numbers cited after it
    (or after its group)."""
    answer, out, pos = strip_attribution(answer), [], 0
    for group in MARK_RUN.finditer(answer):
        out += _sentences(answer[pos:group.start()], tuple(int(n) for n in MARK.findall(group.group())))
        pos = group.end()
    return out + _sentences(answer[pos:], ())


def _sentences(text: str, cited: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    text = re.sub(r"^[\s.,;:!?]+", "", text)
    return [(text[a:b], cited) for a, b in sentence_spans(text) if re.search(r"\w", text[a:b])]


def similarity(answer: str, expected: str, embedder: CachedEmbedder) -> float:
    """Cosine between the embeddings of the answer (marks removed) and the expected answer."""
    a, b = embedder.embed([strip_marks(strip_attribution(answer)), expected], kind="query")
    return round(float(a @ b), 4)


@dataclass(frozen=True)
class SupportTest:
    """When a passage supports a claim (see the module docstring); values set in eval/thresholds.toml."""

    min_overlap: float = 0.5
    min_cosine: float = 0.85
    cross_cosine: float = 0.88

    def supports(self, claim: str, passage: str, embedder: CachedEmbedder, language: str = "fr") -> bool:
        """True when ``passage`` supports ``claim`` by the documented test."""
        if find_span(passage, strip_marks(claim).strip(" .\u00a0«»\"")):  # a quotation, marks and all
            return True
        units = [passage[a:b] for a, b in sentence_spans(passage)] or [passage]
        vectors = embedder.embed([claim, *units])
        cosine = float(np.max(vectors[1:] @ vectors[0]))
        claim_language = detect_language(claim, default=language)
        if claim_language != detect_language(passage, default=claim_language):
            return cosine >= self.cross_cosine
        terms = content_terms(claim, claim_language)
        overlap = len(terms & content_terms(passage, claim_language)) / len(terms) if terms else 0.0
        return overlap >= self.min_overlap and cosine >= self.min_cosine


def groundedness(answer: str, passages: dict[int, str], embedder: CachedEmbedder, test: SupportTest,
                 language: str = "fr") -> float | None:
    """Share of the answer's sentences supported by a passage they cite; None for an empty answer."""
    found = claims(answer)
    if not found:
        return None
    ok = sum(any(n in passages and test.supports(text, passages[n], embedder, language) for n in cited)
             for text, cited in found)
    return round(ok / len(found), 4)


def citation_precision(answer: str, passages: dict[int, str], evidence: str, embedder: CachedEmbedder,
                       test: SupportTest, language: str = "fr") -> float | None:
    """Share of the cited passages that contain or support the evidence; None when nothing is cited."""
    cited = cited_numbers(answer)
    if not cited:
        return None
    ok = sum(n in passages and test.supports(evidence, passages[n], embedder, language) for n in cited)
    return round(ok / len(cited), 4)
