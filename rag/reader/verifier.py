"""The answerability verifier: does the reader's best span answer the question, or only sit near its subject?

The reader's own score (its span's margin over "no answer") tells a window that holds an answer from
one that does not, but not well enough on its own: a passage on the question's subject that lacks the
fact asked ("the EAST reactor's duration record" for its temperature) still offers a span of the right
shape. The verifier weighs that margin with evidence the reader does not see:

- how strongly retrieval supports the passages (the best dense cosine) and the span's sentence
  (its cosine with the question);
- how much of what the question asks the span's sentence, its window and its passage say: the share
  of the question's content words they contain, each word weighted by its rarity
  (``common.text.weighted_terms``), and apart from its names the share and the rarest of the words
  they lack: a passage naming Mistral AI without "fondé" lacks what is asked;
- whether the span only repeats the question, and whether it has the type asked (a number for "how
  much", a date for "when").

Gradient-boosted trees over these features, fitted by ``rag train verifier`` on PIAF questions the
reader never trained on (``rag.reader.data.part_of``: the "verifier" part), each asked with its own
article, without it, and with the passages that state its answer removed. Across languages (an English
question over French passages) words cannot be compared, so a second fit without the word features
decides. Both fits, the threshold and the measured metrics are stored in the reader's manifest.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from common.text import content_terms, weighted_terms
from rag.coverage import has_date, has_number, question_names, wants_amount, wants_date

FEATURES = ("margin", "evidence", "sentence_cosine", "sentence_cover", "window_cover", "passage_cover",
            "sentence_missing", "window_missing", "window_missing_max", "span_echo", "type_mismatch")
WORD_FEATURES = ("sentence_cover", "window_cover", "passage_cover", "sentence_missing", "window_missing",
                 "window_missing_max", "span_echo")
MARGIN_CLIP = 20.0


@dataclass(frozen=True)
class Evidence:
    """What the verifier reads about one candidate answer: the question, the reader's span and margin,
    the sentence, window and passage holding it, and the retrieval scores."""

    question: str
    language: str
    span: str
    margin: float
    sentence: str
    window: str
    passage: str
    passage_language: str
    evidence: float
    sentence_cosine: float


def cover(weights: dict[str, float], text: str, language: str) -> float:
    """The weighted share of the question's terms (``weights``) that ``text`` contains."""
    total = sum(weights.values())
    if not total:
        return 0.0
    terms = content_terms(text, language)
    return sum(w for term, w in weights.items() if term in terms) / total


@functools.lru_cache(maxsize=256)
def asked_words(question: str, language: str) -> dict[str, float]:
    """The question's weighted terms that are not part of a name: what it asks about ("fondé", "valorisation",
    "température"), as opposed to whom or what it names ("Mistral AI", "OpenAI")."""
    weights = _question_terms(question, language)
    names = content_terms(" ".join(question_names(question)), language)
    return {term: w for term, w in weights.items() if term not in names}


@functools.lru_cache(maxsize=256)
def _question_terms(question: str, language: str) -> dict[str, float]:
    """The question's weighted terms, once per question (every window read weighs them again). Read only."""
    return weighted_terms(question, language)


def missing(asked: dict[str, float], text: str, language: str) -> tuple[float, float]:
    """The weighted share of the asked words that ``text`` lacks, and the largest missing weight (over 8)."""
    total = sum(asked.values())
    if not total:
        return 0.0, 0.0
    terms = content_terms(text, language)
    lacking = [w for term, w in asked.items() if term not in terms]
    return sum(lacking) / total, max(lacking, default=0.0) / 8.0


def features(e: Evidence) -> dict[str, float]:
    """The verifier's features of one candidate (word features are 0 across languages)."""
    language = e.passage_language or e.language or "fr"
    weights = _question_terms(e.question, language)
    span_terms = content_terms(e.span, language)
    asked = set(weights)
    words = asked_words(e.question, language)
    sentence_missing, _ = missing(words, e.sentence, language)
    window_missing, window_missing_max = missing(words, e.window, language)
    out = {
        "sentence_missing": sentence_missing,
        "window_missing": window_missing,
        "window_missing_max": window_missing_max,
        "margin": max(-MARGIN_CLIP, min(MARGIN_CLIP, e.margin)),
        "evidence": e.evidence,
        "sentence_cosine": e.sentence_cosine,
        "sentence_cover": cover(weights, e.sentence, language),
        "window_cover": cover(weights, e.window, language),
        "passage_cover": cover(weights, e.passage, language),
        "span_echo": len(span_terms & asked) / len(span_terms) if span_terms else 1.0,
        "type_mismatch": float(type_mismatch(e.question, e.span)),
    }
    return out


