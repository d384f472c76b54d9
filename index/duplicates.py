"""Wire copies: one story republished with small edits (agency copy, other outlets), found when it is
indexed so that retrieval keeps it once and lists its copies under it.

Each article gets a MinHash signature of its word shingles (``datasketch``; accents folded, case
ignored), stored with its record. A new article is compared with the candidates that could be copies:
the other articles of the same write (a MinHash LSH over them) and the articles of the nearest chunks
to its first chunk in the index (a copy says the same thing, so the dense index finds it: no LSH over
the whole archive has to be kept or rebuilt). A candidate whose estimated Jaccard similarity reaches
the threshold makes the article a copy: its ``story`` is the candidate's story id. The threshold and the
shingle size are measured on edited copies against distinct stories of one topic (bench/duplicates.py,
README "Wire copies").
"""
from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from common.text import fold

SHINGLE_WORDS = 3
NUM_PERM = 128
SEED = 1
SCHEME = "affine32"  # datasketch 2's 32-bit hash values (stored as they are)
THRESHOLD = 0.3  # RAG_DUPLICATE_THRESHOLD; measured in bench/duplicates.py (README "Wire copies")
NEIGHBOURS = 10  # nearest chunks whose articles are compared with a new article
LSH_SHARE = 0.6  # the batch's LSH proposes pairs from this share of the threshold
_WORD = re.compile(r"\w+")


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[str]:
    """The text's runs of ``size`` words, folded (lower case, no accents)."""
    words = _WORD.findall(fold(text))
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity of two sets (0 when both are empty)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def containment(a: set, b: set) -> float:
    """The share of the smaller set found in the other."""
    return len(a & b) / min(len(a), len(b)) if a and b else 0.0


def signature(text: str):
    """The MinHash of the text's shingles."""
    from datasketch import MinHash

    m = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    m.update_batch([s.encode("utf-8") for s in shingles(text)])
    return m


def encode(m) -> str:
    """A signature as stored in an article record (its 128 hash values as uint32, base64)."""
    return base64.b64encode(m.hashvalues.astype("<u4").tobytes()).decode("ascii")


def decode(value: str):
    """The signature stored by ``encode``."""
    from datasketch import MinHash

    values = np.frombuffer(base64.b64decode(value), dtype="<u4").astype(np.uint32)
    return MinHash(num_perm=NUM_PERM, seed=SEED, hashvalues=values, scheme=SCHEME)


@dataclass(frozen=True)
class Incoming:
    """An article about to be written: its id, date, text and first chunk's vector."""

    id: str
    date: str
    text: str
    vector: np.ndarray | None


def find_stories(incoming: list[Incoming], neighbours: Callable[[np.ndarray], Iterable[str]],
                 known: Callable[[str], tuple[str, str] | None], threshold: float) -> dict[str, tuple[str, str]]:
    """For each incoming article, ``(story, minhash)``: the story id it copies ("" if none) and its signature.

    ``neighbours(vector)`` gives ids of indexed articles near a vector; ``known(id)`` an indexed
    article's ``(story_id, minhash)`` (or None: deleted or replaced in this write). Articles of the batch
    are taken oldest first, so the first published version names the story.
    """
    lsh = _lsh(threshold) if len(incoming) > 1 else None  # one article: nothing of the write to compare with
    found: dict[str, tuple[str, str]] = {}
    signatures: dict[str, object] = {}
    for item in sorted(incoming, key=lambda a: (a.date or "9999", a.id)):
        m = signature(item.text)
        candidates: dict[str, tuple[str, object]] = {}
        for other in lsh.query(m) if lsh is not None else ():
            candidates[other] = (found[other][0] or other, signatures[other])
        if item.vector is not None:
            for other in neighbours(item.vector):
                entry = known(other) if other != item.id and other not in candidates else None
                if entry is not None and entry[1]:
                    candidates[other] = (entry[0], decode(entry[1]))
        best = max(((m.jaccard(sig), story) for story, sig in candidates.values()), default=(0.0, ""))
        story = best[1] if best[0] >= threshold and best[1] != item.id else ""
        found[item.id] = (story, encode(m))
        signatures[item.id] = m
        if lsh is not None:
            lsh.insert(item.id, m)
    return found


def _lsh(threshold: float):
    """An empty MinHash LSH proposing pairs from ``LSH_SHARE`` of ``threshold``: at a lower threshold, so that
    a pair just above ``threshold`` is not missed by chance (at the threshold itself it would be, one time in
    three or so); each proposal is then checked."""
    from datasketch import MinHashLSH

    return MinHashLSH(num_perm=NUM_PERM, params=_bands(round(max(threshold * LSH_SHARE, 0.05), 4)))


@functools.lru_cache(maxsize=8)
def _bands(threshold: float) -> tuple[int, int]:
    """datasketch's bands and rows for a threshold (an integration it would redo for every write)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    return lsh.b, lsh.r
