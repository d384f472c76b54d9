"""Lexical retrieval: BM25 (bm25s) over language-aware analysed chunks, stored in the index version.

Analysis: words split on non-letters (elisions and hyphens too), lower-cased, the stop words of
the text's language dropped, Snowball-stemmed with PyStemmer in that language, then
accent-folded, so "élections", "Election" and "electoral" meet where French stemming allows.
A chunk is analysed in its article's language (metadata), a question in the language
detected from its words, falling back on the index's most common language.

The BM25 matrix is built with bm25s from token ids and saved as ``lexical.npz`` in the same
version folder as the FAISS file (``LexicalWriter`` is an ``extra_writers`` hook of
``update_index``), so the manifest's checksums cover it. On an update the analysis of every
unchanged chunk is reused and only the matrix is recomputed (document frequencies change
with every added or deleted chunk), as the FAISS structure is rebuilt from stored vectors.
"""
from __future__ import annotations

import functools
import io
import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.errors import IndexMismatchError
from common.text import LETTERS, STEMMERS, bm25_stop_words, detect_language, fold, stemmer
from index.types import Chunk

log = logging.getLogger("index")
FILENAME = "lexical.npz"
ANALYZER_VERSION = 1
K1, B, METHOD = 0.9, 0.4, "lucene"  # Anserini's defaults; on PIAF better than 1.2/0.75 and 1.5/0.75 (README)


def analyze(text: str, language: str) -> list[str]:
    """The BM25 terms of ``text``: content words, stemmed in ``language``, accents folded."""
    stop = bm25_stop_words(language)
    words = [w for w in LETTERS.findall(text.lower()) if w not in stop]
    return [_fold_term(s) for s in stemmer(language).stemWords(words)]


@functools.lru_cache(maxsize=1 << 18)
def _fold_term(term: str) -> str:
    return fold(term)  # terms repeat: caching makes folding nearly free


def document_text(chunk: Chunk) -> str:
    """What BM25 indexes for a chunk: its title, heading and text, as the embedder sees the title too."""
    return "\n".join(part for part in (chunk.title, chunk.heading, chunk.text) if part)


def _key(chunk: Chunk) -> str:
    """What the analysis of a chunk depends on; equal keys reuse the stored terms."""
    return f"{chunk.id}\x1f{chunk.language}\x1f{chunk.title}\x1f{chunk.heading}"


