"""Text analysis shared by indexing, answering and evaluation: words, accent folding, stems,
stop words, names, numbers and the language of a text.

Two stop-word lists exist on purpose and are named for their job: ``bm25_stop_words`` (the BM25
analyser's, bm25s' lists plus question words; changing it changes stored indexes) and
``MATCH_STOP_WORDS`` (a short list of both languages at once, for comparing a question's
content words with a passage's). Language detection counts ``LANGUAGE_MARKERS``, words that
tell French from English, which is a third job.
"""
from __future__ import annotations

import functools
import re
import unicodedata

WORD = re.compile(r"\w+")
LETTERS = re.compile(r"[^\W_]+")  # words of letters and digits only: what BM25 indexes
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
CAPITAL = "A-ZÀ-ÖØ-Þ"  # upper-case letters of French and English (× excluded)
NAME = re.compile(rf"(?<!\w)[{CAPITAL}][\w’'-]*")  # a capitalised word, elisions and hyphens kept
NAME_RUN = re.compile(rf"{NAME.pattern}(?:\s+[{CAPITAL}][\w’'-]*)*")  # consecutive capitalised words
STEMMERS = {"fr": "french", "en": "english"}

MATCH_STOP_WORDS = frozenset(
    # French
    "le la les l un une des du de d et est sont dans pour sur avec que qu qui quoi quel quelle quels quelles "
    "pas ne n au aux ce cet cette ces c il elle ils elles on nous vous leur leurs son sa ses se s mais ou où "
    "comment pourquoi combien quand a ont été être avoir par plus en y à ça cela est-ce t-il t-elle fait faire "
    "très aussi "
    # English
    "the a an and is are was were in on for with that which who what whom whose how why when where not no of "
    "to it its this these those they them their he she we you his her has have had be been by as at or but "
    "from did does do will would can could should about into than much many".split())
# Question words are stop words for BM25: "quel", "combien", "which" say nothing about the passage.
_BM25_EXTRA_STOP = {
    "fr": "a quel quelle quels quelles quoi comment pourquoi combien quand où lequel laquelle lesquels "
          "lesquelles dont cela ça ceci celui celle ceux celles est-ce",
    "en": "what which who whom whose when where why how does did do has have had been were its "
          "from than about can could would should",
}
LANGUAGE_MARKERS = {
    "fr": frozenset("le la les un une des du de et est sont dans pour sur avec que qui quoi quel quelle quels "
                    "quelles pas ne au aux ce cette ces il elle ils elles nous vous leur leurs son sa ses mais "
                    "ou où comment pourquoi combien quand été être avoir a ont était par plus se en y d l qu c "
                    "s n j".split()),
    "en": frozenset("the a an and is are was were in on for with that which who what whom whose how why when "
                    "where not no of to it its this these those they them their he she we you his her has "
                    "have had be been by as at or but from did does do will would can could should about "
                    "into than".split()),
}
_MARKER_WORD = re.compile(r"[a-zàâäçéèêëîïôöùûüÿœæ]+", re.IGNORECASE)


