"""HTML for answers and their sources (escaped, with the cited spans highlighted)."""
from __future__ import annotations

import html
import re

from rag.types import Answer, Citation

_MARK = re.compile(r"\[(\d+)\]")


def answer_markdown(answer: Answer) -> str:
    """The answer text with each [n] turned into a link to its source card."""
    text = html.escape(answer.answer)
    return _MARK.sub(lambda m: f'<a href="#src-{m.group(1)}" class="cite">[{m.group(1)}]</a>', text)


def highlighted(citation: Citation) -> str:
    """The passage text, escaped, with the answer's sentences wrapped in <mark>."""
    out, pos = [], 0
    for start, end in sorted(citation.highlights):
        out += [html.escape(citation.text[pos:start]), f"<mark>{html.escape(citation.text[start:end])}</mark>"]
        pos = end
    out.append(html.escape(citation.text[pos:]))
    return "".join(out).replace("\n", "<br>")


def sources_html(answer: Answer, labels: dict[str, str]) -> str:
    """Source cards: the cited passages, or the closest ones as "related" when the answer abstains."""
    cited = {int(n) for n in _MARK.findall(answer.answer)}
    shown = answer.citations if answer.abstained else [c for c in answer.citations if c.n in cited]
    heading = labels["related"] if answer.abstained else labels["sources"]
    cards = []
    for c in shown[:5]:
        title = html.escape(c.title)
        if c.url:
            title = f'<a href="{html.escape(c.url)}" target="_blank" rel="noopener">{title}</a>'
        cards.append(
            f'<div class="source" id="src-{c.n}"><div class="source-head"><span class="num">[{c.n}]</span> '
            f'{title} <span class="date">{html.escape(c.date)}</span> <span class="score">{c.score:.2f}</span></div>'
            f'<div class="passage">{highlighted(c)}</div></div>'
        )
    return f'<div class="sources"><h4>{html.escape(heading)}</h4>{"".join(cards)}</div>'
