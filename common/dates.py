"""Dates of articles and of search filters: ISO 8601, and a day that exists."""
from __future__ import annotations

import datetime as dt
import re

from common.errors import InputError

_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ][0-9:.+\-Z]*)?")


def iso_date(value, where: str) -> str:
    """``value`` as YYYY-MM-DD ("" when empty); an InputError naming ``where`` when it is not a real date
    (``2025-13-45``, ``2025-02-30``) or not ISO 8601."""
    if value in (None, ""):
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    if not _SHAPE.fullmatch(text):
        raise InputError(f"{where}: date {text!r} is not ISO 8601; write it as YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(text[:10])
        if len(text) > 10:
            dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"{where}: date {text!r} does not exist ({exc}); write a real date as YYYY-MM-DD") from exc
    return day.isoformat()
