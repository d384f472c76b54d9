"""Retrieval over the loaded index: dense, lexical (BM25) or hybrid, then optional rerank and MMR.

Every hit keeps its component scores in ``Hit.scores`` ("dense" cosine, "lexical" BM25,
"fused", "rerank"); ``Hit.score`` is the one that ranked it. The dense cosine of each returned
hit is always filled in (one dot product with the stored vector), because abstention is decided
on it: ``evidence(hits)`` is the best dense cosine among the hits, a calibrated scale whatever the
mode (fusion scores are ranks, not evidence).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from common.errors import ModelError, UnknownNameError
from common.text import fold
from index.duplicates import containment, shingles
from index.embedder import Embedder
from index.store import IndexData
from rag.types import MODES, Hit

COPIES_DEPTH = 3  # with wire copies in the index, this many times the passages are fetched before collapsing
COPY_OVERLAP = 0.5  # share of a copy's passage shingles found in a kept passage of its story: the same text


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to some articles (or all but some), a date range (inclusive, ISO dates), a language
    or some sources (outlets, agencies: compared case- and accent-blind)."""

    article_ids: tuple[str, ...] = ()
    date_from: str = ""
    date_to: str = ""
    language: str = ""
    exclude_article_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.article_ids or self.date_from or self.date_to or self.language or self.exclude_article_ids
                    or self.sources)

    def mask(self, data: IndexData) -> np.ndarray:
        """Which chunk positions pass the filters."""
        ids, excluded = set(self.article_ids), set(self.exclude_article_ids)
        if self.sources:  # chunks do not carry their source: the articles of those sources are allowed
            wanted = {fold(s).strip() for s in self.sources}
            by_source = {a.id for a in data.articles if fold(a.source).strip() in wanted}
            ids = ids & by_source if ids else by_source or {""}
        chunks, allowed = data.chunks, np.ones(len(data.chunks), dtype=bool)
        if ids or excluded:
            allowed &= chunks.column("article_id").where(lambda a: (not ids or a in ids) and a not in excluded)
        if self.date_from or self.date_to:
            allowed &= chunks.column("date").where(
                lambda d: bool(d) and (not self.date_from or d >= self.date_from[:10])
                and (not self.date_to or d[:10] <= self.date_to[:10]))
        if self.language:
            allowed &= chunks.column("language").where(lambda language: language == self.language)
        return allowed


@dataclass(frozen=True)
class RetrievalConfig:
    """How to retrieve: the mode, the fusion and its weight, and the optional post-processing."""

    mode: str = "hybrid"
    fusion: str = "weighted"
    dense_weight: float = 0.5  # share of the dense side in the fusion; 1 - this goes to BM25
    rrf_k: int = 60
    candidates: int = 50  # depth of each list before fusion
    rerank_model: str = ""
    rerank_depth: int = 20
    mmr_lambda: float = 1.0  # 1 = no MMR

    @classmethod
    def of(cls, settings) -> RetrievalConfig:
        """The configuration the settings describe."""
        return cls(settings.retrieval_mode, settings.fusion, settings.fusion_dense_weight, settings.rrf_k,
                   settings.fusion_candidates, settings.rerank_model, settings.rerank_depth, settings.mmr_lambda)


@dataclass(frozen=True)
class Candidates:
    """The union of the dense and lexical lists: exact scores on both sides, 1-based ranks (0: not listed)."""

    positions: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    dense_rank: np.ndarray
    lexical_rank: np.ndarray


def rrf(c: Candidates, dense_weight: float, rrf_k: int) -> np.ndarray:
    """Weighted reciprocal rank fusion: sum of weight / (rrf_k + rank) over the lists that hold a chunk."""
    dense = np.where(c.dense_rank > 0, dense_weight / (rrf_k + c.dense_rank), 0.0)
    lexical = np.where(c.lexical_rank > 0, (1 - dense_weight) / (rrf_k + c.lexical_rank), 0.0)
    return dense + lexical


def weighted(c: Candidates, dense_weight: float, rrf_k: int) -> np.ndarray:
    """Weighted sum of the two scores, each min-max scaled over the candidates."""
    return dense_weight * _minmax(c.dense) + (1 - dense_weight) * _minmax(c.lexical)


