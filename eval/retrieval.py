"""Retrieval quality on a SQuAD-format file (such as PIAF) or a BEIR folder: ``rag eval retrieval``.

The file's articles are indexed in a temporary index with the current settings (chunker,
embedder, BM25), every question is run in each mode, and the report gives recall@1/5/10,
MRR@10, nDCG@10 (BEIR's definitions, binary relevance), article hit@5, query speed and the
index build time.

What counts as the gold passage. SQuAD: one per question, the paragraph that holds the answer;
a retrieved chunk *is* that passage when it comes from that paragraph (overlaps its span in the
article) and contains the whole answer span. BEIR: every document with a positive qrel; any chunk
of it counts. A passage is counted once, at the rank of its first chunk; ranks are chunk ranks,
as the backend sees them.
"""
from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import InputError
from index.loaders import load_file, make_article
from index.squad import SquadQuestion, read_squad
from index.types import Article, Chunk
from rag.types import MODES

METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "article_hit@5")


@dataclass(frozen=True)
class Gold:
    """A relevant passage: chunks of ``article_id`` overlapping [start, end) and holding ``answer`` count."""

    key: str
    article_id: str
    start: int = 0
    end: int = sys.maxsize
    answer: tuple[int, int] | None = None  # (start, end) in the article text

    def matches(self, chunk: Chunk) -> bool:
        """True when ``chunk`` is this passage."""
        if chunk.article_id != self.article_id or chunk.end <= self.start or chunk.start >= self.end:
            return False
        return self.answer is None or (chunk.start <= self.answer[0] and chunk.end >= self.answer[1])


@dataclass(frozen=True)
class EvalQuery:
    """A question and its relevant passages."""

    id: str
    text: str
    gold: tuple[Gold, ...]


@dataclass
class RetrievalSet:
    """Articles to index and the questions to ask about them."""

    name: str
    articles: list[Article]
    queries: list[EvalQuery]
    skipped: int = 0  # questions whose answer span could not be found in the text
    notes: list[str] = field(default_factory=list)


def load_eval_set(path: str | Path, limit: int | None = None) -> RetrievalSet:
    """A SQuAD JSON file or a BEIR folder (corpus.jsonl, queries.jsonl, qrels/*.tsv)."""
    path = Path(path)
    if path.is_dir():
        found = load_beir(path)
    elif path.is_file():
        found = load_squad(path)
    else:
        raise InputError(f"{path}: no such file or folder; give a SQuAD .json file or a BEIR folder")
    if limit:
        keep = {a.id for a in found.articles[:limit]}
        found.articles = found.articles[:limit]
        found.queries = [q for q in found.queries if all(g.article_id in keep for g in q.gold)]
    return found


def load_squad(path: Path) -> RetrievalSet:
    """The articles as ``rag index`` loads them (each title an article) and one gold passage per question."""
    articles = load_file(path.resolve())
    queries, skipped = [], 0
    for article, entry in zip(articles, read_squad(path)):
        offset = 0
        for paragraph in entry.paragraphs:
            context = paragraph.context
            stripped, lead = context.strip(), len(context) - len(context.lstrip())
            for qa in paragraph.questions:
                answer = _answer_span(offset, stripped, qa, lead)
                if answer is None or not qa.question.strip():
                    skipped += 1
                    continue
                gold = Gold(f"{article.id}@{offset}", article.id, offset, offset + len(stripped), answer)
                queries.append(EvalQuery(qa.id or str(len(queries)), qa.question.strip(), (gold,)))
            offset += len(stripped) + 2  # paragraphs are joined by a blank line (SquadArticle.text)
    return RetrievalSet(path.stem, articles, queries, skipped)


def _answer_span(offset: int, paragraph: str, qa: SquadQuestion, lead: int) -> tuple[int, int] | None:
    """The answer's span in the article text, from answer_start, or else its nearest occurrence."""
    if not qa.answer.strip():
        return None
    answer, start = qa.answer.strip(), max(qa.answer_start, 0) - lead
    if paragraph[start:start + len(answer)] != answer:
        found = [m.start() for m in re.finditer(re.escape(answer), paragraph)]
        if not found:
            return None
        start = min(found, key=lambda s: abs(s - start))
    return offset + start, offset + start + len(answer)


def load_beir(folder: Path) -> RetrievalSet:
    """A BEIR dataset: every corpus document an article; qrels from qrels/test.tsv (or the only tsv)."""
    corpus = _jsonl(folder / "corpus.jsonl")
    ids, articles = {}, []
    for n, doc in enumerate(corpus):
        safe = re.sub(r"[^A-Za-z0-9._:-]", "-", str(doc["_id"]))[:190].lstrip("._:-") or "doc"
        ids[str(doc["_id"])] = safe if safe not in ids.values() else f"{safe}-{n}"
        articles.append(make_article({"id": ids[str(doc["_id"])], "title": doc.get("title", "")},
                                     doc.get("text", ""), folder / "corpus.jsonl"))
    texts = {str(q["_id"]): q["text"] for q in _jsonl(folder / "queries.jsonl")}
    relevant: dict[str, list[Gold]] = {}
    for query_id, doc_id, score in _qrels(folder):
        if score > 0 and doc_id in ids and query_id in texts:
            relevant.setdefault(query_id, []).append(Gold(doc_id, ids[doc_id]))
    queries = [EvalQuery(q, texts[q], tuple(g)) for q, g in relevant.items()]
    return RetrievalSet(folder.name, articles, queries)


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path}: missing; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _qrels(folder: Path) -> list[tuple[str, str, int]]:
    candidates = [folder / "qrels" / "test.tsv", *sorted((folder / "qrels").glob("*.tsv"))]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise InputError(f"{folder}/qrels: no .tsv file; expected qrels/test.tsv (query-id, corpus-id, score)")
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r[0], r[1], int(float(r[2]))) for r in rows
            if len(r) >= 3 and r[2].strip().lstrip("-").replace(".", "").isdigit()]


