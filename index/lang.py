"""Cheap language detection for French and English, by stop-word counts."""
from __future__ import annotations

import re

_WORD = re.compile(r"[a-zàâäçéèêëîïôöùûüÿœæ]+", re.IGNORECASE)
_FR = frozenset(
    "le la les un une des du de et est sont dans pour sur avec que qui quoi quel quelle quels quelles "
    "pas ne au aux ce cette ces il elle ils elles nous vous leur leurs son sa ses mais ou où comment "
    "pourquoi combien quand été être avoir a ont était par plus se en y d l qu c s n j".split()
)
_EN = frozenset(
    "the a an and is are was were in on for with that which who what whom whose how why when where "
    "not no of to it its this these those they them their he she we you his her has have had be been "
    "by as at or but from did does do will would can could should about into than".split()
)


def detect_language(text: str, default: str = "") -> str:
    """Return "fr" or "en" by which stop words dominate, or ``default`` when neither does."""
    words = [w.lower() for w in _WORD.findall(text.replace("’", "'").replace("'", " "))]
    fr = sum(w in _FR for w in words) + 2 * sum(any(c in w for c in "éèêàçùœ") for w in words)
    en = sum(w in _EN for w in words)
    if fr == en:
        return default
    return "fr" if fr > en else "en"
