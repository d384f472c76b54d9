"""``rag eval reader``: the reader end to end on PIAF's held-out articles, with and without each
question's own article, and with its article but not the passages that state the answer.

The held-out articles (``rag.reader.data.is_held_out``: never trained on) are indexed alone.
Each of their questions is asked through the /ask pipeline twice: as is (answerable), and with
its own article filtered out of the search (unanswerable: the article that says it is gone); a third
reading keeps the article but drops the retrieved passages that contain the gold answer (the subject is
there, the fact is not), read by the backend on the remaining passages (``rag.reader.fit.candidates``).
Both gates run with their thresholds at zero, so every question records its evidence (best
dense cosine), the reader's best span and its confidence; the rates at any pair of thresholds
are then computed from those records. Reported: the reader threshold that answers
``min_answered`` of the answerable questions (with the configured cosine gate), the abstention
rate it gives on the unanswerable ones, and exact match and token F1 against the gold answers
(an abstention scores 0 on an answerable question). The span scored is the reader's best one:
the answer itself may add the sentence around it ("why"/"how") or further spans (lists).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from eval.metrics import exact_match, token_f1
from rag.reader.data import is_held_out, read_questions
from rag.retriever import Filters


def held_out_file(squad: Path, folder: Path) -> Path:
    """A SQuAD file of the held-out articles only."""
    data = json.loads(Path(squad).read_text(encoding="utf-8"))
    path = Path(folder) / "piaf-held-out.json"
    kept = [a for a in data["data"] if is_held_out(a["title"])]
    path.write_text(json.dumps({**data, "data": kept}, ensure_ascii=False), encoding="utf-8")
    return path


def run(squad: Path, settings, limit: int | None = None, progress=None) -> list[dict]:
    """One record per held-out question and condition: ``own`` (its article indexed), ``hidden`` (its
    article filtered out) and ``removed`` (its article indexed, the passages stating its answer taken away)."""
    from rag.reader.fit import candidates, open_pipeline

    questions = read_questions(squad, "held-out")[:limit]
    records = []
    with tempfile.TemporaryDirectory(prefix="rag-eval-reader-") as tmp:
        corpus = held_out_file(squad, Path(tmp))
        pipeline = open_pipeline(settings, corpus, Path(tmp), settings.reader_dir)
        article_of = {c.title: c.article_id for c in pipeline.data.chunks}
        for i, q in enumerate(questions):
            for condition in ("own", "hidden"):
                hidden = None if condition == "own" else Filters(exclude_article_ids=(article_of[q.article],))
                answer = pipeline.ask(q.question, filters=hidden)
                reading = answer.reading
                records.append({
                    "id": q.id, "condition": condition, "question": q.question, "gold": q.answer,
                    "answer": answer.answer, "abstained": answer.abstained, "span": reading.get("text", ""),
                    "confidence": reading.get("confidence", 0.0) if not answer.abstained else 0.0,
                    "evidence": answer.evidence if answer.evidence is not None else -1.0,
                    "cited_own": any(c.article_id == article_of[q.article] for c in answer.citations[:1]),
                })
            found = candidates(pipeline, q, "removed", article_of[q.article])
            best = max(found or (), key=lambda c: c.probability, default=None)
            records.append({
                "id": q.id, "condition": "removed", "question": q.question, "gold": q.answer, "answer": "",
                "abstained": best is None, "span": best.reading.text if best else "",
                "confidence": best.probability if best else 0.0,
                "evidence": best.features.get("evidence", -1.0) if best else -1.0, "cited_own": False})
            if progress:
                progress(i + 1, len(questions))
    return records


def summarise(records: list[dict], cosine: float, min_answered: float = 0.95, threshold: float | None = None) -> dict:
    """Rates and answer quality at the cosine gate ``cosine`` and the reader threshold that answers
    ``min_answered`` of the answerable questions (or the given ``threshold``)."""
    by = {c: [r for r in records if r["condition"] == c] for c in ("own", "hidden", "removed")}

    def confidence(rs):
        return np.array([r["confidence"] if r["evidence"] >= cosine and not r["abstained"] else -1.0 for r in rs])

    c_own, c_other, c_removed = confidence(by["own"]), confidence(by["hidden"]), confidence(by["removed"])
    if threshold is None:
        ordered = np.sort(c_own)
        threshold = float(ordered[int(np.floor((1 - min_answered) * len(ordered)))])
    answered = (c_own >= threshold) & (c_own >= 0)
    em = np.array([exact_match(_plain(r["span"]), r["gold"]) for r in by["own"]]) * answered
    f1 = np.array([token_f1(_plain(r["span"]), r["gold"]) for r in by["own"]]) * answered
    pos, neg = c_own, c_other
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()) if len(neg) else 0.0
    return {
        "questions": len(by["own"]), "cosine_gate": cosine, "reader_threshold": round(threshold, 4),
        "auc_own_vs_hidden": round(auc, 4),
        "answered_answerable": round(float(answered.mean()), 4),
        "abstained_unanswerable": round(float(((c_other < threshold) | (c_other < 0)).mean()), 4),
        "abstained_removed": round(float(((c_removed < threshold) | (c_removed < 0)).mean()), 4)
        if len(c_removed) else None,
        "exact_match": round(float(em.mean()), 4), "token_f1": round(float(f1.mean()), 4),
        "exact_match_answered": round(float(em[answered].mean()), 4) if answered.any() else 0.0,
        "token_f1_answered": round(float(f1[answered].mean()), 4) if answered.any() else 0.0,
    }


def _plain(answer: str) -> str:
    """The answer without citation marks and quote marks."""
    from common.citations import strip_marks

    return strip_marks(answer).strip(" «»\u00a0.")


def format_summary(s: dict) -> str:
    """One paragraph for people."""
    removed = (f", {s['abstained_removed']:.1%} of those whose answering passages were removed"
               if s.get("abstained_removed") is not None else "")
    return (f"PIAF held-out: {s['questions']} questions, cosine gate {s['cosine_gate']}, reader threshold "
            f"{s['reader_threshold']}: answers {s['answered_answerable']:.1%} of answerable, abstains on "
            f"{s['abstained_unanswerable']:.1%} of unanswerable (own article hidden){removed}; AUC "
            f"{s['auc_own_vs_hidden']:.3f}; exact match {s['exact_match']:.3f}, token F1 {s['token_f1']:.3f} "
            f"(abstentions count 0; on answered only: EM {s['exact_match_answered']:.3f}, "
            f"F1 {s['token_f1_answered']:.3f})")


def reader_gate(settings) -> tuple[float, float]:
    """The cosine gate the pipeline applies before the reader, and the reader's shipped threshold."""
    from rag.reader.reader import WEIGHTS_DIR, read_manifest
    from rag.reader.verifier import Verifier

    manifest = read_manifest(Path(settings.reader_dir or WEIGHTS_DIR))
    verifier = Verifier.from_manifest(manifest)
    if verifier is None:
        return settings.abstain_threshold, float(manifest.get("threshold", 0.5))
    floor = verifier.evidence_floor
    gate = settings.abstain_threshold if floor is None else min(settings.abstain_threshold, floor)
    threshold = verifier.threshold if settings.reader_threshold is None else settings.reader_threshold
    return gate, threshold


def record(summary: dict, weights_dir: Path | None = None, command: str = "rag eval reader --record") -> None:
    """Write the end-to-end metrics and the command that measured them into the reader's manifest (its
    threshold stays the one chosen where the verifier was fitted: the held-out part measures, it does not
    tune)."""
    from rag.reader.reader import MANIFEST_FILE, WEIGHTS_DIR, write_manifest

    folder = Path(weights_dir or WEIGHTS_DIR)
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest.setdefault("metrics", {})["piaf_held_out_end_to_end"] = {**summary, "command": command}
    write_manifest(folder, manifest)
