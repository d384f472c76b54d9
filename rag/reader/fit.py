"""``rag train verifier``: fit the answerability verifier (``rag.reader.verifier``) over a trained reader.

The verifier learns from readings of questions the reader never trained on: PIAF's "verifier" part
(``rag.reader.data.part_of``). Those articles are indexed together with as many of the reader's articles
as distractors (the same size of index as ``rag eval reader`` uses), and each question is read three
ways, as the product meets questions:

- ``own``: as asked, its article in the index (answerable);
- ``hidden``: its article filtered out of the search (the articles do not cover it);
- ``removed``: its article in the index, but the passages that state its answer taken away (the subject
  is there, the fact is not: "who founded Mistral AI?" over an article that only names it).

Every window the backend reads gives a candidate with its features. A candidate is positive when the
question is read ``own``, its window holds the gold answer and its span shares words with it; a
candidate of ``own`` whose window holds the answer but whose span misses it is left out (the right
place, a wrong span: neither a good nor a bad example of answerability); the rest are negative. The
threshold is the probability that still answers ``ANSWERED`` of the verifier part's answerable
questions (each question's best candidate). Fits, threshold, data checksum, command and rates go into the
reader's manifest.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from common.paths import file_sha256
from common.text import content_terms, detect_language
from rag.reader import data as reader_data
from rag.reader.verifier import FEATURES, WORD_FEATURES, fit

ANSWERED = 0.95
DISTRACTOR_ARTICLES = 34  # reader-part articles indexed beside the verifier part's 19: 53, as for the held-out eval
CONDITIONS = ("own", "hidden", "removed")
CHECK_ROWS = 24
EVIDENCE_FLOOR_SHARE = 0.005  # the pipeline's cosine gate for the reader: under it, 0.5% of answerable questions


def squad_subset(squad: Path, folder: Path, keep, name: str) -> Path:
    """A SQuAD file of the articles whose title ``keep`` accepts."""
    data = json.loads(Path(squad).read_text(encoding="utf-8"))
    path = Path(folder) / name
    path.write_text(json.dumps({**data, "data": [a for a in data["data"] if keep(a["title"])]}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def open_pipeline(settings, corpus: Path, folder: Path, reader_dir: Path | None):
    """A pipeline over ``corpus`` (indexed into ``folder``) whose gates are open, with the reader backend."""
    from rag.service import load_pipeline

    open_settings = settings.model_copy(update={
        "index_dir": Path(folder) / "index", "corpus_dirs": [corpus], "abstain_threshold": 0.0,
        "reader_threshold": 0.0, "backend": "reader", "reader_dir": reader_dir})
    return load_pipeline(open_settings, sync=True)


def candidates(pipeline, question: reader_data.Question, condition: str, article_id: str) -> list | None:
    """The reader backend's verified candidates for ``question`` read under ``condition`` ([] when no passage is
    found), read as the backend reads them: only windows holding a sentence of the type asked (a number for "how
    much"). None when no sentence of the passages has that type: the backend abstains before reading."""
    from rag.backends import Request
    from rag.backends.extractive import answer_type_filter
    from rag.retriever import Filters

    k = pipeline.settings.top_k
    if condition == "hidden":
        hits = pipeline.search(question.question, filters=Filters(exclude_article_ids=(article_id,)))
    else:
        hits = pipeline.search(question.question, top_k=3 * k if condition == "removed" else k)
        if condition == "removed":
            gold = question.answer.casefold()
            hits = [h for h in hits if gold not in h.chunk.text.casefold()][:k]
    if not hits:
        return []
    backend = pipeline.backend("reader")
    request = Request(question.question, tuple(hits), detect_language(question.question, default="fr"))
    sentences, _ = answer_type_filter(question.question, backend.sentences.candidates(request))
    if not sentences:
        return None
    texts = [h.chunk.text for h in hits]
    return [replace(c, features={**c.features, "_window": texts[c.window.n - 1][c.window.start:c.window.end]})
            for c in backend.read_candidates(request, sentences)]


def label(question: reader_data.Question, condition: str, candidate) -> int | None:
    """1: the span answers; 0: it does not; None: the right window with a wrong span (left out)."""
    if condition != "own":
        return 0
    if question.answer.casefold() not in candidate.features["_window"].casefold():
        return 0
    gold = content_terms(question.answer) or {question.answer.casefold()}
    span = content_terms(candidate.reading.text) or {candidate.reading.text.casefold()}
    return 1 if gold & span else None


def collect(pipeline, questions, article_of: dict[str, str], log=print) -> list[dict]:
    """Per question and condition, every candidate's features, probability under the current fit and label."""
    rows, mark = [], time.time()
    for i, q in enumerate(questions, 1):
        for condition in CONDITIONS:
            found = candidates(pipeline, q, condition, article_of[q.article])
            if found is None:  # refused by the type check: abstains whatever the verifier says
                rows.append({"id": q.id, "condition": condition, "label": None, "span": "", "features": None})
            for c in found or ():
                values = {k: v for k, v in c.features.items() if not k.startswith("_")}
                rows.append({"id": q.id, "condition": condition, "label": label(q, condition, c),
                             "span": c.reading.text, "features": values})
        if i % 50 == 0 or i == len(questions):
            log(f"{i}/{len(questions)} questions read ({time.time() - mark:.0f} s)")
    return rows


def rates(rows: list[dict], same, threshold: float | None = None) -> dict:
    """The question-level rates of a fit: each question's best candidate against the threshold (the one
    answering ``ANSWERED`` of the answerable questions when none is given)."""
    import numpy as np

    best: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r["id"], r["condition"])
        best[key] = max(best.get(key, 0.0), same.probability(r["features"]) if r["features"] else 0.0)
    by = {c: np.array([p for (i, cond), p in best.items() if cond == c]) for c in CONDITIONS}
    if threshold is None:
        threshold = float(np.sort(by["own"])[int(np.floor((1 - ANSWERED) * len(by["own"])))])
    return {"threshold": round(threshold, 4), "answered_own": round(float((by["own"] >= threshold).mean()), 4),
            "abstained_hidden": round(float((by["hidden"] < threshold).mean()), 4),
            "abstained_removed": round(float((by["removed"] < threshold).mean()), 4),
            "questions": len(by["own"])}


