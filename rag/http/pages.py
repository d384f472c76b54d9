"""An article as a page for readers: the text in paragraphs, the cited span marked (``GET /articles/{id}/view``)."""
from __future__ import annotations

import html
import re

STYLE = """body{font:17px/1.6 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;color:#111827}
h1{font-size:1.5em;line-height:1.3}.meta{color:#6b7280;font-size:.9em}h2{font-size:1.15em;margin-top:1.4em}
mark{background:#fde68a;padding:0 2px;border-radius:2px;scroll-margin-top:40vh}"""


def article_page(record, start: int, end: int) -> str:
    """The HTML page of ``record`` (an ``ArticleRecord``) with ``text[start:end]`` marked as ``#cited``."""
    text = record.text
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    marked = start < end
    body = (_paragraphs(text[:start]) + '<mark id="cited">' + html.escape(text[start:end]) + "</mark>"
            + _paragraphs(text[end:])) if marked else _paragraphs(text)
    meta = " · ".join(html.escape(x) for x in (record.date, record.source) if x)
    link = (f' · <a href="{html.escape(record.url, quote=True)}" rel="noopener">source</a>'
            if record.url.startswith(("http://", "https://")) else "")
    return (f'<!doctype html><html lang="{html.escape(record.language or "fr")}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(record.title)}'
            f'</title><style>{STYLE}</style></head><body><h1>{html.escape(record.title)}</h1>'
            f'<div class="meta">{meta}{link}</div><article><p>{body}</p></article></body></html>')


def _paragraphs(text: str) -> str:
    """Escaped text: blank lines end a paragraph, ``#`` lines become headings, other newlines are kept."""
    out = html.escape(text)
    out = re.sub(r"(?m)^#{1,6}[ \t]+(.+)$", r"</p><h2>\1</h2><p>", out)
    return re.sub(r"\n\s*\n", "</p><p>", out).replace("\n", "<br>")