def fold(text: str) -> str:
    """Lower case without accents, typographic apostrophes made plain: "Élysée" -> "elysee"."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def known_language(language: str) -> str:
    """``language`` when a stemmer exists for it, else French (the corpus' language)."""
    return language if language in STEMMERS else "fr"


@functools.lru_cache(maxsize=4)
def stemmer(language: str):
    """PyStemmer's Snowball stemmer of ``language`` (French for unknown languages)."""
    import Stemmer

    return Stemmer.Stemmer(STEMMERS[known_language(language)])


@functools.lru_cache(maxsize=4)
def bm25_stop_words(language: str) -> frozenset[str]:
    """The BM25 analyser's stop words of ``language`` ("fr" or "en"), accented and folded forms both."""
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_FRENCH

    language = known_language(language)
    words = set({"fr": STOPWORDS_FRENCH, "en": STOPWORDS_EN}[language]) | set(_BM25_EXTRA_STOP[language].split())
    return frozenset(words | {fold(w) for w in words})


def content_terms(text: str, language: str = "fr") -> set[str]:
    """Stemmed, accent-folded content words of ``text`` (``MATCH_STOP_WORDS`` removed)."""
    words = [w for w in WORD.findall(text.lower().replace("’", " ").replace("'", " ")) if w not in MATCH_STOP_WORDS]
    return {fold(s) for s in stemmer(language).stemWords(words) if s}


def weighted_terms(text: str, language: str = "fr") -> dict[str, float]:
    """``content_terms`` of ``text``, each weighted by the rarity of its word in the language: 8 minus
    wordfreq's Zipf frequency (about 1 for "fait", 3.4 for "température", 8 for an unknown name), so that
    "does the passage say what the question asks" counts "température" more than "atteinte"."""
    from wordfreq import zipf_frequency

    language = known_language(language)
    words = [w for w in WORD.findall(text.lower().replace("’", " ").replace("'", " ")) if w not in MATCH_STOP_WORDS]
    out: dict[str, float] = {}
    for word, stem in zip(words, stemmer(language).stemWords(words)):
        if stem:
            key = fold(stem)
            out[key] = max(out.get(key, 0.0), max(1.0, 8.0 - zipf_frequency(word, language)))
    return out


def detect_language(text: str, default: str = "") -> str:
    """"fr" or "en" by which language's marker words dominate, or ``default`` when neither does."""
    words = [w.lower() for w in _MARKER_WORD.findall(text.replace("’", "'").replace("'", " "))]
    fr = sum(w in LANGUAGE_MARKERS["fr"] for w in words) + 2 * sum(any(c in w for c in "éèêàçùœ") for w in words)
    en = sum(w in LANGUAGE_MARKERS["en"] for w in words)
    if fr == en:
        return default
    return "fr" if fr > en else "en"


def name_parts(text: str) -> list[str]:
    """The capitalised words of ``text``, elisions and hyphenated names cut apart:
    "d'OpenAI" -> "OpenAI", "Jean-Pierre" -> "Jean", "Pierre"."""
    return [part for m in NAME.finditer(text) for part in re.split(r"[’'-]", m.group()) if part[:1].isupper()]


# A newsroom's correction note states the wrong value on purpose ("une version précédente de cet article indiquait à
# tort que 3 100 déclarations…"): a paragraph that opens "Correction (date) :", or a sentence naming an earlier
# version of the article.
_CORRECTION_PARAGRAPH = re.compile(r"^[ \t]*(?:\*\*)?(?:correction|rectificatif|erratum)\b[^\n:]{0,40}:",
                                   re.IGNORECASE | re.MULTILINE)
_CORRECTION_SENTENCE = re.compile(
    r"\b(?:une|la|l['’]) ?(?:version|édition) (?:précédente|antérieure|initiale|originale) de (?:cet|cette|notre) "
    r"(?:article|dépêche|texte)|"
    r"\b(?:an|the) (?:earlier|previous|original|initial) version of this (?:article|story|report)",
    re.IGNORECASE)


def correction_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` holds correction notes: whole paragraphs opening "Correction … :", and other sentences
    naming an earlier version of the article (character spans)."""
    spans = []
    for m in _CORRECTION_PARAGRAPH.finditer(text):
        end = text.find("\n\n", m.start())
        spans.append((m.start(), len(text) if end < 0 else end))
    for m in _CORRECTION_SENTENCE.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue
        dot = text.rfind(". ", 0, m.start())
        start = max(dot + 2 if dot >= 0 else 0, text.rfind("\n", 0, m.start()) + 1)
        stop = [i for i in (text.find(". ", m.end()), text.find("\n", m.end())) if i >= 0]
        spans.append((start, min(stop) + 1 if stop else len(text)))
    return sorted(spans)


def blank_corrections(text: str) -> str:
    """``text`` with its correction notes replaced by spaces (same length, same offsets)."""
    for a, b in correction_spans(text):
        text = text[:a] + " " * (b - a) + text[b:]
    return text