class LexicalIndex:
    """BM25 over the chunks of one index version; document ``i`` is chunk position ``i``."""

    def __init__(self, keys: list[str], vocab: list[str], doc_ids: list[np.ndarray], language: str):
        self.keys, self.vocab, self.doc_ids, self.language = keys, vocab, doc_ids, language
        self.term_id = {term: i for i, term in enumerate(vocab)}
        self._bm25 = _bm25(vocab, doc_ids)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], reuse: LexicalIndex | None = None) -> LexicalIndex:
        """The index of ``chunks``; chunks already analysed in ``reuse`` are not analysed again."""
        term_id = dict(reuse.term_id) if reuse else {}  # old ids stay valid: reused documents keep theirs
        old = {k: i for i, k in enumerate(reuse.keys)} if reuse else {}
        doc_ids = []
        for chunk in chunks:
            position = old.get(_key(chunk))
            if position is not None:
                doc_ids.append(reuse.doc_ids[position])
                continue
            terms = analyze(document_text(chunk), chunk.language)
            doc_ids.append(np.array([term_id.setdefault(t, len(term_id)) for t in terms], dtype=np.int32))
        vocab, doc_ids = _compact(list(term_id), doc_ids)
        languages = Counter(c.language for c in chunks if c.language in STEMMERS)
        language = languages.most_common(1)[0][0] if languages else "fr"
        return cls([_key(c) for c in chunks], vocab, doc_ids, language)

    def scores(self, question: str, language: str = "") -> np.ndarray:
        """BM25 score of every chunk for ``question`` (zero where no term matches)."""
        language = language or detect_language(question, default=self.language)
        ids = sorted({self.term_id[t] for t in analyze(question, language) if t in self.term_id})
        if not ids or not len(self.keys):
            return np.zeros(len(self.keys), dtype=np.float32)
        return self._bm25.get_scores_from_ids(ids)

    def search(self, question: str, k: int, allowed: np.ndarray | None = None,
               language: str = "") -> list[tuple[int, float]]:
        """The ``k`` best (chunk position, BM25 score) pairs with a positive score, best first."""
        return top_k(self.scores(question, language), k, allowed)

    def to_bytes(self) -> bytes:
        """The index as the bytes of ``lexical.npz``."""
        lengths = np.array([len(d) for d in self.doc_ids], dtype=np.int64)
        meta = {"version": ANALYZER_VERSION, "k1": K1, "b": B, "method": METHOD, "language": self.language,
                "keys": self.keys, "vocab": self.vocab}
        buffer = io.BytesIO()
        flat = np.concatenate(self.doc_ids) if self.doc_ids else np.zeros(0, dtype=np.int32)
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8),
                 terms=flat.astype(np.int32), lengths=lengths, **self._bm25.scores_arrays())
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> LexicalIndex:
        """The index saved at ``path``; IndexMismatchError if it was made by another analyser version."""
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes().decode())
            if ((meta.get("version"), meta.get("k1"), meta.get("b"), meta.get("method"))
                    != (ANALYZER_VERSION, K1, B, METHOD)):
                raise IndexMismatchError(f"{path} was made with other lexical settings; "
                                         "rebuild it with `rag index --rebuild corpus/`")
            offsets = np.concatenate([[0], np.cumsum(npz["lengths"])])
            terms = npz["terms"]
            doc_ids = [terms[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
            arrays = {name: npz[name] for name in ("data", "indices", "indptr")}
        index = cls.__new__(cls)
        index.keys, index.vocab, index.doc_ids, index.language = meta["keys"], meta["vocab"], doc_ids, meta["language"]
        index.term_id = {term: i for i, term in enumerate(index.vocab)}
        index._bm25 = _BM25(arrays, len(doc_ids))
        return index

    def matches(self, chunks: Sequence[Chunk]) -> bool:
        """True when this index was built for exactly these chunks, in this order."""
        return len(chunks) == len(self.keys) and all(_key(c) == k for c, k in zip(chunks, self.keys))


def _compact(vocab: list[str], doc_ids: list[np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    """Drop terms no document uses any more (after deletions), renumbering the rest in order."""
    flat = np.concatenate(doc_ids) if doc_ids else np.zeros(0, dtype=np.int32)
    used = np.unique(flat)
    if len(used) == len(vocab):
        return vocab, doc_ids
    remap = np.full(len(vocab), -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    return [vocab[i] for i in used], [remap[d] for d in doc_ids]


class _BM25:
    """The BM25 score matrix (terms x documents, CSC arrays as bm25s makes them) and its scoring."""

    def __init__(self, arrays: dict[str, np.ndarray], n_docs: int):
        self.arrays, self.n_docs = arrays, n_docs

    def scores_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save."""
        return self.arrays

    def get_scores_from_ids(self, ids: list[int]) -> np.ndarray:
        """Sum of the BM25 contributions of the term ids, per document."""
        data, indices, indptr = self.arrays["data"], self.arrays["indices"], self.arrays["indptr"]
        spans = [(indptr[i], indptr[i + 1]) for i in ids]
        docs = np.concatenate([indices[a:b] for a, b in spans])
        weights = np.concatenate([data[a:b] for a, b in spans])
        return np.bincount(docs, weights=weights, minlength=self.n_docs).astype(np.float32)


def _bm25(vocab: list[str], doc_ids: list[np.ndarray]) -> _BM25:
    """The BM25 matrix of tokenised documents, computed by bm25s."""
    if not doc_ids or not vocab:
        empty = {"data": np.zeros(0, np.float32), "indices": np.zeros(0, np.int32),
                 "indptr": np.zeros(len(vocab) + 1, np.int64)}
        return _BM25(empty, len(doc_ids))
    import bm25s

    model = bm25s.BM25(k1=K1, b=B, method=METHOD)
    scores = model.build_index_from_ids(list(range(len(vocab))), [d.tolist() for d in doc_ids], show_progress=False)
    arrays = {"data": np.asarray(scores["data"], np.float32), "indices": np.asarray(scores["indices"], np.int32),
              "indptr": np.asarray(scores["indptr"], np.int64)}
    return _BM25(arrays, len(doc_ids))


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The ``k`` best positive scores as (position, score), best first, ties by position."""
    if allowed is not None:
        scores = np.where(allowed, scores, 0)
    positive = np.flatnonzero(scores > 0)
    if k <= 0 or not len(positive):
        return []
    if len(positive) > k:
        keep = np.argpartition(-scores[positive], k - 1)[:k]
        positive = positive[keep]
    order = np.lexsort((positive, -scores[positive]))
    return [(int(positive[i]), float(scores[positive[i]])) for i in order]


class LexicalWriter:
    """An ``extra_writers`` hook for ``update_index``: the BM25 index of the version being written.

    Called under the store's lock before the new version goes live, it reuses the analysis stored
    in the live version for every chunk that is still there.
    """

    def __init__(self, store):
        self.store = store
        self.built: LexicalIndex | None = None

    def __call__(self, data) -> dict[str, bytes]:
        """``{"lexical.npz": bytes}`` for the new version's chunks."""
        reuse = _try_load(self.store.current_path() / FILENAME) if self.store.exists() else None
        self.built = LexicalIndex.build(data.chunks, reuse)
        return {FILENAME: self.built.to_bytes()}


def _try_load(path: Path) -> LexicalIndex | None:
    try:
        return LexicalIndex.from_file(path)
    except (FileNotFoundError, IndexMismatchError):
        return None


def load_lexical(data) -> LexicalIndex:
    """The lexical index of a loaded version, from its folder; built in memory when absent or stale.

    An index written before lexical search existed has no ``lexical.npz``; it is built here and
    a note says how to store it (any later ``rag index`` writes it too).
    """
    path = Path(data.path) / FILENAME if getattr(data, "path", None) else None
    index = _try_load(path) if path else None
    if index is not None and index.matches(data.chunks):
        return index
    if path is not None:
        log.warning("%s missing or stale; BM25 built in memory (`rag index --rebuild corpus/` stores it)", path)
    return LexicalIndex.build(data.chunks)
