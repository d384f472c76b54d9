"""Lexical retrieval: BM25 (bm25s) over language-aware analysed chunks, stored in the index version.

Analysis: words split on non-letters (elisions and hyphens too), lower-cased, the stop words of
the text's language dropped, Snowball-stemmed with PyStemmer in that language, then
accent-folded, so "élections", "Election" and "electoral" meet where French stemming allows.
A chunk is analysed in its article's language (metadata), a question in the language
detected from its words, falling back on the index's most common language.

The BM25 matrix (bm25s's "lucene" weights, computed with numpy and checked against bm25s in the tests)
is saved as ``lexical.npz`` in the same segment as the FAISS file (``index.segment``), so the manifest's
checksums cover it. A segment written beside a large one (an incremental write) is weighted with the
large one's document frequencies and lengths (``LexicalStats``), so its scores compare with its; when
segments are merged the analysis of every chunk is reused and only the matrix is recomputed.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import IndexMismatchError
from common.text import LETTERS, STEMMERS, bm25_stop_words, detect_language, fold, stemmer
from index.types import Chunk, analysis_key, keys_digest

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
    return analysis_key(chunk.id, chunk.language, chunk.title, chunk.heading)


class LexicalIndex:
    """BM25 over the chunks of one index version; document ``i`` is chunk position ``i``."""

    def __init__(self, keys: list[str], vocab: list[str], doc_ids: list[np.ndarray], language: str,
                 stats: LexicalStats | None = None):
        self._keys, self.vocab, self.doc_ids, self.language = keys, vocab, doc_ids, language
        self.keys_sha1 = ""
        self.term_id = {term: i for i, term in enumerate(vocab)}
        self._bm25 = _bm25_with(vocab, doc_ids, stats or LexicalStats(0, 0, {}))
        self._stats: LexicalStats | None = None

    def __len__(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], reuse: Iterable[LexicalIndex] = (),
              stats: LexicalStats | None = None) -> LexicalIndex:
        """The index of ``chunks``; chunks already analysed in one of ``reuse`` are not analysed again.

        With ``stats`` (another index's, see ``LexicalIndex.stats``) the BM25 weights use the document
        frequencies and lengths of both, so that a small index searched beside a large one scores on the
        large one's scale (bm25s computes weights from the documents it is given only)."""
        term_id: dict[str, int] = {}
        old: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for index in reuse:  # each index's term ids mapped once to the new ones, then whole documents at a time
            remap = np.array([term_id.setdefault(t, len(term_id)) for t in index.vocab], dtype=np.int32)
            old.update({k: (remap, d) for k, d in zip(index.keys, index.doc_ids)})
        doc_ids = []
        for chunk in chunks:
            found = old.get(_key(chunk))
            if found is not None:
                doc_ids.append(found[0][found[1]])
                continue
            terms = analyze(document_text(chunk), chunk.language)
            doc_ids.append(np.array([term_id.setdefault(t, len(term_id)) for t in terms], dtype=np.int32))
        vocab, doc_ids = _compact(list(term_id), doc_ids)
        languages = Counter(c.language for c in chunks if c.language in STEMMERS)
        language = languages.most_common(1)[0][0] if languages else "fr"
        return cls([_key(c) for c in chunks], vocab, doc_ids, language, stats)

    def stats(self) -> LexicalStats:
        """This index's document count, total length and document frequencies, for ``build(stats=...)``."""
        if self._stats is None:
            lengths = int(_lengths(self.doc_ids).sum())
            self._stats = LexicalStats(len(self.doc_ids), lengths, _DocFreq(self.term_id, self._bm25.arrays["indptr"]))
        return self._stats

    def scores(self, question: str, language: str = "") -> np.ndarray:
        """BM25 score of every chunk for ``question`` (zero where no term matches)."""
        language = language or detect_language(question, default=self.language)
        ids = sorted({self.term_id[t] for t in analyze(question, language) if t in self.term_id})
        if not ids or not len(self):
            return np.zeros(len(self), dtype=np.float32)
        return self._bm25.get_scores_from_ids(ids)

    def search(self, question: str, k: int, allowed: np.ndarray | None = None,
               language: str = "") -> list[tuple[int, float]]:
        """The ``k`` best (chunk position, BM25 score) pairs with a positive score, best first."""
        return top_k(self.scores(question, language), k, allowed)

    def to_bytes(self) -> bytes:
        """The index as the bytes of ``lexical.npz``."""
        lengths = _lengths(self.doc_ids)
        meta = {"version": ANALYZER_VERSION, "k1": K1, "b": B, "method": METHOD, "language": self.language,
                "vocab": self.vocab, "keys_sha1": keys_digest(self.keys)}
        buffer = io.BytesIO()
        flat = (self.doc_ids.terms if isinstance(self.doc_ids, _Documents) else np.concatenate(self.doc_ids)
                if len(self.doc_ids) else np.zeros(0, dtype=np.int32))
        np.savez(buffer, meta=_utf8(meta), keys=_utf8(self.keys), terms=flat.astype(np.int32), lengths=lengths,
                 **self._bm25.scores_arrays())
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> LexicalIndex:
        """The index saved at ``path``; IndexMismatchError if it was made by another analyser version.

        Its arrays are memory-mapped (``_members``): a search reads the columns of its terms only, so the
        memory a large index takes grows with what questions touch, not with its size; the chunks' keys
        are parsed when first needed (a write that reuses the analysis)."""
        arrays = _members(path)
        meta = json.loads(arrays["meta"].tobytes().decode())
        if ((meta.get("version"), meta.get("k1"), meta.get("b"), meta.get("method"))
                != (ANALYZER_VERSION, K1, B, METHOD)):
            raise IndexMismatchError(f"{path} was made with other lexical settings; "
                                     "rebuild it with `rag index --rebuild corpus/`")
        index = cls.__new__(cls)
        index._keys, index.vocab, index.language = meta.get("keys"), meta["vocab"], meta["language"]
        index._keys_member = arrays.get("keys")
        index.keys_sha1 = meta.get("keys_sha1", "")
        index.doc_ids = _Documents(arrays["terms"], arrays["lengths"])
        index.term_id = {term: i for i, term in enumerate(index.vocab)}
        index._bm25 = _BM25({name: arrays[name] for name in ("data", "indices", "indptr")}, len(index.doc_ids))
        index._stats = None
        return index

    @property
    def keys(self) -> list[str]:
        """Each chunk's analysis key (``index.types.analysis_key``), in order."""
        if self._keys is None:
            self._keys = json.loads(self._keys_member.tobytes().decode())
        return self._keys

    @staticmethod
    def stats_from_file(path: Path) -> LexicalStats:
        """The ``stats`` of the index saved at ``path``, without reading its documents (what a write that
        adds a segment beside it needs)."""
        arrays = _members(path)
        meta, lengths, indptr = json.loads(arrays["meta"].tobytes().decode()), arrays["lengths"], arrays["indptr"]
        return LexicalStats(len(lengths), int(lengths.sum()),
                            _DocFreq({t: i for i, t in enumerate(meta["vocab"])}, indptr))

    def matches(self, chunks: Sequence[Chunk]) -> bool:
        """True when this index was built for exactly these chunks, in this order."""
        if len(chunks) != len(self):
            return False
        digest = getattr(chunks, "key_digest", None)  # a ChunkTable: its keys' digest, no chunk parsed
        if digest is not None:
            return digest == (self.keys_sha1 or keys_digest(self.keys))
        return all(_key(c) == k for c, k in zip(chunks, self.keys))


def _compact(vocab: list[str], doc_ids: list[np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    """Drop terms no document uses any more (after deletions), renumbering the rest in order."""
    flat = np.concatenate(doc_ids) if doc_ids else np.zeros(0, dtype=np.int32)
    used = np.unique(flat)
    if len(used) == len(vocab):
        return vocab, doc_ids
    remap = np.full(len(vocab), -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    return [vocab[i] for i in used], [remap[d] for d in doc_ids]


def _lengths(doc_ids) -> np.ndarray:
    if isinstance(doc_ids, _Documents):
        return np.asarray(doc_ids.lengths, dtype=np.int64)
    return np.array([len(d) for d in doc_ids], dtype=np.int64)


def _utf8(value) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode(), dtype=np.uint8)


class _Documents(Sequence):
    """Each document's term ids: views into one flat array (a list of a million small arrays costs ~100 MB)."""

    def __init__(self, terms: np.ndarray, lengths: np.ndarray):
        self.terms, self.lengths = terms, lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.terms[self.offsets[i]:self.offsets[i + 1]]


def _members(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` written by ``np.savez`` (stored, not compressed), memory-mapped read-only
    where the member's bytes lie whole in the file (else read into memory)."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)  # the local file header: its name and extra field lengths are at 26 and 28
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(
                local[28:30], "little")
            fh.seek(start)
            header = (np.lib.format.read_array_header_1_0 if np.lib.format.read_magic(fh) == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = header(fh)
            if dtype.hasobject:
                raise IndexMismatchError(f"{path} holds Python objects; rebuild it with `rag index --rebuild corpus/`")
            count = int(np.prod(shape))
            arrays[name] = (np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                      order="F" if fortran else "C") if count else np.zeros(shape, dtype=dtype))
    return arrays


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


@dataclass(frozen=True)
class LexicalStats:
    """What BM25 weights depend on besides a document itself: the collection's size, length and frequencies."""

    n_docs: int
    total_length: int
    df: dict[str, int] | _DocFreq


class _DocFreq:
    """Document frequencies read off a BM25 matrix (its non-zeros per term), looked up term by term."""

    def __init__(self, term_id: dict[str, int], indptr: np.ndarray):
        self.term_id, self.indptr = term_id, indptr

    def get(self, term: str, default: int = 0) -> int:
        i = self.term_id.get(term)
        return default if i is None else int(self.indptr[i + 1] - self.indptr[i])


def _bm25_with(vocab: list[str], doc_ids: list[np.ndarray], stats: LexicalStats) -> _BM25:
    """The BM25 matrix of ``doc_ids`` with ``stats``'s collection counted in (bm25s's "lucene" weights:
    idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b dl / avgdl))), in the CSC arrays
    bm25s makes. Computed here with numpy rather than by bm25s: bm25s takes no outside statistics, and
    it needs every document as a Python list (measured on 100k chunks: 12.1 s and 862 MB peak for bm25s,
    1.4 s and 710 MB here, the same matrix); tests/test_lexical.py checks it against bm25s."""
    n_terms, n_docs = len(vocab), len(doc_ids)
    lengths = np.array([len(d) for d in doc_ids], dtype=np.float64)
    flat = np.concatenate(doc_ids).astype(np.int64) if n_docs else np.zeros(0, np.int64)
    docs = np.repeat(np.arange(n_docs, dtype=np.int64), lengths.astype(np.int64))
    pairs, tf = np.unique(flat * max(n_docs, 1) + docs, return_counts=True)  # (term, doc) sorted by term
    terms, docs = pairs // max(n_docs, 1), pairs % max(n_docs, 1)
    df = np.bincount(terms, minlength=n_terms) + np.array([stats.df.get(t, 0) for t in vocab], dtype=np.int64)
    total_docs = stats.n_docs + n_docs
    avgdl = (stats.total_length + lengths.sum()) / max(total_docs, 1)
    idf = np.log(1 + (total_docs - df + 0.5) / (df + 0.5))
    weights = idf[terms] * tf / (tf + K1 * (1 - B + B * lengths[docs] / max(avgdl, 1e-9)))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(terms, minlength=n_terms))]).astype(np.int64)
    return _BM25({"data": weights.astype(np.float32), "indices": docs.astype(np.int32), "indptr": indptr}, n_docs)


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


class SegmentedLexical:
    """BM25 over a version made of several segments: each segment's scores, its tombstoned chunks left out,
    side by side in the order of the version's live chunks (``IndexData.chunks``)."""

    def __init__(self, data):
        self.parts = [(segment.lexical, live) for segment, live in zip(data.segments, data.live_masks)]
        self.language = self.parts[0][0].language if self.parts else "fr"

    def __len__(self) -> int:
        return sum(int(live.sum()) for _, live in self.parts)

    def scores(self, question: str, language: str = "") -> np.ndarray:
        """BM25 score of every live chunk for ``question``."""
        language = language or detect_language(question, default=self.language)
        parts = [index.scores(question, language)[live] for index, live in self.parts]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def search(self, question: str, k: int, allowed: np.ndarray | None = None,
               language: str = "") -> list[tuple[int, float]]:
        """The ``k`` best (chunk position, BM25 score) pairs with a positive score, best first."""
        return top_k(self.scores(question, language), k, allowed)


def load_lexical(data) -> LexicalIndex | SegmentedLexical:
    """The lexical index of a loaded version: its segment's, or every segment's side by side.

    A segment without a ``lexical.npz`` (written before lexical search existed) has it built in memory;
    a note says how to store it (any later ``rag index`` writes it too)."""
    if len(data.segments) == 1 and data.live_masks[0].all():
        segment = data.segments[0]
        if segment.path is not None and not (segment.path / FILENAME).exists():
            log.warning("%s missing; BM25 built in memory (`rag index --rebuild corpus/` stores it)",
                        segment.path / FILENAME)
        return segment.lexical
    return SegmentedLexical(data)
