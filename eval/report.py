"""The summary table (terminal) and the self-contained HTML report of an answer evaluation."""
from __future__ import annotations

import base64
import html
import io
from collections import defaultdict

from common.citations import cited_numbers
from eval.metrics import find_span

PLOTTED = ("f1", "recall", "similarity", "citation_precision", "groundedness", "mrr")


def format_table(rows: list[dict], comparison: dict | None = None) -> str:
    """The summary as aligned text: metric, value, threshold, status (and change from the baseline)."""
    deltas = (comparison or {}).get("summary", {})
    lines = [f"{'metric':<24}{'value':>9}  {'threshold':<11}{'status':<7}" + ("  vs baseline" if comparison else "")]
    lines[0] = lines[0].rstrip()
    for row in rows:
        value = row["value"]
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        status = "" if row["ok"] is None else "ok" if row["ok"] else "FAIL"
        change = f"  {deltas[row['metric']]:+.4f}" if row["metric"] in deltas else ""
        lines.append(f"{row['metric']:<24}{shown:>9}  {row['bound']:<11}{status:<7}{change}".rstrip())
    if comparison:
        lines.append(f"\nvs baseline: {comparison['better']} items better, {comparison['worse']} worse, "
                     f"{len(comparison['new'])} new, {len(comparison['gone'])} gone")
        for change in comparison["items"]:
            if change["verdict"] in ("better", "worse"):
                lines.append(f"  {change['verdict']:<6} {change['item_id']}: {change['question']}")
    return "\n".join(lines)


def render_html(run: dict, rows: list[dict], comparison: dict | None = None, title: str = "Answer quality") -> str:
    """The whole report as one HTML page: summary, plots (inline PNG) and every item with its sources."""
    meta = ", ".join(f"{k}: {v}" for k, v in run.get("meta", {}).items())
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1><p class='meta'>{_e(meta)}</p>",
             _summary_html(rows, comparison), _plots_html(run), _changes_html(comparison),
             "<h2>Items</h2><label><input type='checkbox' id='only-fail'> only items that fail</label>",
             *(_item_html(r) for r in run["results"]),
             f"<script>{_JS}</script></body></html>"]
    return "\n".join(p for p in parts if p)


def _summary_html(rows: list[dict], comparison: dict | None) -> str:
    deltas = (comparison or {}).get("summary", {})
    body = "".join(
        f"<tr class='{_status_class(r['ok'])}'><td>{_e(r['metric'])}</td><td>{_num(r['value'])}</td>"
        f"<td>{_e(r['bound'])}</td><td>{'' if r['ok'] is None else 'ok' if r['ok'] else 'FAIL'}</td>"
        + (f"<td>{deltas[r['metric']]:+.4f}</td>" if r["metric"] in deltas else "<td></td>" if comparison else "")
        + "</tr>" for r in rows)
    head = ("<th>metric</th><th>value</th><th>threshold</th><th>status</th>"
            + ("<th>vs baseline</th>" if comparison else ""))
    return f"<h2>Summary</h2><table class='summary'><tr>{head}</tr>{body}</table>"


def _changes_html(comparison: dict | None) -> str:
    if not comparison:
        return ""
    rows = "".join(f"<tr class='{c['verdict']}'><td><a href='#item-{_e(c['item_id'])}'>{_e(c['item_id'])}</a></td>"
                   f"<td>{_e(c['verdict'])}</td><td>{_e(c['question'])}</td>"
                   f"<td>{_e(', '.join(f'{m} {d:+.3f}' for m, d in c['deltas'].items()))}</td></tr>"
                   for c in comparison["items"])
    return (f"<h2>Against the baseline</h2><p>{comparison['better']} items better, {comparison['worse']} worse, "
            f"{len(comparison['new'])} new, {len(comparison['gone'])} gone.</p>"
            f"<table><tr><th>item</th><th>change</th><th>question</th><th>metric changes</th></tr>{rows}</table>")


def _plots_html(run: dict) -> str:
    if not run["results"]:
        return ""
    images = [_png(_distributions, run), _png(_tag_bars, run)]
    return "<h2>Plots</h2>" + "".join(f"<img alt='plot' src='data:image/png;base64,{i}'>" for i in images)


def _png(draw, run: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt, run)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _distributions(plt, run: dict):
    """Histograms of the per-item scores."""
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.5))
    for ax, metric in zip(axes.flat, PLOTTED):
        values = [r["metrics"][metric] for r in run["results"] if r["metrics"].get(metric) is not None]
        low = 0.5 if metric == "similarity" else 0.0  # embedding cosines crowd into the top half
        ax.hist([max(v, low) for v in values], bins=[low + i * (1 - low) / 20 for i in range(21)],
                color="#4c78a8", edgecolor="white")
        ax.set_title(f"{metric} (n={len(values)}{', < 0.5 shown at 0.5' if low else ''})", fontsize=10)
        ax.set_xlim(low, 1)
    fig.suptitle("Score distributions per item")
    fig.tight_layout()
    return fig


