"""Run eval items through the answering pipeline and score each answer.

Per item (None where a metric does not apply):
- ``hit_at_k``, ``mrr``: whether, and how high, a retrieved passage contains the evidence
  (answerable items; computed even when the answer abstained, as it measures retrieval).
- ``exact_match``, ``f1``, ``recall``: the answer against the expected answer, normalised
  (eval.metrics.normalize_answer); ``similarity``: their embedding cosine (answerable items).
- ``citation_precision``: share of cited passages that contain or support the evidence;
  ``groundedness``: share of answer sentences supported by a passage they cite (answered items).
- ``abstention``: 1 when an unanswerable item abstained; ``wrong_abstention``: 1 when an
  answerable item abstained. ``judge``: an LLM judge's score, only when one is given.
An answerable item is ``ok`` when it is answered, grounded, its citations hold the evidence and its
answer passes recall or similarity; an unanswerable item is ``ok`` when it abstains.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from common.citations import cited_numbers
from common.sentences import sentence_spans
from eval.dataset import EvalItem
from eval.gate import EvalConfig, load_config
from eval.metrics import (
    citation_precision,
    claims,
    evidence_rank,
    exact_match,
    groundedness,
    similarity,
    strip_marks,
    token_f1,
    token_recall,
)
from index.embedder import CachedEmbedder

METRICS = ("hit_at_k", "mrr", "exact_match", "f1", "recall", "similarity", "citation_precision", "groundedness",
           "abstention", "wrong_abstention", "judge")
SUMMARY_NAMES = {"abstention": "abstention_accuracy", "wrong_abstention": "wrong_abstention_rate"}


@dataclass(frozen=True)
class ItemResult:
    """One item's answer, metric values, and pass/fail per metric (None where not applicable)."""

    item_id: str
    item: dict
    answer: dict
    metrics: dict
    passed: dict
    ok: bool
    marks: dict = field(default_factory=dict)  # metric -> its pass mark, as shown: ">= 0.5", "= 0"
    why: tuple[str, ...] = ()  # what failed the item, in words (empty when it passed)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"item_id": self.item_id, "item": self.item, "answer": self.answer, "metrics": self.metrics,
                "passed": self.passed, "ok": self.ok, "marks": self.marks, "why": list(self.why)}