def check_rows(rows: list[dict], same, count: int = CHECK_ROWS) -> list[dict]:
    """A few candidates of each condition with their features and probability, for the reproduction test."""
    out = []
    for condition in CONDITIONS:
        picked = [r for r in rows if r["condition"] == condition and r["features"]][:count // len(CONDITIONS)]
        out += [{"condition": condition, "span": r["span"], "features": r["features"],
                 "probability": round(same.probability(r["features"]), 6)} for r in picked]
    return out


def _key(reader_dir: Path, squad: Path, questions: int, settings) -> dict:
    from rag.reader.reader import WEIGHTS_FILE

    return {"weights_sha256": file_sha256(Path(reader_dir) / WEIGHTS_FILE), "data_sha256": file_sha256(squad),
            "questions": questions, "conditions": list(CONDITIONS), "features": list(FEATURES),
            "engine": settings.engine, "read_windows": settings.read_windows}


def _cached_rows(folder: Path, reader_dir: Path, squad: Path, questions: int, settings) -> list[dict] | None:
    """The candidates a previous fit read with the same weights, engine, windows, data and questions (features
    are theirs)."""
    path = folder / "candidates.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(saved, dict) or saved.get("key") != _key(reader_dir, squad, questions, settings):
        return None
    return saved["rows"]


def train_verifier(squad: Path, settings, reader_dir: Path, limit: int = 0, log=print) -> dict:
    """Read the verifier part, fit both regressions, choose the threshold and write them into the manifest."""
    import numpy as np

    from rag.reader.reader import MANIFEST_FILE, VERIFIER_FILE, write_manifest

    started = time.time()
    questions = reader_data.read_questions(squad, "verifier")[:limit or None]
    reader_titles = sorted({q.article for q in reader_data.read_questions(squad, "reader")})
    distractors = set(reader_titles[:DISTRACTOR_ARTICLES])
    folder = Path(settings.cache_dir) / "piaf-verifier"  # kept: the next fit finds the articles indexed
    folder.mkdir(parents=True, exist_ok=True)
    corpus = squad_subset(squad, folder, lambda t: reader_data.part_of(t) == "verifier" or t in distractors,
                          "piaf-verifier.json")
    rows = _cached_rows(folder, reader_dir, squad, len(questions), settings)
    if rows is None:
        pipeline = open_pipeline(settings, corpus, folder, reader_dir)
        article_of = {c.title: c.article_id for c in pipeline.data.chunks}
        rows = collect(pipeline, questions, article_of, log)
        (folder / "candidates.json").write_text(json.dumps({"key": _key(reader_dir, squad, len(questions),
                                                                       settings),
                                                            "rows": rows}, ensure_ascii=False), encoding="utf-8")
    else:
        log(f"{len(rows)} candidates read before by the same reader on the same questions ({folder})")
    usable = [r for r in rows if r["label"] is not None]
    labels = [r["label"] for r in usable]
    same = fit([r["features"] for r in usable], labels, FEATURES)
    across = fit([r["features"] for r in usable], labels, tuple(f for f in FEATURES if f not in WORD_FEATURES))
    measured = rates(rows, same)
    own_evidence = sorted({(r["id"], r["features"]["evidence"]) for r in rows if r["condition"] == "own"
                           and r["features"]})
    floor = float(np.quantile([e for _, e in own_evidence], EVIDENCE_FLOOR_SHARE)) if own_evidence else None
    across_rates = rates(rows, across)
    path = Path(reader_dir) / MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    fits = Path(reader_dir) / VERIFIER_FILE
    fits.write_text(json.dumps({"same_language": same.to_dict(), "across_languages": across.to_dict()},
                               separators=(",", ":")) + "\n", encoding="utf-8")
    manifest["verifier"] = {
        "file": VERIFIER_FILE, "sha256": file_sha256(fits), "threshold": measured["threshold"],
        "evidence_floor": None if floor is None else round(floor, 4),
        "command": "rag train verifier " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["train", "verifier"]
        else "rag train verifier",
        "engine": settings.engine, "read_windows": settings.read_windows,
        "data": {"file": Path(squad).name, "sha256": file_sha256(squad), "questions": len(questions),
                 "part": "verifier", "distractor_articles": DISTRACTOR_ARTICLES, "candidates": len(rows),
                 "positives": sum(labels), "negatives": len(labels) - sum(labels), "limit": limit},
        "metrics": {"verifier_part": measured, "verifier_part_across_fit": across_rates,
                    "cross_validation": cross_validate(rows, log=log)},
        "check": check_rows(rows, same),
        "seconds": round(time.time() - started),
    }
    write_manifest(reader_dir, manifest)
    log(json.dumps(manifest["verifier"]["metrics"], indent=1))
    return manifest["verifier"]


def cross_validate(rows: list[dict], folds: int = 5, log=print) -> dict[str, dict]:
    """Question-level rates at ``ANSWERED`` of answerable questions answered, each fold's questions scored by
    trees fitted on the other folds: all features, without the word features, and the reader's margin alone
    (recorded by ``rag train verifier`` in the manifest, ``metrics.cross_validation``)."""
    import numpy as np

    ids = sorted({r["id"] for r in rows})
    np.random.default_rng(0).shuffle(ids)
    fold_of = {i: k % folds for k, i in enumerate(ids)}
    variants = {"trees, all features": FEATURES,
                "trees, no word features": tuple(f for f in FEATURES if f not in WORD_FEATURES),
                "trees, the reader's margin alone": ("margin",)}
    out = {}
    for name, names in variants.items():
        scored = []
        for k in range(folds):
            train = [r for r in rows if fold_of[r["id"]] != k and r["label"] is not None]
            model = fit([r["features"] for r in train], [r["label"] for r in train], names)
            scored += [{**r, "features": {"_cv": model.probability(r["features"]) if r["features"] else 0.0}}
                       for r in rows if fold_of[r["id"]] == k]
        out[name] = rates(scored, _Scored())
        log(f"{name}: {json.dumps(out[name])}")
    return out


class _Scored:
    """Reads a row's cross-validated probability where ``rates`` expects a fit."""

    def probability(self, features: dict) -> float:
        return features["_cv"]