def _tag_bars(plt, run: dict):
    """Share of items that pass, per tag."""
    tally = defaultdict(lambda: [0, 0])
    for r in run["results"]:
        for tag in r["item"].get("tags") or ["(no tag)"]:
            tally[tag][0] += r["ok"]
            tally[tag][1] += 1
    tags = sorted(tally, key=lambda t: (-tally[t][1], t))[:30]
    fig, ax = plt.subplots(figsize=(11, 0.3 * len(tags) + 1.2))
    ax.barh([f"{t} ({tally[t][1]})" for t in tags], [tally[t][0] / tally[t][1] for t in tags], color="#59a14f")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of items that pass")
    ax.set_title("Pass rate per tag (items)")
    fig.tight_layout()
    return fig


def _item_html(result: dict) -> str:
    item, answer = result["item"], result["answer"]
    tags = " ".join(f"<span class='tag'>{_e(t)}</span>" for t in item.get("tags", []))
    metrics = "".join(f"<tr class='{_status_class(result['passed'].get(m))}'><td>{_e(m)}</td><td>{_num(v)}</td>"
                      f"<td>{_pass_text(result['passed'].get(m))}</td></tr>"
                      for m, v in result["metrics"].items() if v is not None)
    cited = cited_numbers(answer["answer"])
    sources = "".join(_source_html(c, item.get("evidence", ""), c["n"] in cited)
                      for c in sorted(answer["citations"], key=lambda c: (c["n"] not in cited, c["n"])))
    return (f"<details class='item {'pass' if result['ok'] else 'fail'}' id='item-{_e(result['item_id'])}'"
            f"{'' if result['ok'] else ' open'}><summary><b>{'PASS' if result['ok'] else 'FAIL'}</b> "
            f"{_e(result['item_id'])} — {_e(item['question'])} {tags}</summary>"
            f"<p><b>Expected</b>{'' if item['answerable'] else ' (unanswerable)'}: {_e(item['expected_answer'])}</p>"
            f"<p><b>Answer</b>{' (abstained)' if answer['abstained'] else ''}: {_e(answer['answer'])}</p>"
            f"{_reading_html(answer)}<p><b>Evidence</b>: {_e(item.get('evidence') or '—')}</p>"
            f"<table class='metrics'>{metrics}</table><div class='sources'>{sources}</div></details>")


def _reading_html(answer: dict) -> str:
    """The reader's span and confidence, or for an abstention the best span it rejected."""
    r = answer.get("reading") or {}
    if not r.get("text"):
        return ""
    verdict = "span" if r.get("accepted") and not answer["abstained"] else "best rejected span"
    weighed = ", ".join(f"{_e(k.replace('_', ' '))} {_num(v)}" for k, v in (r.get("features") or {}).items())
    return (f"<p><b>Reader</b>: {verdict} «{_e(r['text'])}» [{_e(r.get('n'))}], confidence "
            f"{_num(r.get('confidence'))} (threshold {_num(r.get('threshold'))})"
            + (f"<br><small>verifier weighed: {weighed}</small>" if weighed else "") + "</p>")


def _source_html(citation: dict, evidence: str, cited: bool) -> str:
    """A passage with the evidence marked and the sentences the answer used underlined."""
    text = citation["text"]
    spans = [(a, b, "used") for a, b in citation.get("highlights", [])]
    found = find_span(text, evidence) if evidence else None
    if found:
        spans.append((*found, "evidence"))
    cuts = sorted({0, len(text), *(p for a, b, _ in spans for p in (a, b))})
    pieces = []
    for a, b in zip(cuts, cuts[1:]):
        kinds = sorted({k for s, e, k in spans if s <= a and b <= e})
        piece = _e(text[a:b])
        pieces.append(f"<span class='{' '.join(kinds)}'>{piece}</span>" if kinds else piece)
    where = f"{citation['title']} ({citation['date']})" if citation.get("date") else citation["title"]
    label = "cited" if cited else "retrieved, not cited"
    return (f"<div class='source {'cited' if cited else ''}'><div class='head'>[{citation['n']}] {_e(where)} — "
            f"{label}, score {citation['score']}{', contains the evidence' if found else ''}</div>"
            f"<div class='text'>{''.join(pieces)}</div></div>")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else _e(value)


def _status_class(ok) -> str:
    return "" if ok is None else "ok" if ok else "bad"


def _pass_text(ok) -> str:
    return "" if ok is None else "pass" if ok else "fail"


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
tr.bad td{background:#fde8e8}tr.ok td:last-child{color:#1a7f37}.meta{color:#666}
details.item{border:1px solid #ccc;border-left:6px solid #1a7f37;margin:.6em 0;padding:.3em .8em}
details.item.fail{border-left-color:#cf222e}summary{cursor:pointer}
.tag{background:#eef;border-radius:3px;padding:0 4px;font-size:12px;margin-left:2px}
.source{border-top:1px dashed #ccc;margin-top:.4em;padding-top:.3em}.source .head{color:#555;font-size:12px}
.source:not(.cited) .text{color:#777}.evidence{background:#fff2a8}.used{text-decoration:underline 2px #4c78a8}
.text{white-space:pre-wrap}img{max-width:100%;display:block;margin:.5em 0}tr.worse td{background:#fde8e8}
tr.better td{background:#e6f4ea}"""
_JS = """document.getElementById('only-fail').addEventListener('change',e=>{
for(const d of document.querySelectorAll('details.item.pass'))d.style.display=e.target.checked?'none':'';});"""
