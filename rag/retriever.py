"""Dense retrieval over the loaded index, with optional metadata filters."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.embedder import Embedder
from index.store import IndexData
from rag.types import Hit


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to some articles, a date range (inclusive, ISO dates) or a language."""

    article_ids: tuple[str, ...] = ()
    date_from: str = ""
    date_to: str = ""
    language: str = ""

    def __bool__(self) -> bool:
        return bool(self.article_ids or self.date_from or self.date_to or self.language)

    def mask(self, data: IndexData) -> np.ndarray:
        """Which chunk positions pass the filters."""
        ids = set(self.article_ids)
        return np.fromiter(
            ((not ids or c.article_id in ids)
             and (not self.date_from or (c.date and c.date >= self.date_from))
             and (not self.date_to or (c.date and c.date <= self.date_to))
             and (not self.language or c.language == self.language) for c in data.chunks),
            dtype=bool, count=len(data.chunks),
        )


class DenseRetriever:
    """Embeds the question with the query prompt and searches the FAISS index."""

    def __init__(self, data: IndexData, embedder: Embedder):
        self.data, self.embedder = data, embedder

    def embed_query(self, question: str) -> np.ndarray:
        """The question's vector."""
        return self.embedder.embed([question], kind="query")[0]

    def search(self, query_vector: np.ndarray, k: int, filters: Filters | None = None) -> list[Hit]:
        """The ``k`` best chunks for a query vector, best first."""
        allowed = filters.mask(self.data) if filters else None
        return [Hit(self.data.chunks[i], score, {"dense": score})
                for i, score in self.data.search(query_vector, k, allowed)]
