"""Cheap, deterministic checks that the retrieved passages can answer the question at all.

A passage can score well against a question and still not answer it: "Combien Google a-t-il
investi dans OpenAI ?" retrieves the sentence about Microsoft's 13 billion. Two checks catch
such near-misses before an answer is made:

- names and numbers: a capitalised name (not the question's first word) or a number in the
  question must appear in some retrieved passage. Names are compared accent-folded, by their
  first five letters for long words, so "American" finds "américaines" and "European"
  finds "européenne". Across languages a name may be spelt otherwise ("Pays-Bas" in an
  English article is "Netherlands"): ``found_across_languages`` looks for its other names in
  CLDR (countries, languages, cities whose names differ, via babel), then for a word of the
  passages that the embedder puts next to it (``CROSS_LANGUAGE_SIMILARITY``).
- answer type: a question asking for an amount (combien, how much, quel pourcentage, …)
  needs a sentence with a number, and one asking when needs a sentence with a date or year.
"""
from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache

from common.text import NAME, NUMBER, fold, name_parts

# e5's cosine (name as a query, word as a passage) above which a word of an article in another
# language is taken for the question's name. Measured on 20 translation pairs and 22 pairs of
# different names of one kind (Germany/Netherlands, Google/Microsoft, Rome/Milan, ...): the
# different names reach 0.862, the translations 0.824-0.926 (Swiss/suisses 0.926, Londres/
# London 0.904, Venise/Venice 0.878). The translations below the cut are countries and
# languages, which CLDR names exactly; only words that start with the name's letter are
# compared, which leaves out Espagne/Spain (CLDR has it) and most unrelated words.
CROSS_LANGUAGE_SIMILARITY = 0.875
_LOCALES = ("fr", "en")

# Capitalised words that are not names: question words and sentence starters of both languages.
_NOT_NAMES = frozenset(fold(w) for w in (
    "Qui Que Quoi Quel Quelle Quels Quelles Quand Comment Pourquoi Combien Où Est Sont Dans Selon Depuis Pour "
    "Par Sur Sous Avec Auprès Les Le La Des Un Une Du De Et En Au Aux Ce Cette Ces Il Elle Ils Elles On Y A À "
    "Faut Peut Va Vont Qu Quelqu Certains Certaines Entre Vers Après Avant Lors Toute Tout Tous Toutes "
    "Cela Ceci Celui Celle Ceux Quelle Lequel Laquelle Lesquels Ont Était Sera Serait Pourrait Doit "
    "What Who Whom Whose Which When Where Why How Is Are Was Were Do Does Did Can Could Will Would Should "
    "Has Have Had The A An In On At Of For From By With About Since Between According Into It Its They "
    "PDG CEO IA AI"
).split())
_AMOUNT_QUESTION = re.compile(
    r"\b(combien|quel(?:le)?s? (?:(?:est|sont|était) )?(?:le |la |l'|les )?"
    r"(?:montant|pourcentage|prix|chiffre|somme|nombre|part|taux|valeur|valorisation)|"
    r"how (?:much|many)|what (?:percentage|share|price|amount|number|sum))\b", re.IGNORECASE)
# "Quand" asks when at the question's start or end ("Depuis quand… ?", "… découvert quand ?"), not inside it ("Quel
# âge avait-il quand… ?"); "when" likewise.
_WHEN_QUESTION = re.compile(
    r"^\W*(?:(?:depuis|jusqu'à|jusqu’à|à partir de|a partir de|de|à|a) )?quand\b|\bquand\W*$|"
    r"\b(?:en|de|à|a|dans|pour) quelle (?:année|date|saison|décennie)\b|\bà quelle date\b|"
    r"\bquel (?:jour|mois|siècle)\b|^\W*(?:since |until |till )?when\b|\bwhen\W*$|\bsince when\b|"
    r"\b(?:what|which|in which|in what) (?:year|date|century|decade|month|day|season)\b", re.IGNORECASE)
MONTHS = ("janvier février mars avril mai juin juillet août septembre octobre novembre décembre "
           "january february march april may june july august september october november december").split()


def _key(word: str) -> str:
    folded = fold(word).replace("’", "'").split("'")[-1]
    return folded[:5] if len(folded) > 5 else folded


def question_names(question: str) -> list[str]:
    """Capitalised names in the question, question words and sentence starters left out."""
    names = [w for w in name_parts(question) if len(w) >= 3 and fold(w) not in _NOT_NAMES]
    return list(dict.fromkeys(names))


