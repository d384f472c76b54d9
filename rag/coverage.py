"""Cheap, deterministic checks that the retrieved passages can answer the question at all.

A passage can score well against a question and still not answer it: "Combien Google a-t-il
investi dans OpenAI ?" retrieves the sentence about Microsoft's 13 billion. Two checks catch
such near-misses before an answer is made:

- names and numbers: a capitalised name (not the question's first word) or a number in the
  question must appear in some retrieved passage. Names are compared accent-folded, by their
  first five letters for long words, so "American" finds "américaines" and "European"
  finds "européenne".
- answer type: a question asking for an amount (combien, how much, quel pourcentage, …)
  needs a sentence with a number, and one asking when needs a sentence with a date or year.
"""
from __future__ import annotations

import re

from common.text import NUMBER, fold, name_parts

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
_WHEN_QUESTION = re.compile(
    r"\b(quand|depuis quand|en quelle année|à quelle date|when|since when|what year|which year)\b", re.IGNORECASE)
_MONTHS = ("janvier février mars avril mai juin juillet août septembre octobre novembre décembre "
           "january february march april may june july august september october november december").split()


def _key(word: str) -> str:
    folded = fold(word).replace("’", "'").split("'")[-1]
    return folded[:5] if len(folded) > 5 else folded


def question_names(question: str) -> list[str]:
    """Capitalised names in the question, question words and sentence starters left out."""
    names = [w for w in name_parts(question) if len(w) >= 3 and fold(w) not in _NOT_NAMES]
    return list(dict.fromkeys(names))


def missing_terms(question: str, passages: list[str]) -> list[str]:
    """Names and numbers of the question that no passage contains."""
    text = fold(" ".join(passages))
    words = {_key(w) for w in re.findall(r"\w+", text)}
    numbers = set(NUMBER.findall(text.replace(" ", "")))
    missing = [n for n in question_names(question) if _key(n) not in words and fold(n) not in text]
    missing += [n for n in NUMBER.findall(question) if n not in numbers and n not in text]
    return missing


def wants_amount(question: str) -> bool:
    """True when the question asks for a quantity (how much, combien, what percentage, …)."""
    return bool(_AMOUNT_QUESTION.search(question))


def wants_date(question: str) -> bool:
    """True when the question asks when something happened."""
    return bool(_WHEN_QUESTION.search(question))


def has_number(sentence: str) -> bool:
    """True when the sentence states a number."""
    return bool(NUMBER.search(sentence))


def has_date(sentence: str) -> bool:
    """True when the sentence states a year or a month."""
    folded = fold(sentence)
    return (bool(re.search(r"\b(1[89]|20)\d\d\b", sentence))
            or any(re.search(rf"\b{fold(m)}\b", folded) for m in _MONTHS))
