"""Text helpers for answering: sentences of a passage, and a light lexical analysis."""
from __future__ import annotations

import functools
import re
import unicodedata

from index.chunker import is_heading, split_sentences

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = {
    "fr": frozenset("le la les l un une des du de d et est sont dans pour sur avec que qu qui quoi quel quelle "
                    "quels quelles pas ne n au aux ce cet cette ces c il elle ils elles on nous vous leur leurs "
                    "son sa ses se s mais ou où comment pourquoi combien quand a ont été être avoir par plus en y "
                    "à ça cela est-ce t-il t-elle fait faire très aussi".split()),
    "en": frozenset("the a an and is are was were in on for with that which who what whom whose how why when "
                    "where not no of to it its this these those they them their he she we you his her has have "
                    "had be been by as at or but from did does do will would can could should about into than "
                    "much many".split()),
}
_STEMMERS = {"fr": "french", "en": "english"}


def fold(text: str) -> str:
    """Lower case without accents: "Élysée" -> "elysee"."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@functools.lru_cache(maxsize=4)
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(_STEMMERS.get(language, "french"))


def content_terms(text: str, language: str = "fr") -> set[str]:
    """Stemmed, accent-folded content words of ``text`` (stop words of French and English removed)."""
    words = [w for w in _WORD.findall(text.lower().replace("’", " ").replace("'", " "))
             if w not in _STOP["fr"] and w not in _STOP["en"]]
    stems = _stemmer(language if language in _STEMMERS else "fr").stemWords(words)
    return {fold(s) for s in stems if s}


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