def missing_terms(question: str, passages: list[str]) -> list[str]:
    """Names (whole, with their hyphens) and numbers of the question that no passage contains."""
    text = fold(" ".join(passages))
    words = {_key(w) for w in re.findall(r"\w+", text)}
    numbers = set(NUMBER.findall(text.replace(" ", "")))
    parts = [n for n in question_names(question) if _key(n) not in words and fold(n) not in text]
    whole = {part: name for name in _whole_names(question) for part in re.split(r"[’'-]", name)}
    missing = list(dict.fromkeys(whole.get(n, n) for n in parts))  # "Pays-Bas", not "Pays"
    missing += [n for n in NUMBER.findall(question) if n not in numbers and n not in text]
    return missing


def found_across_languages(question: str, missing: list[str], passages: list[str],
                           embed=None) -> tuple[list[str], dict[str, str]]:
    """The names of ``missing`` that ``passages`` (articles in another language than the question's)
    still lack, and for the others the word they were found as: {"Pays-Bas": "Netherlands"}.
    ``embed(texts, kind)`` (the pipeline's cached embedder) is the second chance after CLDR."""
    text = fold(" ".join(passages))
    keys = {_key(w) for w in re.findall(r"\w+", text)}
    found: dict[str, str] = {}
    left = set(missing)
    for whole in _whole_names(question):
        if whole not in left:
            continue
        match = next((a for a in sorted(_other_names(whole)) if _mentions(fold(a), text, keys)), None)
        if match is None and embed is not None:
            match = _nearest_word(whole, passages, embed)
        if match is not None:
            found[whole] = match
            left.discard(whole)
    return [m for m in missing if m in left], found


def _whole_names(question: str) -> list[str]:
    """Capitalised names with their hyphens and without an elided article: "des Pays-Bas" ->
    "Pays-Bas", "d'OpenAI" -> "OpenAI"."""
    return list(dict.fromkeys(re.split(r"[’']", m.group())[-1] for m in NAME.finditer(question)))


def _other_names(name: str) -> frozenset[str]:
    """CLDR's other names of ``name``, also for its plural ("Allemands" -> "allemand" -> "German")."""
    folded, table = fold(name), _exonyms()
    for stem in (folded, folded[:-1] if folded.endswith("s") else "", folded[:-2] if folded.endswith("es") else ""):
        if stem in table:
            return table[stem]
    return frozenset()


def _mentions(alias: str, text: str, keys: set[str]) -> bool:
    if " " in alias or "-" in alias:
        return re.search(rf"(?<!\w){re.escape(alias)}(?!\w)", text) is not None
    return _key(alias) in keys


def _nearest_word(name: str, passages: list[str], embed) -> str | None:
    """The passages' word closest to ``name`` in the embedder's space, if close enough; only words
    that start with the same letter (accents folded) and are not the name's own parts are compared."""
    import numpy as np

    first = fold(name)[:1]
    words = list(dict.fromkeys(w for w in re.findall(r"\w{3,}", " ".join(passages)) if fold(w)[:1] == first))
    if not words:
        return None
    sims = np.asarray(embed(words, kind="passage")) @ np.asarray(embed([name], kind="query"))[0]
    best = int(np.argmax(sims))
    return words[best] if sims[best] >= CROSS_LANGUAGE_SIMILARITY else None


@lru_cache(maxsize=1)
def _exonyms() -> dict[str, frozenset[str]]:
    """Folded name -> its other names (as spelt) in French and English, from CLDR: countries and regions,
    languages ("allemand"/"German", also the nationality's adjective), and the cities whose
    French name differs from the English one ("Londres"/"London")."""
    from babel import Locale

    groups: dict[str, set[str]] = defaultdict(set)
    for lang in _LOCALES:
        locale = Locale(lang)
        for code, name in locale.territories.items():
            groups[f"t:{code}"].add(name)
        for code, name in locale.languages.items():
            groups[f"l:{code}"].add(name)
        for zone, names in locale.time_zones.items():
            if names.get("city"):
                groups[f"c:{zone}"] |= {names["city"], zone.rsplit("/", 1)[-1].replace("_", " ")}
    out: dict[str, set[str]] = defaultdict(set)
    for names in groups.values():
        names = {n for n in names if "(" not in n}
        for n in names:
            out[fold(n)] |= {m for m in names if fold(m) != fold(n)}
    return {k: frozenset(v) for k, v in out.items() if v}


