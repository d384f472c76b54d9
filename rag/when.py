"""Time in questions and answers: the period a question names, whether it asks for the latest, and how an
answer says the date of what it cites.

``time_scope("Qu'a décidé la mairie cette semaine ?", today)`` reads the question's words against
``today`` (``RAG_TODAY``, default the real date): a period ("cette semaine", "last month", "en 2024",
"in March 2025", "depuis juin", "before 2025") becomes a date range of the articles to prefer, and words
such as "dernier", "actuellement", "latest", "now" ask for the newest article. French and English.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from common.text import fold

_MONTHS = {
    "janvier": 1, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7, "aout": 8,
    "septembre": 9, "octobre": 10, "novembre": 11, "decembre": 12,
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_YEAR = r"(?:19|20)\d{2}"
_LATEST = re.compile(
    r"\b(?:dernier|derniere|derniers|dernieres|le plus recent|la plus recente|recent|recente|recents|recentes|"
    r"recemment|actuel|actuelle|actuels|actuelles|actuellement|desormais|maintenant|a ce jour|aujourd'hui|"
    r"aujourd’hui|a present|latest|most recent|newest|recently|now|currently|current|today|so far|to date|"
    r"nowadays)\b")
_RELATIVE = [  # (pattern, period name) read against today
    (r"\b(?:cette semaine|this week)\b", "this_week"),
    (r"\b(?:la semaine (?:derniere|passee)|last week|previous week)\b", "last_week"),
    (r"\b(?:ce mois-ci|ce mois ci|ce mois|this month)\b", "this_month"),
    (r"\b(?:le mois (?:dernier|passe)|last month|previous month)\b", "last_month"),
    (r"\b(?:cette annee|this year)\b", "this_year"),
    (r"\b(?:l'annee (?:derniere|passee)|l’annee (?:derniere|passee)|l'an (?:dernier|passe)|l’an (?:dernier|passe)|"
     r"last year|previous year)\b", "last_year"),
    (r"\b(?:hier|yesterday)\b", "yesterday"),
]
_DAYS = re.compile(r"\b(?:(?:ces|les) (\d{1,3}) derniers jours|(?:the )?(?:past|last) (\d{1,3}) days)\b")
_SINCE = re.compile(rf"\b(?:depuis|since|from)\s+(?:le mois de\s+|(?:the )?month of\s+)?(?:(?:debut|fin)\s+)?"
                    rf"(?:({_MONTH})(?:\s+({_YEAR}))?|({_YEAR}))\b")
_BEFORE = re.compile(rf"\b(?:avant|before|until|jusqu'en|jusqu’en)\s+(?:({_MONTH})(?:\s+({_YEAR}))?|({_YEAR}))\b")
_WEEK_OF = r"(?:(?:the )?week of\s+|la semaine du\s+)?(?:\d{1,2}(?:er)?\s+)?"  # "the week of 20 May": its month
_MONTH_IN = re.compile(rf"\b(?:en|in|au mois de|during|durant|pendant|de|of|le|on)\s+{_WEEK_OF}({_MONTH})"
                       rf"(?:\s+({_YEAR}))?\b|\b{_WEEK_OF}({_MONTH})\s+({_YEAR})\b")
_YEAR_IN = re.compile(rf"\b(?:en|in|during|durant|pendant|au cours de l'annee|au cours de l’annee)\s+({_YEAR})\b")


@dataclass(frozen=True)
class TimeScope:
    """What a question says about time: a period of publication dates to prefer (inclusive ISO dates, ""
    open) and whether it asks for the newest articles; ``words`` quotes what was read."""

    date_from: str = ""
    date_to: str = ""
    latest: bool = False
    words: str = ""
    strict: bool = False  # a period that can only be of publication ("this week", "since June"), not of an event

    @property
    def period(self) -> bool:
        """True when the question names a period."""
        return bool(self.date_from or self.date_to)


def today(setting: str = "") -> dt.date:
    """The date relative times are read against: ``setting`` (YYYY-MM-DD) or the real date."""
    return dt.date.fromisoformat(setting) if setting else dt.date.today()


def time_scope(question: str, now: dt.date) -> TimeScope:
    """The period and recency the question asks for, read against ``now``."""
    text = fold(question)
    for pattern, name in _RELATIVE:
        found = re.search(pattern, text)
        if found:
            start, end = _relative(name, now)
            return TimeScope(start.isoformat(), end.isoformat(), False, found.group(0), strict=True)
    found = _DAYS.search(text)
    if found:
        days = int(found.group(1) or found.group(2))
        return TimeScope((now - dt.timedelta(days=days)).isoformat(), now.isoformat(), False, found.group(0),
                         strict=True)
    found = _SINCE.search(text)
    if found:
        start, _ = _month_or_year(found.group(1), found.group(2), found.group(3), now)
        return TimeScope(start.isoformat(), "", True, found.group(0), strict=True)
    found = _BEFORE.search(text)
    if found:
        start, _ = _month_or_year(found.group(1), found.group(2), found.group(3), now)
        return TimeScope("", (start - dt.timedelta(days=1)).isoformat(), False, found.group(0))
    found = _MONTH_IN.search(text)
    if found:
        month, year = (found.group(1), found.group(2)) if found.group(1) else (found.group(3), found.group(4))
        start, end = _month_or_year(month, year, None, now)
        return TimeScope(start.isoformat(), end.isoformat(), False, found.group(0).strip())
    found = _YEAR_IN.search(text)
    if found:
        start, end = _month_or_year(None, None, found.group(1), now)
        return TimeScope(start.isoformat(), end.isoformat(), False, found.group(0))
    found = _LATEST.search(text)
    return TimeScope(latest=True, words=found.group(0)) if found else TimeScope()


def without_time_words(question: str, scope: TimeScope, terms: list[str], dates=()) -> list[str]:
    """``terms`` (names and numbers of the question) less those of the words that named its period:
    "2024" in "en 2024" is when the articles were published, not a word they must hold. A period that may
    be an event's rather than a publication's (a year, a month: not ``strict``) is taken as said only when
    a passage is of that period (``dates``, their publication dates); otherwise the passages must hold its
    words ("investi en 2023" asked of an article of 2025 that gives the total since 2019)."""
    if not scope.period or not (scope.strict or any(in_period(d, scope) for d in dates)):
        return terms
    said = set(re.findall(r"\w+", scope.words))
    return [t for t in terms if fold(t) not in said]


def in_period(date: str, scope: TimeScope) -> bool:
    """True when the ISO ``date`` lies in the scope's period (bounds inclusive; "" is in none)."""
    day = (date or "")[:10]
    return bool(day) and (not scope.date_from or day >= scope.date_from) and (not scope.date_to or day <= scope.date_to)