def type_mismatch(question: str, span: str) -> bool:
    """True when the question asks for an amount or a date and the span states none."""
    if wants_amount(question):
        return not has_number(span)
    if wants_date(question):
        return not has_date(span)
    return False


def cross_language(e: Evidence) -> bool:
    """True when the question and the passage are in different languages (word features say nothing)."""
    return bool(e.language and e.passage_language and e.language != e.passage_language)


@dataclass(frozen=True)
class Fit:
    """Gradient-boosted trees over the named features (scikit-learn's HistGradientBoostingClassifier, exported
    as plain arrays so that the manifest is JSON and loading runs no pickle): each tree's nodes as parallel
    lists of feature index, threshold, children and leaf value; the chance is the sigmoid of the baseline
    plus one leaf value per tree."""

    names: tuple[str, ...]
    baseline: float
    trees: tuple[dict, ...]

    def raw(self, values: dict[str, float]) -> float:
        """The boosted score (log-odds) of one candidate."""
        x = [values[n] for n in self.names]
        total = self.baseline
        for tree in self.trees:
            node = 0
            while not tree["leaf"][node]:
                v = x[tree["feature"][node]]
                left = tree["missing_left"][node] if math.isnan(v) else v <= tree["threshold"][node]
                node = tree["left"][node] if left else tree["right"][node]
            total += tree["value"][node]
        return total

    def probability(self, values: dict[str, float]) -> float:
        """The fitted chance that the candidate answers the question; 0 for a span without the type asked (a
        "how much" span with no number, a "when" span with no time): not one of the verifier part's right
        spans lacks it, while 158 of its wrong ones do, and trees only lower their chance."""
        if values.get("type_mismatch"):
            return 0.0
        z = self.raw(values)
        return 1 / (1 + math.exp(-z)) if z > -60 else 0.0

    def to_dict(self) -> dict:
        return {"names": list(self.names), "baseline": self.baseline, "trees": list(self.trees)}

    @classmethod
    def from_dict(cls, d: dict) -> Fit:
        return cls(tuple(d["names"]), float(d["baseline"]), tuple(d["trees"]))


@dataclass(frozen=True)
class Verifier:
    """The two fits (same language, across languages) and the probability under which it abstains."""

    same: Fit
    across: Fit
    threshold: float
    evidence_floor: float | None = None
    """The evidence under which the pipeline need not ask (almost no answerable question falls there)."""

    def probability(self, e: Evidence) -> tuple[float, dict[str, float]]:
        """The chance that the candidate answers, and the features it was computed from."""
        values = features(e)
        fit = self.across if cross_language(e) else self.same
        return fit.probability(values), values

    @classmethod
    def from_manifest(cls, manifest: dict) -> Verifier | None:
        """The manifest's verifier, or None for a reader trained before it (its margin alone decides)."""
        v = manifest.get("verifier")
        if not v:
            return None
        floor = v.get("evidence_floor")
        return cls(Fit.from_dict(v["same_language"]), Fit.from_dict(v["across_languages"]), float(v["threshold"]),
                   None if floor is None else float(floor))


# Measured by 5-fold cross-validation over the verifier part's questions (README): at 95% of answerable
# questions answered, trees abstain on 85.6% of questions whose article is hidden, a logistic regression
# over the same features on 73.4%.
TREES = {"max_iter": 200, "learning_rate": 0.05, "max_depth": 3, "l2_regularization": 1.0, "min_samples_leaf": 40}


def fit(rows: list[dict[str, float]], labels: list[int], names: tuple[str, ...], seed: int = 0) -> Fit:
    """Boosted trees of ``labels`` on the ``names`` features of ``rows`` (``TREES``), exported to a ``Fit``."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.array([[r[n] for n in names] for r in rows], dtype=float)
    model = HistGradientBoostingClassifier(random_state=seed, **TREES).fit(x, np.asarray(labels, dtype=int))
    trees = []
    for (predictor,) in model._predictors:  # one tree per iteration for a binary target
        nodes = predictor.nodes
        trees.append({"feature": nodes["feature_idx"].tolist(), "threshold": nodes["num_threshold"].tolist(),
                      "left": nodes["left"].tolist(), "right": nodes["right"].tolist(),
                      "leaf": nodes["is_leaf"].astype(bool).tolist(), "value": nodes["value"].tolist(),
                      "missing_left": nodes["missing_go_to_left"].astype(bool).tolist()})
    return Fit(tuple(names), float(np.ravel(model._baseline_prediction)[0]), tuple(trees))
