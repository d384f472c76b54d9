"""Token-aware chunking: whole sentences packed up to a target size, with overlap.

Every chunk is a contiguous span of the article text, so ``text[start:end]`` gives it back
exactly and a UI can highlight it. Headings (Markdown ``#`` lines, or short lines with no
closing punctuation followed by more text) start a new chunk and label the chunks under them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import ConfigError
from common.sentences import heading_text, is_heading, split_sentences, trim
from index.types import Article, Chunk, chunk_id


@dataclass(frozen=True)
class Unit:
    """A sentence or heading: a span of the article text and its token count."""

    start: int
    end: int
    tokens: int
    heading: bool = False


class Chunker:
    """Packs sentences into chunks of about ``target_tokens`` tiktoken tokens, ``overlap_tokens`` shared."""

    def __init__(self, target_tokens: int = 256, overlap_tokens: int = 48, encoding: str = "cl100k_base"):
        if target_tokens < 16:
            raise ConfigError(f"chunk size {target_tokens} is too small; use at least 16 tokens")
        if not 0 <= overlap_tokens < target_tokens // 2:
            raise ConfigError(f"chunk overlap {overlap_tokens} must be between 0 and half the chunk size")
        from index.tokens import get_encoding

        self.target, self.overlap, self.encoding_name = target_tokens, overlap_tokens, encoding
        self._enc = get_encoding(encoding)

    def settings(self) -> dict:
        """What the manifest records, so an index is never mixed with chunks made differently."""
        return {"target_tokens": self.target, "overlap_tokens": self.overlap, "encoding": self.encoding_name}

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        return len(self._enc.encode_ordinary(text))

    def units(self, text: str) -> list[Unit]:
        """The article's sentences and headings, in order, long sentences cut at word boundaries."""
        units, pos = [], 0
        for line in text.splitlines(keepends=True):
            a, b = trim(text, pos, pos + len(line))
            pos += len(line)
            if a == b:
                continue
            if is_heading(text[a:b], text[pos:pos + 400]):
                units.append(Unit(a, b, self.count(text[a:b]), heading=True))
                continue
            for s, e in split_sentences(text, a, b):
                units.extend(self._fit(text, s, e))
        return units

    def _fit(self, text: str, start: int, end: int) -> list[Unit]:
        """One unit, or word-boundary pieces of a sentence longer than the target."""
        n = self.count(text[start:end])
        if n <= self.target:
            return [Unit(start, end, n)]
        pieces, begin, budget = [], start, self.target
        for word in re.finditer(r"\S+\s*", text[start:end]):
            stop = start + word.end()
            if self.count(text[begin:stop]) > budget and stop - begin > len(word.group()):
                a, b = trim(text, begin, start + word.start())
                pieces.append(Unit(a, b, self.count(text[a:b])))
                begin = start + word.start()
        a, b = trim(text, begin, end)
        pieces.append(Unit(a, b, self.count(text[a:b])))
        return pieces

    def chunk(self, article: Article) -> list[Chunk]:
        """The article's chunks, in order."""
        groups, heading = [], ""
        for group in self._pack(self.units(article.text)):
            chunk_heading = heading
            for unit in group:
                if unit.heading:
                    heading = heading_text(article.text[unit.start:unit.end])
                    if unit is group[0]:
                        chunk_heading = heading
            groups.append((group, chunk_heading))
        seen: dict[str, int] = {}
        chunks = []
        for group, chunk_heading in groups:
            start, end = group[0].start, group[-1].end
            text = article.text[start:end]
            occurrence = seen.get(text, 0)
            seen[text] = occurrence + 1
            chunks.append(Chunk(
                id=chunk_id(article.id, text, occurrence), article_id=article.id, title=article.title,
                text=text, start=start, end=end, heading=chunk_heading, date=article.date, url=article.url,
                language=article.language, n_tokens=sum(u.tokens for u in group),
            ))
        return chunks

    def _pack(self, units: list[Unit]) -> list[list[Unit]]:
        groups: list[list[Unit]] = []
        current: list[Unit] = []
        size = 0
        for unit in units:
            heading_break = unit.heading and size >= self.target // 4
            if current and (heading_break or size + unit.tokens > self.target):
                groups.append(current)
                current = [] if heading_break else self._overlap(current, unit.tokens)
                size = sum(u.tokens for u in current)
            current.append(unit)
            size += unit.tokens
        if current:
            groups.append(current)
        return groups

    def _overlap(self, previous: list[Unit], incoming: int) -> list[Unit]:
        """Trailing sentences of the previous chunk to repeat, within the overlap and the target."""
        carried, size = [], 0
        for unit in reversed(previous):
            if unit.heading or size + unit.tokens > self.overlap or size + unit.tokens + incoming > self.target:
                break
            carried.insert(0, unit)
            size += unit.tokens
        if len(carried) == len(previous):
            return []  # never repeat a whole chunk
        return carried
