"""Plain data types shared by indexing and answering."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Article:
    """One news article as loaded from disk or the API."""

    id: str
    title: str
    text: str
    date: str = ""  # ISO 8601 date, "" when unknown
    url: str = ""
    source: str = ""
    language: str = ""  # ISO 639-1 code such as "fr", "" when unknown
    path: str = ""  # where it was loaded from, "" for API input
    updated: str = ""  # ISO 8601 date of this version when it corrects or updates the one of ``date``

    @property
    def content_hash(self) -> str:
        """Hash of everything that changes the chunks; re-indexing skips an article whose hash is unchanged.
        (``updated`` counts only when set, so hashes of articles without one stay what they were.)"""
        h = hashlib.sha256()
        parts = (self.id, self.title, self.date, self.url, self.source, self.language, self.text)
        for part in parts + ((self.updated,) if self.updated else ()):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A passage of an article, with its character span in ``Article.text``."""

    id: str
    article_id: str
    title: str
    text: str
    start: int
    end: int
    heading: str = ""
    date: str = ""
    url: str = ""
    language: str = ""
    n_tokens: int = 0
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def analysis_key(chunk_id: str, language: str, title: str, heading: str) -> str:
    """What a chunk's lexical analysis depends on: equal keys reuse its stored terms (``index.lexical``)."""
    return f"{chunk_id}\x1f{language}\x1f{title}\x1f{heading}"


def keys_digest(keys) -> str:
    """sha1 of analysis keys in order: what tells a stored BM25 index it was built for these chunks."""
    digest = hashlib.sha1()
    for key in keys:
        digest.update(key.encode() + b"\x1e")
    return digest.hexdigest()


def chunk_id(article_id: str, text: str, occurrence: int = 0) -> str:
    """Stable id from the article id and content, so labels and citations survive re-indexing.

    ``occurrence`` tells apart identical passages repeated inside one article.
    """
    digest = hashlib.sha1(f"{article_id}\x00{occurrence}\x00{text}".encode()).hexdigest()[:16]
    return f"{article_id}#{digest}"
