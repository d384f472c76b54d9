"""HTML for answers and their sources: escaped text, [n] links, passages with the cited spans marked.

Everything works on the JSON shape of an answer (``Answer.to_dict()``), which is what the streaming
pipeline and the eval runner hand over. Each message is one ``<div>`` with no blank line inside,
so the chat's Markdown renderer passes it through as a raw HTML block.
"""
from __future__ import annotations

import html
import re
from urllib.parse import quote

from common.citations import MARK, cited_numbers
from ui.i18n import t

RELATED_SHOWN = 3  # closest passages offered when the answer abstains


# One pass over the text: HTML's special characters and those that make Markdown links, emphasis or
# code become entities (escaping twice would turn the "&#" of the first pass into text).
_LITERAL = str.maketrans({**{c: f"&#{ord(c)};" for c in "[]()*_`~\\|!#:"},
                          "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})


def literal(value: str) -> str:
    """Text shown as it is in the chat, which renders Markdown: HTML escaped, and the characters that
    make Markdown links, emphasis or code written as entities (``[x](javascript:…)`` stays text)."""
    return value.translate(_LITERAL)


def _text(value: str) -> str:
    """Literal text on one line (newlines as <br>), so no Markdown block can start inside it."""
    return re.sub(r"\n\s*\n\s*", "<br>", literal(value).replace("\r", "")).replace("\n", "<br>")


def cite_links(text: str, key: str, tips: dict[int, str] | None = None) -> str:
    """Literal answer text with each [n] turned into a link to source card ``{key}-n``; ``tips`` (passage
    n -> text) become the link's tooltip, so hovering a [n] shows what it rests on."""
    out, at = [], 0
    for m in MARK.finditer(text):
        tip = (tips or {}).get(int(m.group(1)), "")
        title = f' title="{html.escape(tip, quote=True)}"' if tip else ""
        out += [_text(text[at:m.start()]), f'<a class="cite" href="#{key}-{m.group(1)}"{title} '
                f'data-target="{key}-{m.group(1)}">[{m.group(1)}]</a>']
        at = m.end()
    return "".join([*out, _text(text[at:])])


_HEADING_MARK = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]+")


def highlighted(text: str, highlights) -> str:
    """The passage, escaped, with the spans ``(start, end)`` wrapped in <mark>; Markdown heading marks
    (``## ``) are left out of what is shown (the offsets stay those of the article's text)."""
    hidden = [(m.start(), m.end()) for m in _HEADING_MARK.finditer(text)]

    def shown(a: int, b: int) -> str:
        kept, at = [], a
        for x, y in hidden:
            if y <= at or x >= b:
                continue
            kept.append(text[at:max(at, x)])
            at = min(b, y)
        return _text("".join([*kept, text[at:b]]))

    out, pos = [], 0
    for start, end in sorted(tuple(h) for h in highlights):
        if start < pos:
            continue
        out += [shown(pos, start), f"<mark>{shown(start, end)}</mark>"]
        pos = end
    out.append(shown(pos, len(text)))
    return "".join(out)


def _linked(text: str, url: str) -> str:
    if (url or "").startswith(("http://", "https://")):
        return f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">{text}</a>'
    return text


def article_head(citation: dict, language: str = "en") -> str:
    """An article's title (linked when it has a URL), source and date, shown once above its passages; then
    the same story's copies elsewhere (wire copies, kept once), when there are some."""
    title = _linked(_text(citation["title"] or citation["article_id"]), citation.get("url") or "")
    source = f'<span class="outlet">{_text(citation["source"])}</span> ' if citation.get("source") else ""
    head = (f'<div class="article-head"><span class="title">{title}</span> {source}'
            f'<span class="date">{_text(citation.get("date") or "")}</span></div>')
    copies = citation.get("copies") or ()
    if not copies:
        return head
    names = ", ".join(_linked(_text(f'{c.get("source") or c["article_id"]} {c.get("date") or ""}'.strip()),
                              c.get("url") or "") for c in copies)
    return head + f'<div class="copies">{_text(t(language, "copies"))} {names}</div>'


def article_link(citation: dict) -> str:
    """The whole article's page, at the first sentence the answer used (else at the passage)."""
    spans = citation.get("highlights") or [[0, len(citation["text"])]]
    start, end = citation["start"] + spans[0][0], citation["start"] + spans[0][1]
    return f"/articles/{quote(citation['article_id'], safe='')}/view?start={start}&end={end}#cited"


def source_card(citation: dict, key: str, language: str) -> str:
    """One passage: its number, a link to the whole article at the cited span, and the text with the
    sentences used highlighted."""
    score = f'{t(language, "score")} {citation["score"]:.3f}'
    link = (f'<a class="open-article" href="{html.escape(article_link(citation), quote=True)}" target="_blank" '
            f'rel="noopener">{_text(t(language, "read_article"))}</a>')
    return (f'<div class="source" id="{key}-{citation["n"]}" title="{score}"><div class="source-head">'
            f'<span class="num">[{citation["n"]}]</span> {link}</div>'
            f'<div class="passage">{highlighted(citation["text"], citation.get("highlights") or ())}</div></div>')


def grouped_cards(citations: list[dict], key: str, language: str) -> str:
    """The passages grouped by article (in order of first appearance), each article's title once."""
    groups: dict[str, list[dict]] = {}
    for c in citations:
        groups.setdefault(c["article_id"], []).append(c)
    return "".join(f'<div class="article-group">{article_head(cs[0], language)}'
                   f'{"".join(source_card(c, key, language) for c in cs)}</div>' for cs in groups.values())


def sources_html(answer: dict, key: str, language: str) -> str:
    """The cited passages, or the closest ones offered as "related" when the answer abstains."""
    by_n = {c["n"]: c for c in answer["citations"]}
    if answer["abstained"]:
        shown, heading, kind = answer["citations"][:RELATED_SHOWN], t(language, "related"), "related"
    else:
        shown = [by_n[n] for n in cited_numbers(answer["answer"]) if n in by_n]
        heading, kind = t(language, "sources"), "sources"
    if not shown:
        return ""
    return (f'<div class="{kind}"><div class="sources-head">{_text(heading)}</div>'
            f'{grouped_cards(shown, key, language)}</div>')


def tooltips(answer: dict, limit: int = 300) -> dict[int, str]:
    """Passage n -> the sentences the answer used in it (else the passage's start), for the [n] tooltips."""
    out = {}
    for c in answer["citations"]:
        used = " ".join(c["text"][a:b] for a, b in c.get("highlights") or ()) or c["text"]
        out[c["n"]] = used if len(used) <= limit else used[:limit - 1] + "…"
    return out


def answer_html(answer: dict, key: str, language: str) -> str:
    """A whole chat message: the answer with its [n] links, then its sources and the reader's verdict."""
    kind = "abstained" if answer["abstained"] else "answered"
    meta = f'{_text(answer.get("backend", ""))} · {answer.get("timings_ms", {}).get("total", 0):.0f} ms'
    understood = (f'<div class="understood">{_text(t(language, "understood"))} {_text(answer["question"])}</div>'
                  if answer.get("asked") else "")
    return (f'<div class="rag-answer {kind}">{understood}'
            f'<div class="answer-text">{cite_links(answer["answer"], key, tooltips(answer))}</div>'
            f'{sources_html(answer, key, language)}<div class="answer-meta">{meta}{reading_html(answer, language)}'
            f'</div></div>')


def reading_html(answer: dict, language: str) -> str:
    """The reader's span and confidence; for an abstention, the best span it rejected (editors see why)."""
    r = answer.get("reading") or {}
    if not r.get("text"):
        return ""
    label = t(language, "reader_found" if r.get("accepted") and not answer["abstained"] else "reader_rejected")
    weighed = ", ".join(f"{k.replace('_', ' ')} {float(v):.2f}" for k, v in (r.get("features") or {}).items())
    title = f' title="{_text(weighed)}"' if weighed else ""
    return (f'<div class="reading"{title}>{_text(label)}: «{_text(r["text"])}» [{int(r.get("n", 0))}] · '
            f'{_text(t(language, "confidence"))} {float(r.get("confidence", 0)):.2f} · '
            f'{_text(t(language, "threshold"))} {float(r.get("threshold", 0)):.2f}</div>')


def streaming_html(text: str, language: str) -> str:
    """The answer while it streams in (before its sources are known to be cited)."""
    body = _text(text) if text else f'<span class="pending">{_text(t(language, "searching"))}</span>'
    return f'<div class="rag-answer streaming"><div class="answer-text">{body}</div></div>'


def error_html(message: str) -> str:
    """An error shown in place of an answer."""
    return f'<div class="rag-answer error"><div class="answer-text">{_text(message)}</div></div>'


COVERAGE_TITLES = 6


def coverage_html(articles, language: str) -> str:
    """The first screen's summary of what can be asked about: how many articles, their dates, the newest titles."""
    if not articles:
        return f'<div class="coverage empty">{_text(t(language, "no_articles"))}</div>'
    dates = sorted(a.date for a in articles if a.date)
    span = (f" · {_text(dates[0])} → {_text(dates[-1])}" if dates and dates[0] != dates[-1]
            else f" · {_text(dates[0])}" if dates else "")
    newest = sorted(articles, key=lambda a: a.date or "", reverse=True)[:COVERAGE_TITLES]
    items = "".join(f'<li>{_text(a.title)}{f" <span class=date>{_text(a.date)}</span>" if a.date else ""}</li>'
                    for a in newest)
    more = len(articles) - len(newest)
    tail = f'<li class="more">{_text(t(language, "and_more").format(n=more))}</li>' if more > 0 else ""
    head = t(language, "coverage").format(n=len(articles))
    return f'<div class="coverage"><div class="head">{_text(head)}{span}</div><ul>{items}{tail}</ul></div>'
