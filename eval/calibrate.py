"""Calibrate the abstention threshold: ``rag eval calibrate --squad FILE``.

Every question of a SQuAD file is asked twice over an index of the file's articles: once as
is (answerable), once with its own article filtered out of the search (unanswerable: the
article that says it is gone, the rest of the corpus is still there). The evidence score the
pipeline abstains on (``rag.retriever.evidence``: the best dense cosine among the passages the
mode returns) is recorded for both. Two thresholds are reported, with the ROC AUC of the score:
- the highest one that still answers ``min_answered`` (default 95%) of the answerable questions,
  the one printed first and the default setting: wrongly refusing a question the articles answer
  costs more than quoting a near passage, and questions in another language than the articles
  (absent from PIAF) have lower cosines, so a stricter cut refuses them first;
- the one with the best balanced accuracy (mean of the answer rate on answerable and the
  abstention rate on unanswerable questions), chosen with ``min_answered=0``.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from eval.retrieval import build_index, load_eval_set


def best_threshold(answerable: np.ndarray, unanswerable: np.ndarray) -> dict:
    """The threshold with the best balanced accuracy (ties: the lowest), and the rates it gives."""
    values = np.unique(np.concatenate([answerable, unanswerable]))
    cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    answered = (answerable[None, :] >= cuts[:, None]).mean(axis=1)
    abstained = (unanswerable[None, :] < cuts[:, None]).mean(axis=1)
    best = int(np.argmax((answered + abstained) / 2))
    return {"threshold": round(float(cuts[best]), 4), "answered_answerable": round(float(answered[best]), 4),
            "abstained_unanswerable": round(float(abstained[best]), 4),
            "balanced_accuracy": round(float((answered[best] + abstained[best]) / 2), 4)}


def threshold_for_answer_rate(answerable: np.ndarray, unanswerable: np.ndarray, rate: float) -> dict:
    """The highest threshold that answers at least ``rate`` of the answerable questions, and its rates."""
    ordered = np.sort(answerable)
    cut = float(ordered[len(ordered) - max(1, math.ceil(rate * len(ordered) - 1e-9))])
    answered, abstained = (answerable >= cut).mean(), (unanswerable < cut).mean()
    return {"threshold": round(cut, 4), "answered_answerable": round(float(answered), 4),
            "abstained_unanswerable": round(float(abstained), 4),
            "balanced_accuracy": round(float((answered + abstained) / 2), 4)}


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC: the chance that a random positive scores above a random negative (ties count half)."""
    ranks = _ranks(np.concatenate([positive, negative]))
    return float((ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):  # average ranks of ties
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def evidence_pairs(retrieval, queries, vectors, mode: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The evidence score of each question with its article indexed, and with it filtered out."""
    from rag.retriever import Filters, evidence

    with_article, without = [], []
    for query, vector in zip(queries, vectors):
        with_article.append(evidence(retrieval.search(query.text, vector, k, mode)))
        hidden = Filters(exclude_article_ids=tuple({g.article_id for g in query.gold}))
        without.append(evidence(retrieval.search(query.text, vector, k, mode, hidden)))
    return np.array(with_article), np.array(without)


def calibrate(path: str | Path, settings, mode: str, index_dir: str | Path | None = None,
              limit: int | None = None, embedder=None, min_answered: float = 0.95) -> dict:
    """Index the file, ask each question with and without its article; the threshold and its rates.

    The threshold answers at least ``min_answered`` of the answerable questions; with 0 it is the
    one with the best balanced accuracy (both are in the result).
    """
    from rag.retriever import Retrieval, RetrievalConfig
    from rag.service import make_embedder

    eval_set = load_eval_set(path, limit)
    embedder = embedder or make_embedder(settings, progress=True)
    with tempfile.TemporaryDirectory(prefix="rag-calibrate-") as tmp:
        data, _, _ = build_index(eval_set, settings, embedder, Path(index_dir or tmp))
        retrieval = Retrieval(data, embedder, RetrievalConfig.of(settings))
        vectors = embedder.embed([q.text for q in eval_set.queries], kind="query")
        positive, negative = evidence_pairs(retrieval, eval_set.queries, vectors, mode, settings.top_k)
    balanced = best_threshold(positive, negative)
    chosen = threshold_for_answer_rate(positive, negative, min_answered) if min_answered else balanced
    criterion = f"answers >= {min_answered:.0%} of answerable" if min_answered else "best balanced accuracy"
    return {"set": eval_set.name, "mode": mode, "questions": len(eval_set.queries), "top_k": settings.top_k,
            "model": embedder.name, "auc": round(auc(positive, negative), 4), "criterion": criterion, **chosen,
            "balanced": balanced,
            "current_threshold": settings.abstain_threshold,
            "current_answered_answerable": round(float((positive >= settings.abstain_threshold).mean()), 4),
            "current_abstained_unanswerable": round(float((negative < settings.abstain_threshold).mean()), 4),
            "evidence_answerable_median": round(float(np.median(positive)), 4),
            "evidence_unanswerable_median": round(float(np.median(negative)), 4)}


def format_calibration(result: dict) -> str:
    """The result for people; the first line is the threshold to set."""
    return "\n".join([
        f"RAG_ABSTAIN_THRESHOLD={result['threshold']}",
        f"{result['set']}: {result['questions']} questions, mode {result['mode']}, top_k {result['top_k']}, "
        f"model {result['model']}; evidence = best dense cosine among the passages",
        f"AUC {result['auc']:.3f}; threshold for {result['criterion']}: {result['threshold']}: answers "
        f"{result['answered_answerable']:.1%} of answerable, "
        f"abstains on {result['abstained_unanswerable']:.1%} of unanswerable",
        f"best balanced accuracy {result['balanced']['balanced_accuracy']:.1%} "
        f"at {result['balanced']['threshold']}: answers "
        f"{result['balanced']['answered_answerable']:.1%}, abstains {result['balanced']['abstained_unanswerable']:.1%}",
        f"current setting {result['current_threshold']}: answers {result['current_answered_answerable']:.1%}, "
        f"abstains {result['current_abstained_unanswerable']:.1%}",
        f"median evidence: answerable {result['evidence_answerable_median']}, "
        f"unanswerable {result['evidence_unanswerable_median']}",
    ])