def _relative(name: str, now: dt.date) -> tuple[dt.date, dt.date]:
    monday = now - dt.timedelta(days=now.weekday())
    first = now.replace(day=1)
    if name == "this_week":  # the last seven days: on a Monday, "this week" still means the days just past
        return now - dt.timedelta(days=6), now
    if name == "last_week":
        return monday - dt.timedelta(days=7), monday - dt.timedelta(days=1)
    if name == "this_month":
        return first, now
    if name == "last_month":
        end = first - dt.timedelta(days=1)
        return end.replace(day=1), end
    if name == "this_year":
        return now.replace(month=1, day=1), now
    if name == "last_year":
        return dt.date(now.year - 1, 1, 1), dt.date(now.year - 1, 12, 31)
    return now - dt.timedelta(days=1), now - dt.timedelta(days=1)  # yesterday


def _month_or_year(month: str | None, year: str | None, year_only: str | None, now: dt.date):
    """The first and last day of a month (of ``year``, or its latest occurrence up to ``now``) or a year."""
    if year_only:
        y = int(year_only)
        return dt.date(y, 1, 1), dt.date(y, 12, 31)
    m = _MONTHS[month]
    y = int(year) if year else (now.year if m <= now.month else now.year - 1)
    end = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1))
    return dt.date(y, m, 1), end


def spoken_date(iso: str, language: str) -> str:
    """``2025-06-24`` as "24 juin 2025" (fr) or "24 June 2025" (en); "" for no date."""
    if not iso:
        return ""
    from babel.dates import format_date

    day = dt.date.fromisoformat(iso[:10])
    return format_date(day, format="d MMMM y", locale="fr" if language == "fr" else "en")


def according_to(iso: str, language: str, earlier: bool = False) -> str:
    """How an answer introduces what it cites from the article of date ``iso``: "Selon l'article du 24 juin
    2025 :" ("Plus tôt, l'article du … :" for an older one after a newer); "" when the article has no date."""
    day = spoken_date(iso, language)
    if not day:
        return ""
    if language == "fr":
        return f"Plus tôt, l'article du {day} indiquait :" if earlier else f"Selon l'article du {day} :"
    return f"Earlier, the article of {day} said:" if earlier else f"According to the article of {day}:"