@dataclass(frozen=True)
class EvalRun:
    """Results of a run: per item, the summary (metric -> mean) and what was run (``meta``)."""

    results: tuple[ItemResult, ...]
    summary: dict
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON result that ``rag eval answers`` writes and ``--baseline`` reads."""
        return {"meta": self.meta, "summary": self.summary, "results": [r.to_dict() for r in self.results]}


def run_eval(pipeline, items: Sequence[EvalItem], backend: str | None = None, *, top_k: int | None = None,
             config: EvalConfig | None = None, judge: Callable[[EvalItem, dict], float | None] | None = None,
             progress: Callable[[int, int], None] | None = None) -> EvalRun:
    """Ask every item through ``pipeline`` (the one /ask uses) and score the answers."""
    config = config or load_config()
    embedder = CachedEmbedder(pipeline.embedder, size=1_000_000)  # an eval run reuses every vector
    started, answers = time.perf_counter(), []
    for done, item in enumerate(items, 1):
        answers.append(pipeline.ask(item.question, top_k=top_k, backend=backend).to_dict())
        if progress:
            progress(done, len(items))
    _prefetch(items, answers, embedder)
    results = []
    for item, answer in zip(items, answers):
        values = score_answer(item, answer, embedder, config)
        if judge is not None:
            values["judge"] = judge(item, answer)
        results.append(_result(item, answer, values, config))
    meta = {"backend": backend or pipeline.settings.backend, "embedder": pipeline.embedder.name,
            "top_k": top_k or pipeline.settings.top_k, "abstain_threshold": pipeline.settings.abstain_threshold,
            "items": len(results), "seconds": round(time.perf_counter() - started, 2)}
    return EvalRun(tuple(results), summarize(results), meta)


def _prefetch(items: Sequence[EvalItem], answers: list[dict], embedder: CachedEmbedder) -> None:
    """Embed in two batches every text the metrics may compare, rather than a few at a time."""
    queries, passages = [], []
    for item, answer in zip(items, answers):
        if answer["abstained"]:
            continue
        queries += [strip_marks(answer["answer"]), item.expected_answer] if item.answerable else []
        cited = [c["text"] for c in answer["citations"] if c["n"] in cited_numbers(answer["answer"])]
        passages += [text for text, _ in claims(answer["answer"])] + ([item.evidence] if item.evidence else [])
        passages += [t[a:b] for t in cited for a, b in sentence_spans(t)]
    embedder.embed(list(dict.fromkeys(queries)), kind="query")
    embedder.embed(list(dict.fromkeys(passages)), kind="passage")


def score_answer(item: EvalItem, answer: dict, embedder: CachedEmbedder, config: EvalConfig) -> dict:
    """Every applicable metric of one answer (a ``Answer.to_dict()``) to one item."""
    values = dict.fromkeys(METRICS)
    passages = {c["n"]: c["text"] for c in answer["citations"]}
    text, lang, abstained = answer["answer"], item.language, answer["abstained"]
    if not abstained:
        values["groundedness"] = groundedness(text, passages, embedder, config.support, lang)
    if not item.answerable:
        values["abstention"] = float(abstained)
        return values
    if item.evidence:
        rank = evidence_rank([c["text"] for c in answer["citations"]], item.evidence)
        values["hit_at_k"], values["mrr"] = float(rank is not None), round(1 / rank, 4) if rank else 0.0
        if not abstained:
            values["citation_precision"] = citation_precision(text, passages, item.evidence, embedder,
                                                              config.support, lang)
    said = "" if abstained else text
    values.update(exact_match=exact_match(said, item.expected_answer, lang),
                  f1=round(token_f1(said, item.expected_answer, lang), 4),
                  recall=round(token_recall(said, item.expected_answer, lang), 4),
                  similarity=similarity(said, item.expected_answer, embedder) if said else 0.0,
                  wrong_abstention=float(abstained))
    return values


def _result(item: EvalItem, answer: dict, values: dict, config: EvalConfig) -> ItemResult:
    passed = {metric: _passes(metric, value, config) for metric, value in values.items()}
    why = []
    if item.answerable:
        if passed["wrong_abstention"] is not True:
            why.append("it abstained, but the articles answer it")
        else:
            if passed["groundedness"] is False:
                why.append("a sentence of the answer is not supported by the passage it cites")
            if passed["citation_precision"] is False:
                why.append("its citations do not hold the evidence")
            if not (passed["recall"] or passed["similarity"]):
                why.append("the answer says neither the expected words (recall) nor the same thing (similarity)")
    elif not passed["abstention"]:
        why.append("it answered, but the articles do not say")
    marks = {metric: _mark(metric, config) for metric, value in values.items() if value is not None}
    record = {k: v for k, v in item.to_dict().items() if k not in ("verdicts", "edits")}
    return ItemResult(item.id, record, answer, values, passed, not why, {k: v for k, v in marks.items() if v},
                      tuple(why))


def _mark(metric: str, config: EvalConfig) -> str:
    """The per-item pass mark of a metric, as shown to editors ("" when it has none)."""
    if metric == "mrr":
        return ""
    if metric == "wrong_abstention":
        return "= 0"
    if metric in ("hit_at_k", "exact_match", "abstention"):
        return "= 1"
    return f">= {getattr(config.cutoffs, metric, 1.0):g}"


def _passes(metric: str, value: float | None, config: EvalConfig) -> bool | None:
    """Whether one value reaches its per-item mark; None when the metric does not apply or has no mark."""
    if value is None or metric == "mrr":
        return None
    if metric == "wrong_abstention":
        return value == 0
    return value >= getattr(config.cutoffs, metric, 1.0)  # hit_at_k, exact_match, abstention: must be 1


def summarize(results: Sequence[ItemResult]) -> dict:
    """Mean of each metric over the items it applies to, the pass rate and the item counts."""
    summary = {}
    for metric in METRICS:
        values = [r.metrics[metric] for r in results if r.metrics.get(metric) is not None]
        if values:
            summary[SUMMARY_NAMES.get(metric, metric)] = round(sum(values) / len(values), 4)
    summary["pass_rate"] = round(sum(r.ok for r in results) / len(results), 4) if results else 0.0
    summary["items"] = len(results)
    summary["answerable"] = sum(bool(r.item["answerable"]) for r in results)
    return summary