def _minmax(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


FUSIONS: dict[str, Callable[[Candidates, float, int], np.ndarray]] = {"rrf": rrf, "weighted": weighted}


class Reranker(Protocol):
    """Scores (question, passage) pairs; higher is more relevant."""

    def score(self, question: str, passages: list[str]) -> np.ndarray: ...


class CrossEncoderReranker:
    """Any sentence-transformers CrossEncoder, by name or path (loaded offline if the hub is off)."""

    def __init__(self, name: str):
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(name, device="cpu")
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load rerank model {name!r} ({exc}); give a CrossEncoder folder or "
                             "name in RAG_RERANK_MODEL, or leave it empty to rerank nothing") from exc

    def score(self, question: str, passages: list[str]) -> np.ndarray:
        """One relevance score per passage."""
        return np.asarray(self.model.predict([(question, p) for p in passages], show_progress_bar=False),
                          dtype=np.float32)


@functools.lru_cache(maxsize=2)
def load_reranker(name: str) -> Reranker:
    """The reranker for a CrossEncoder name or path, loaded once per process."""
    return CrossEncoderReranker(name)


class Retrieval:
    """Every retrieval mode over one index version; the BM25 index is loaded on first need."""

    def __init__(self, data: IndexData, embedder: Embedder, config: RetrievalConfig = RetrievalConfig(),
                 lexical=None, reranker: Reranker | None = None):
        self.data, self.embedder, self.config = data, embedder, config
        self._lexical, self.reranker = lexical, reranker
        if config.mode not in MODES:
            raise UnknownNameError("retrieval mode", config.mode, list(MODES))
        if config.fusion not in FUSIONS:
            raise UnknownNameError("fusion", config.fusion, list(FUSIONS))

    @functools.cached_property
    def lexical(self):
        """The version's BM25 index (read from its folder, or built in memory)."""
        from index.lexical import load_lexical

        return self._lexical if self._lexical is not None else load_lexical(self.data)

    def embed(self, question: str) -> np.ndarray:
        """The question's vector (needed in every mode: abstention reads the dense cosine)."""
        return self.embedder.embed([question], kind="query")[0]

    def search(self, question: str, vector: np.ndarray, k: int, mode: str | None = None,
               filters: Filters | None = None) -> list[Hit]:
        """The ``k`` best chunks for the question in ``mode`` (default from the config), best first."""
        mode = self.config.mode if mode is None else mode
        if mode not in MODES:
            raise UnknownNameError("retrieval mode", mode, list(MODES))
        allowed = filters.mask(self.data) if filters else None
        post = bool(self.reranker) or self.config.mmr_lambda < 1
        depth = max(k, self.config.rerank_depth) if post else k
        copies = self.data.has_copies
        hits = _SEARCHES[mode](self, question, vector, depth * COPIES_DEPTH if copies else depth, allowed)
        if copies:
            hits = collapse_copies(hits, self.data)[:depth]
        if self.reranker is not None:
            hits = rerank(self.reranker, question, hits)
        if self.config.mmr_lambda < 1:
            hits = mmr(hits, self.data.vectors[[self.position[h.chunk.id] for h in hits]], self.config.mmr_lambda, k)
        return [annotate(h, self.data) for h in hits[:k]]

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Chunk id -> position in the index."""
        return {chunk_id: i for i, chunk_id in enumerate(self.data.chunks.ids)}

    def cosines(self, positions, vector: np.ndarray) -> np.ndarray:
        """Exact dense cosines of chunk positions with the question vector."""
        positions = np.asarray(positions, dtype=np.int64)
        return self.data.vectors[positions] @ vector if len(positions) else np.zeros(0, np.float32)


def _dense(r: Retrieval, question: str, vector: np.ndarray, k: int, allowed) -> list[Hit]:
    return [Hit(r.data.chunks[i], s, {"dense": s}) for i, s in _dense_search(r.data, vector, k, allowed)]


def _dense_search(data: IndexData, vector: np.ndarray, k: int, allowed) -> list[tuple[int, float]]:
    """FAISS's top ``k``, equal scores in position order (FAISS leaves their order open)."""
    return sorted(data.search(vector, k, allowed), key=lambda found: (-found[1], found[0]))


def _lexical(r: Retrieval, question: str, vector: np.ndarray, k: int, allowed) -> list[Hit]:
    found = r.lexical.search(question, k, allowed)
    cosines = r.cosines([i for i, _ in found], vector)
    return [Hit(r.data.chunks[i], s, {"dense": float(c), "lexical": s}) for (i, s), c in zip(found, cosines)]