# A measure the question names, and the units a sentence stating it would use. "Quelle est la température
# record ?" is not answered by a duration in seconds, nor "what does the ticket cost?" by a number of stations.
_MEASURES = (
    ("a temperature", r"\b(températures?|temperatures?|how hot)\b",
     r"°|\b(degrés?|degrees?|kelvins?|celsius|fahrenheit)\b"),
    ("a price", r"\b(quel est le prix|combien co[uû]te|co[uû]te(?:nt)?-(?:il|elle|ils|elles)|tarifs?|price of|fares?|"
                r"how much (?:does|do|did|is|are) .* cost)\b",
     r"[€$£¥]|\b(USD|EUR|GBP|CHF|euros?|dollars?|francs?|livres?|pounds?|centimes?|cents?|gratuit\w*|free)\b"),
    ("a duration", r"\b(durée|combien de temps|pendant combien|how long|duration)\b",
     r"\b(secondes?|minutes?|heures?|jours?|semaines?|mois|ans|années?|décennies?|siècles?|millénaires?|"
     r"seconds?|hours?|days?|weeks?|months?|years?|decades?|centur(?:y|ies))\b"),
    ("a distance", r"\b(distance|longueur|profondeur|hauteur|how far|how deep|how tall|length|depth|height)\b",
     r"\b(km|kilomètres?|mètres?|m|cm|miles?|kilometres?|kilometers?|metres?|meters?|feet|ft)\b"),
    ("a percentage", r"\b(pourcentage|percentage)\b", r"%|\b(pour ?cent|percent)\b"),
)


def wants_measure(question: str) -> tuple[str, re.Pattern] | None:
    """The measure the question asks for ("a temperature", …) and the pattern of its units, or None. (Not "prix"
    alone: "quel prix a-t-il reçu ?" asks for an award.)"""
    for kind, asked, units in _MEASURES:
        if re.search(asked, question, re.IGNORECASE):
            return kind, re.compile(units, re.IGNORECASE)
    return None


def wants_amount(question: str) -> bool:
    """True when the question asks for a quantity (how much, combien, what percentage, …)."""
    return bool(_AMOUNT_QUESTION.search(question))


def wants_date(question: str) -> bool:
    """True when the question asks when something happened."""
    return bool(_WHEN_QUESTION.search(question))


# Numbers in words: PIAF answers "combien" with "neuf", "dix-huit", "quatre millions", "la quatorzième" as often
# as with digits. ("un", "une", "one" are left out: they are articles far more often than counts.)
NUMBER_WORDS = re.compile(
    r"\b(deux|trois|quatre|cinq|six|sept|huit|neuf|dix|onze|douze|treize|quatorze|quinze|seize|vingts?|trente|"
    r"quarante|cinquante|soixante|septante|huitante|octante|nonante|cents?|mille|milles|millions?|milliards?|"
    r"milliers?|dizaines?|douzaines?|vingtaines?|trentaines?|centaines?|\w+ièmes?|premi(?:er|ère)s?|aucune?|"
    r"plusieurs|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundreds?|thousands?|millions?|billions?|dozens?|first|second|third|fourth|"
    r"fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|\w+teenth|\w+tieth|none)\b", re.IGNORECASE)
# Time in words: centuries (XVIe siècle), eras, seasons, days, parts of a day, time spans. ("été", summer, is
# left out: it is far more often the participle of "être".)
_TIME_WORDS = re.compile(
    r"\b((?-i:[IVX]+(?:e|è|ème|er))|siècles?|millénaires?|décennies?|années?|ans|époque|antiquité|moyen âge|"
    r"lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|printemps|automne|hiver|matin|soir|soirée|nuit|"
    r"veille|lendemain|hier|aujourd'hui|aujourd’hui|demain|semaines?|jours?|mois|heures?|"
    r"centur(?:y|ies)|decades?|years?|era|monday|tuesday|wednesday|thursday|friday|saturday|sunday|spring|"
    r"summer|autumn|fall|winter|morning|evening|night|yesterday|today|tomorrow|weeks?|days?|months?|hours?|"
    r"ago|BC|AD)\b", re.IGNORECASE)


def has_number(sentence: str) -> bool:
    """True when the sentence states a number, in digits or in words ("neuf", "dix-huit", "forty")."""
    return bool(NUMBER.search(sentence) or NUMBER_WORDS.search(sentence))


# Month and season names, accents folded, matched in a folded text in one search (these run per sentence read).
_MONTH_NAMES = re.compile(r"\b(?:" + "|".join(fold(m) for m in MONTHS) + r")\b")
_DAY_NAMES = re.compile(r"\b(?:" + "|".join(fold(m) for m in (*MONTHS, "printemps", "été", "automne", "hiver",
                                                               "spring", "summer", "autumn", "winter")) + r")\b")


def names_a_day(span: str) -> bool:
    """True when the span names a point in time: a year of four digits, a month or a season ("en septembre 2025",
    "au printemps 2026"), not a duration or a count ("trois mois", "400 emplois")."""
    return bool(re.search(r"\b(1\d|20)\d\d\b", span) or _DAY_NAMES.search(fold(span)))


def has_date(sentence: str) -> bool:
    """True when the sentence states a time: a year (761, 1593, 2025), a month, a century (XVIe siècle), a day,
    a season, a time span ("trois ans", "la veille")."""
    return bool(re.search(r"(?<![\d,.])\d{3,4}(?![\d,.]\d)", sentence) or _TIME_WORDS.search(sentence)
                or _MONTH_NAMES.search(fold(sentence)))
