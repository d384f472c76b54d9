"""Citation marks: how an answer cites its passages, written and read in one place.

An answer cites passage ``n`` with ``[n]`` after the sentence it backs (``MARK``). Models write
marks more loosely ("[1, 2]", "[passage 3]", a mark after the full stop); ``MODEL_MARK`` reads
those, and the citation check rewrites them as ``[n]`` marks before anything else sees them.
"""
from __future__ import annotations

import re

MARK = re.compile(r"\[(\d+)\]")
MARK_RUN = re.compile(r"(?:\s*\[\d+\])+")  # the marks that follow one sentence
_LOOSE = r"\[\s*(?:passages?\s*)?\d+(?:\s*[,;]\s*\d+)*\s*\]"
MODEL_MARK = re.compile(r"\[\s*(?:passages?\s*)?(\d+(?:\s*[,;]\s*\d+)*)\s*\]", re.IGNORECASE)
MODEL_MARKS_AFTER_STOP = re.compile(rf"([.!?…]+)((?:\s*{_LOOSE})+)[.!?…]*", re.IGNORECASE)
_SPACED_MARK = re.compile(r"\s*\[(\d+)\]")


def cited_numbers(text: str) -> list[int]:
    """The passage numbers ``text`` cites, in order of first mention."""
    return list(dict.fromkeys(int(n) for n in MARK.findall(text)))


def strip_marks(text: str) -> str:
    """``text`` without its ``[n]`` marks (and the space before each)."""
    return _SPACED_MARK.sub("", text).strip()


def format_marks(numbers) -> str:
    """``[1][3]`` for ``(1, 3)``."""
    return "".join(f"[{n}]" for n in numbers)


def model_mark_numbers(mark: str) -> list[int]:
    """The numbers of one loose mark as a model wrote it: "[passage 1; 3]" -> [1, 3]."""
    return [int(x) for x in re.findall(r"\d+", mark)]


_DAY = r"(?:\d{1,2}(?:er)?\s+\w+\s+\d{4}|\w+\s+\d{1,2},\s+\d{4}|\d{4}-\d{2}-\d{2})"
ATTRIBUTION = re.compile(
    rf"(?:Selon|D['’]apr[eè]s|Plus t[oô]t,)\s+l['’]article\s+(?:du|dat[ée] du|publi[ée] le)\s+{_DAY}"
    rf"(?:\s+indiquait)?\s*[,:]\s*"
    rf"|(?:According to|Earlier,)\s+the\s+article\s+(?:of|from|dated|published on)\s+{_DAY}(?:\s+said)?\s*[,:]\s*",
    re.IGNORECASE)


def strip_attribution(text: str) -> str:
    """``text`` without the lead-ins that say which article's date a sentence comes from ("Selon l'article
    du 24 juin 2025 :", "According to the article of 24 June 2025,"): framing, like the marks, not a claim."""
    return ATTRIBUTION.sub("", text)
