"""The one sentence-vector cache in front of the embedder: same vectors, bounded, whole under threads."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from index.embedder import CachedEmbedder, FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    """A FakeEmbedder that counts the texts it was asked to embed."""

    def __init__(self, dim):
        super().__init__(dim)
        self.seen = []

    def embed(self, texts, kind="passage"):
        self.seen += list(texts)
        return super().embed(texts, kind)


def test_gives_the_wrapped_vectors_and_embeds_each_text_once():
    inner = CountingEmbedder(16)
    cached = CachedEmbedder(inner)
    texts = ["une phrase", "une autre", "une phrase"]
    first, again = cached.embed(texts), cached.embed(texts[:2])
    assert np.array_equal(first, FakeEmbedder(16).embed(texts))
    assert np.array_equal(again, first[:2])
    assert inner.seen == ["une phrase", "une autre"]
    cached.embed(["une phrase"], kind="query")
    assert inner.seen[-1] == "une phrase", "a query vector is not taken for a passage vector"


def test_stays_bounded_and_whole_under_concurrent_questions():
    cached = CachedEmbedder(FakeEmbedder(16), size=5)
    batches = [[f"phrase {i} {j}" for j in range(4)] for i in range(40)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(cached.embed, batches))
    assert all(r.shape == (4, 16) for r in results)
    assert all(np.array_equal(r, FakeEmbedder(16).embed(b)) for r, b in zip(results, batches))
    assert len(cached) <= 5


def test_empty_input_gives_an_empty_matrix():
    assert CachedEmbedder(FakeEmbedder(8)).embed([]).shape == (0, 8)
