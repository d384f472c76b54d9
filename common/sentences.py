"""Sentences and headings of an article's text, as character spans (so a UI can highlight them).

Shared by the chunker (chunks are packed from whole sentences), the answer backends, the
citation check and the metrics, so that all of them cut a text the same way.
"""
from __future__ import annotations

import re

# Abbreviations after which a period does not end a sentence (French and English).
_ABBREV = frozenset(
    "m mm mme mmes mlle mlles dr pr me st ste av apr j.-c etc cf env vol ch chap p pp fig no nos n° "
    "mr mrs ms prof inc ltd co corp jr sr vs e.g i.e u.s approx dept est jan feb fév févr mar apr avr "
    "jun juil aug sept oct nov dec déc".split()
)
_SENTENCE_END = re.compile(r"[.!?…]+[»”\"')\]]*\s+|\n+")
_HEADING_MD = re.compile(r"#{1,6}\s")
_TERMINAL = tuple(".!?…:;»”\"),")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Character spans of the sentences in ``text[start:end]``, trimmed of surrounding space."""
    end = len(text) if end is None else end
    spans, begin = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        cut = match.end()
        if "\n" not in match.group() and not _ends_sentence(text, match.start(), cut, end):
            continue
        spans.append((begin, cut))
        begin = cut
    spans.append((begin, end))
    return [s for s in (trim(text, a, b) for a, b in spans) if s[1] > s[0]]


def _ends_sentence(text: str, dot: int, after: int, end: int) -> bool:
    if after >= end:
        return True
    nxt = text[after]
    if not (nxt.isupper() or nxt.isdigit() or nxt in "«“\"'(‘-–—•*"):
        return False
    if text[dot] == ".":
        word = re.search(r"([\w.\-°]+)$", text[max(0, dot - 12):dot])
        if word and (word.group(1).lower() in _ABBREV or len(word.group(1)) == 1 and word.group(1).isupper()):
            return False
    return True


def trim(text: str, a: int, b: int) -> tuple[int, int]:
    """``(a, b)`` moved inward past white space."""
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def is_heading(line: str, next_text: str) -> bool:
    """A Markdown heading, or a short unpunctuated line followed by more text."""
    if _HEADING_MD.match(line):
        return True
    words = line.split()
    return 0 < len(words) <= 14 and not line.rstrip().endswith(_TERMINAL) and bool(next_text.strip())


def heading_text(line: str) -> str:
    """A heading line without its Markdown markers."""
    return line.lstrip("#").strip()


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of a passage, headings left out."""
    spans, pos = [], 0
    for line in text.splitlines(keepends=True):
        a, b = pos, pos + len(line.rstrip())
        pos += len(line)
        stripped = text[a:b].strip()
        if not stripped or is_heading(stripped, text[pos:pos + 400]):
            continue
        spans.extend(split_sentences(text, a, b))
    return spans