def _hybrid(r: Retrieval, question: str, vector: np.ndarray, k: int, allowed) -> list[Hit]:
    depth = max(k, r.config.candidates)
    lexical_scores = r.lexical.scores(question)
    from index.lexical import top_k

    c = candidates(_dense_search(r.data, vector, depth, allowed), top_k(lexical_scores, depth, allowed),
                   lambda p: r.cosines(p, vector), lambda p: lexical_scores[p])
    fused = FUSIONS[r.config.fusion](c, r.config.dense_weight, r.config.rrf_k)
    order = np.lexsort((c.positions, -fused))[:k]
    return [Hit(r.data.chunks[c.positions[i]], float(fused[i]),
                {"dense": float(c.dense[i]), "lexical": float(c.lexical[i]), "fused": float(fused[i])}) for i in order]


def candidates(dense: list[tuple[int, float]], lexical: list[tuple[int, float]],
               dense_of: Callable, lexical_of: Callable) -> Candidates:
    """The union of two ranked lists, with exact component scores from ``dense_of`` / ``lexical_of``."""
    positions = np.array(sorted({i for i, _ in dense} | {i for i, _ in lexical}), dtype=np.int64)
    slot = {int(p): n for n, p in enumerate(positions)}
    ranks = np.zeros((2, len(positions)), dtype=np.int64)
    for row, ranking in enumerate((dense, lexical)):
        for rank, (i, _) in enumerate(ranking, 1):
            ranks[row, slot[i]] = rank
    return Candidates(positions, np.asarray(dense_of(positions), np.float64),
                      np.asarray(lexical_of(positions), np.float64), ranks[0], ranks[1])


_SEARCHES: dict[str, Callable[..., list[Hit]]] = {"dense": _dense, "lexical": _lexical, "hybrid": _hybrid}


def collapse_copies(hits: list[Hit], data: IndexData) -> list[Hit]:
    """One passage per story: a hit from a wire copy (index/duplicates.py) of an article already kept is
    dropped when its text is mostly the kept passage's (``COPY_OVERLAP`` of its word shingles), so five
    copies never fill five passages; a copy's passage that says something the kept ones do not stays."""
    kept: list[Hit] = []
    seen: dict[str, list[tuple[str, set]]] = {}  # story id -> (article id, shingles) of the kept hits
    for hit in hits:
        article_id = hit.chunk.article_id
        record = data.article_by_id.get(article_id)
        if record is None or not data.copies(article_id):
            kept.append(hit)
            continue
        words = shingles(hit.chunk.text)
        story = seen.setdefault(record.story_id, [])
        if any(other != article_id and containment(words, said) >= COPY_OVERLAP for other, said in story):
            continue
        story.append((article_id, words))
        kept.append(hit)
    return kept


def annotate(hit: Hit, data: IndexData) -> Hit:
    """The hit with its article's source and the story's other versions."""
    record = data.article_by_id.get(hit.chunk.article_id)
    if record is None:
        return hit
    copies = tuple({"article_id": a.id, "title": a.title, "source": a.source, "date": a.date, "url": a.url}
                   for a in data.copies(record.id))
    return replace(hit, source=record.source, copies=copies)


def rerank(reranker: Reranker, question: str, hits: list[Hit]) -> list[Hit]:
    """The hits reordered by the reranker's scores, which become ``Hit.score`` (and ``scores["rerank"]``)."""
    if not hits:
        return hits
    from index.build import passage_text

    scores = reranker.score(question, [passage_text(h.chunk) for h in hits])
    order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
    return [Hit(hits[i].chunk, float(scores[i]), {**hits[i].scores, "rerank": float(scores[i])}) for i in order]


def mmr(hits: list[Hit], vectors: np.ndarray, lam: float, k: int) -> list[Hit]:
    """Maximal marginal relevance: ``lam`` * relevance - (1 - ``lam``) * likeness to the passages already kept.

    Relevance is each hit's score min-max scaled over the hits; likeness is the cosine of the hits'
    chunk vectors (``vectors``, one row per hit).
    """
    if len(hits) <= 1:
        return hits
    relevance, likeness = _minmax(np.array([h.score for h in hits])), vectors @ vectors.T
    chosen, left = [0], list(range(1, len(hits)))
    while left and len(chosen) < k:
        gains = [lam * relevance[i] - (1 - lam) * likeness[i, chosen].max() for i in left]
        chosen.append(left.pop(int(np.argmax(gains))))
    return [hits[i] for i in chosen]


def evidence(hits) -> float:
    """How strongly the passages support answering: the best dense cosine among them (-inf if none)."""
    return max((h.scores.get("dense", h.score) for h in hits), default=float("-inf"))