def query_metrics(chunks: Sequence[Chunk], query: EvalQuery) -> dict[str, float]:
    """BEIR metrics of one ranked list of chunks (binary relevance, each passage counted once)."""
    ranks: dict[str, int] = {}
    for rank, chunk in enumerate(chunks, 1):
        for gold in query.gold:
            if gold.key not in ranks and gold.matches(chunk):
                ranks[gold.key] = rank
    n = len({g.key for g in query.gold})
    found = sorted(ranks.values())
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(n, 10) + 1))
    articles = {g.article_id for g in query.gold}
    return {
        "recall@1": sum(r <= 1 for r in found) / n,
        "recall@5": sum(r <= 5 for r in found) / n,
        "recall@10": sum(r <= 10 for r in found) / n,
        "mrr@10": 1 / found[0] if found and found[0] <= 10 else 0.0,
        "ndcg@10": sum(1 / math.log2(r + 1) for r in found if r <= 10) / ideal,
        "article_hit@5": float(any(c.article_id in articles for c in chunks[:5])),
    }


def build_index(eval_set: RetrievalSet, settings, embedder, index_dir: Path):
    """Index the set's articles in ``index_dir`` (incrementally: a kept folder is reused); (data, seconds)."""
    from index.build import update_index
    from index.store import IndexStore
    from rag.service import make_chunker

    store = IndexStore(index_dir)
    started = time.perf_counter()
    data, report = update_index(store, embedder, make_chunker(settings), eval_set.articles,
                                prune_under=None)
    return data, round(time.perf_counter() - started, 2), report


def evaluate(retrieval, queries: Sequence[EvalQuery], vectors: np.ndarray, modes: Sequence[str],
             k: int = 10) -> dict[str, dict]:
    """Mean metrics and search speed per mode, the query vectors given (embedded once for all modes)."""
    results = {}
    for mode in modes:
        totals, seconds = dict.fromkeys(METRICS, 0.0), 0.0
        for query, vector in zip(queries, vectors):
            started = time.perf_counter()
            hits = retrieval.search(query.text, vector, k, mode)
            seconds += time.perf_counter() - started
            for name, value in query_metrics([h.chunk for h in hits], query).items():
                totals[name] += value
        n = max(len(queries), 1)
        results[mode] = {**{m: round(v / n, 4) for m, v in totals.items()}, "search_ms": round(1000 * seconds / n, 2)}
    return results


def run(path: str | Path, settings, modes: Sequence[str] = MODES, index_dir: str | Path | None = None,
        limit: int | None = None, embedder=None) -> dict:
    """Index the set, embed its questions once, evaluate every mode; the report as a dict."""
    from rag.retriever import Retrieval, RetrievalConfig
    from rag.service import make_embedder

    eval_set = load_eval_set(path, limit)
    if not eval_set.queries:
        raise InputError(f"{path}: no questions with a findable answer or qrel; nothing to evaluate")
    embedder = embedder or make_embedder(settings, progress=True)
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        data, build_s, report = build_index(eval_set, settings, embedder, Path(index_dir or tmp))
        retrieval = Retrieval(data, embedder, RetrievalConfig.of(settings))
        started = time.perf_counter()
        vectors = embedder.embed([q.text for q in eval_set.queries], kind="query")
        embed_ms = 1000 * (time.perf_counter() - started) / len(eval_set.queries)
        results = evaluate(retrieval, eval_set.queries, vectors, modes)
    for row in results.values():
        row["embed_ms"] = round(embed_ms, 2)
        row["queries_per_s"] = round(1000 / (row["search_ms"] + embed_ms), 1)
    return {"set": eval_set.name, "articles": len(eval_set.articles), "chunks": len(data.chunks),
            "questions": len(eval_set.queries), "skipped": eval_set.skipped, "model": embedder.name,
            "chunker": data.manifest.get("chunker"), "index_build_s": build_s,
            "chunks_embedded": report.chunks_embedded, "settings": _retrieval_settings(settings), "modes": results}


def _retrieval_settings(settings) -> dict:
    names = ("fusion", "fusion_dense_weight", "rrf_k", "fusion_candidates", "rerank_model", "mmr_lambda")
    return {n: getattr(settings, n) for n in names}


def format_report(report: dict) -> str:
    """The report as a Markdown table, with what was measured above it."""
    lines = [f"{report['set']}: {report['articles']} articles, {report['chunks']} chunks, {report['questions']} "
             f"questions ({report['skipped']} skipped); model {report['model']}; chunker {report['chunker']}",
             f"index built in {report['index_build_s']} s ({report['chunks_embedded']} chunks embedded); "
             f"retrieval {report['settings']}", "",
             "| mode | " + " | ".join(METRICS) + " | queries/s |", "|---" * (len(METRICS) + 2) + "|"]
    for mode, row in report["modes"].items():
        cells = " | ".join(f"{row[m]:.3f}" for m in METRICS)
        lines.append(f"| {mode} | {cells} | {row['queries_per_s']:.0f} |")
    return "\n".join(lines)
