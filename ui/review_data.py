"""What the review room shows, without Gradio: the eval set's rows and filters, the last run, item details."""
from __future__ import annotations

import html
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.text import fold
from eval.dataset import VERDICTS, EvalItem, EvalSet
from eval.runner import EvalRun, run_eval
from rag.pipeline import Pipeline
from ui.i18n import t
from ui.render import answer_html

ALL = ""  # the filter value that keeps everything
NO_VERDICT = "none"
RUN_STATES = ("pass", "fail", "not_run")
FALLBACK_EXAMPLES = [
    "Combien Microsoft a-t-il investi dans OpenAI ?",
    "Pourquoi Sam Altman s'est-il entretenu avec Satya Nadella ?",
    "What could OpenAI ask the US authorities to do?",
]


class ReviewRoom:
    """The eval set an editor works on, and its eval runs.

    Whole-set runs are written to ``runs_dir`` (one JSON each, the shape ``rag eval answers`` writes and
    ``--baseline`` reads), so they survive a restart: the latest is loaded at start, past ones are listed
    and any two can be compared item by item. A one-item run updates what is shown, in memory."""

    def __init__(self, eval_path: Path | str | None, get_pipeline: Callable[[], Pipeline],
                 runs_dir: Path | str | None = None):
        self.evalset, self.get_pipeline = EvalSet(eval_path), get_pipeline
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self._listed: dict[str, tuple[float, dict]] = {}  # run file -> (mtime, its row in runs()), read once
        self._results: dict[str, dict] = {}
        self._summary: dict = {}
        self._lock = threading.Lock()
        runs = self.runs()
        if runs:
            latest = self.load_run(runs[0]["name"])
            self._results = {r["item_id"]: r for r in latest.get("results", [])}
            self._summary = {**latest.get("summary", {}), "meta": latest.get("meta", {})}

    def runs(self) -> list[dict]:
        """Past whole-set runs, newest first: name, when, backend, pass rate."""
        if not self.runs_dir or not self.runs_dir.is_dir():
            return []
        out = []
        for path in sorted(self.runs_dir.glob("run-*.json"), key=lambda p: p.stem, reverse=True):
            try:
                mtime = path.stat().st_mtime
                cached = self._listed.get(path.name)
                if cached is None or cached[0] != mtime:  # every page load lists the runs: parse each once
                    data = json.loads(path.read_text(encoding="utf-8"))
                    meta = data.get("meta", {})
                    cached = (mtime, {"name": path.stem, "at": meta.get("at", ""), "backend": meta.get("backend", ""),
                                      "by": meta.get("by", ""), "pass_rate": data.get("summary", {}).get("pass_rate")})
                    self._listed[path.name] = cached
            except (OSError, json.JSONDecodeError):
                continue  # a damaged file is skipped, not fatal
            out.append(cached[1])
        return out

    def load_run(self, name: str) -> dict:
        """One saved run (``EvalRun.to_dict()``) by its name."""
        from common.errors import NotFoundError

        path = (self.runs_dir or Path(".")) / f"{name}.json"
        if not re.fullmatch(r"run-[0-9TZ-]+-[a-z0-9_-]+", name) or not path.is_file():
            raise NotFoundError(f"no saved eval run {name!r}; the list shows the saved ones")
        return json.loads(path.read_text(encoding="utf-8"))

    def compare(self, newer: str, older: str) -> dict:
        """Per-item changes from run ``older`` to run ``newer`` (what ``rag eval answers --baseline`` says)."""
        from eval.gate import compare_runs

        return compare_runs(self.load_run(newer), self.load_run(older))

    def _save(self, run: EvalRun, by: str) -> str:
        """Write a whole-set run atomically; returns its name."""
        if not self.runs_dir:
            return ""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        at = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
        data = run.to_dict()
        data["meta"] = {**data["meta"], "at": at, "by": by}
        name = f"run-{at}-{re.sub(r'[^a-z0-9_-]', '-', str(data['meta'].get('backend', 'default')).lower())}"
        base, n = name, 1
        while (self.runs_dir / f"{name}.json").exists():  # two runs in the same second keep both
            n += 1
            name = f"{base}-{n}"
        tmp = self.runs_dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.runs_dir / f"{name}.json")
        return name

    def result(self, item_id: str) -> dict | None:
        """The last run's result for an item (``ItemResult.to_dict()``), if it was run."""
        with self._lock:
            return self._results.get(item_id)

    @property
    def summary(self) -> dict:
        """The summary of the last run over the whole set (empty before one)."""
        with self._lock:
            return dict(self._summary)

    def run(self, items: list[EvalItem], backend: str | None = None, progress=None, by: str = "") -> EvalRun:
        """Run the eval on ``items`` and keep each result; a whole-set run also keeps the summary and is
        saved to ``runs_dir``."""
        run = run_eval(self.get_pipeline(), items, backend=backend or None, progress=progress)
        whole = {i.id for i in items} >= {i.id for i in self.evalset.items()}
        name = self._save(run, by) if whole else ""
        with self._lock:
            self._results.update({r.item_id: r.to_dict() for r in run.results})
            if whole:
                self._summary = {**run.summary, "meta": {**run.meta, **({"run": name} if name else {})}}
        return run

    def run_state(self, item_id: str) -> str:
        """"pass", "fail" or "not_run" for the item's last result."""
        result = self.result(item_id)
        return "not_run" if result is None else "pass" if result["ok"] else "fail"

    def rows(self, language: str, tag: str = ALL, verdict: str = ALL, run: str = ALL, search: str = "") -> list[list]:
        """Table rows (id, question, language, tags, answerable, last verdict, last run) that pass the filters;
        ``search`` keeps the items whose id, question, expected answer, evidence or tags contain all its words
        (case and accents ignored)."""
        rows, words = [], fold(search).split()
        for item in self.evalset.items():
            last = last_verdict(item)
            state = self.run_state(item.id)
            if ((tag and tag not in item.tags) or (verdict and (last or NO_VERDICT) != verdict)
                    or (run and state != run) or (words and not _matches(item, words))):
                continue
            rows.append([item.id, item.question, item.language, ", ".join(item.tags),
                         t(language, "yes" if item.answerable else "no"),
                         t(language, f"v_{last}") if last else "", t(language, state)])
        return rows

    def tags(self) -> list[str]:
        """Every tag used in the set, sorted."""
        return sorted({tag for item in self.evalset.items() for tag in item.tags})


def _matches(item: EvalItem, words: list[str]) -> bool:
    text = fold(" ".join((item.id, item.question, item.expected_answer, item.evidence, *item.tags)))
    return all(w in text for w in words)


def last_verdict(item: EvalItem) -> str:
    """The item's most recent verdict ("" when it has none)."""
    return item.verdicts[-1]["verdict"] if item.verdicts else ""


def headers(language: str) -> list[str]:
    """The table's column names."""
    return [t(language, k) for k in ("c_id", "c_question", "c_lang", "c_tags", "c_answerable", "c_verdict", "c_run")]


def filter_choices(language: str, tags: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(label, value) choices of the three filters."""
    every = (t(language, "all"), ALL)
    return {"tag": [every, *[(tag, tag) for tag in tags]],
            "verdict": [every, (t(language, "none"), NO_VERDICT), *[(t(language, f"v_{v}"), v) for v in VERDICTS]],
            "run": [every, *[(t(language, s), s) for s in RUN_STATES]]}


def verdict_choices(language: str) -> list[tuple[str, str]]:
    """(label, value) choices of the verdict buttons."""
    return [(t(language, f"v_{v}"), v) for v in VERDICTS]


def history_markdown(item: EvalItem, language: str) -> str:
    """The item's verdicts, newest first, then its edits (which fields changed, when, by whom)."""
    if not item.verdicts and not item.edits:
        return f"_{t(language, 'history')}: {t(language, 'none')}_"
    lines = [f"**{t(language, 'history')}**"] if item.verdicts else []
    for v in reversed(item.verdicts):
        comment = f" — {_md(v['comment'])}" if v.get("comment") else ""
        by = f" · {_md(v['by'])}" if v.get("by") else ""
        lines.append(f"- `{v.get('at', '')}`{by} **{t(language, 'v_' + v['verdict'])}**{comment}")
    if item.edits:
        lines.append(f"\n**{t(language, 'edits')}**")
    for e in reversed(item.edits):
        by = f" · {_md(e['by'])}" if e.get("by") else ""
        changed = "; ".join(f"{_md(name)}: «{_md(_short(old))}» → «{_md(_short(new))}»"
                            for name, (old, new) in e["changed"].items())
        lines.append(f"- `{e.get('at', '')}`{by} {changed}")
    return "\n".join(lines)


def _short(value, limit: int = 80) -> str:
    text = ", ".join(value) if isinstance(value, list) else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def metrics_html(result: dict | None, language: str) -> str:
    """The metric values of one result, each with its pass mark, and whether the item passed overall."""
    if result is None:
        return f'<div class="metrics empty">{html.escape(t(language, "no_run"))}</div>'
    signs, marks = {True: "✓", False: "✗", None: ""}, result.get("marks", {})
    rows = "".join(f"<tr><td>{html.escape(m)}</td><td>{_number(v)}</td><td>{html.escape(marks.get(m, ''))}</td>"
                   f"<td>{signs[result['passed'].get(m)]}</td></tr>"
                   for m, v in result["metrics"].items() if v is not None)
    verdict = t(language, "pass" if result["ok"] else "fail")
    why = "".join(f"<li>{html.escape(w)}</li>" for w in result.get("why", ()))
    return (f'<div class="metrics"><div class="overall {"ok" if result["ok"] else "ko"}">{html.escape(verdict)}</div>'
            f'{f"<ul class=why>{why}</ul>" if why else ""}{_evidence_rank(result, language)}'
            f'<table><tr><th>{t(language, "metric")}</th><th>{t(language, "value")}</th>'
            f'<th>{t(language, "mark")}</th><th></th></tr>{rows}</table></div>')


def _evidence_rank(result: dict, language: str) -> str:
    """Where the evidence ranked among the retrieved passages (answerable items with evidence)."""
    mrr, passages = result["metrics"].get("mrr"), len(result.get("answer", {}).get("citations", ()))
    if mrr is None:
        return ""
    where = (t(language, "evidence_at").format(rank=round(1 / mrr), n=passages) if mrr
             else t(language, "evidence_missing").format(n=passages))
    return f'<div class="evidence-rank">{html.escape(where)}</div>'


def current_answer_html(result: dict | None, language: str) -> str:
    """The system's answer from the last run of the item, with its sources."""
    if result is None:
        return ""
    return answer_html(result["answer"], f"rv-{result['item_id']}", language)


def summary_html(summary: dict, language: str) -> str:
    """The last whole-set run: what was run, then each metric's value as a compact grid."""
    if not summary:
        return f'<div class="run-summary empty">{html.escape(t(language, "no_run"))}</div>'
    meta = summary.get("meta", {})
    what = " · ".join(f"{html.escape(str(k))} {_number(v)}" for k, v in meta.items())
    cells = "".join(f'<div class="cell"><span class="k">{html.escape(k)}</span>'
                    f'<span class="v">{_number(v)}</span></div>'
                    for k, v in summary.items() if k != "meta")
    return (f'<div class="run-summary"><div class="head">{html.escape(t(language, "summary"))}</div>'
            f'<div class="meta">{what}</div><div class="grid">{cells}</div></div>')


def runs_choices(room: ReviewRoom, language: str) -> list[tuple[str, str]]:
    """(label, name) of the saved runs, newest first."""
    def label(r):
        rate = f" · {t(language, 'pass')} {r['pass_rate']:.2f}" if isinstance(r["pass_rate"], (int, float)) else ""
        return f"{r['at']} · {r['backend']}{rate}" + (f" · {r['by']}" if r["by"] else "")
    return [(label(r), r["name"]) for r in room.runs()]


def changes_html(comparison: dict, language: str) -> str:
    """The items whose result changed between two runs, with the metric deltas."""
    if not comparison["items"] and not comparison["new"] and not comparison["gone"]:
        return f'<div class="run-changes empty">{html.escape(t(language, "no_change"))}</div>'
    rows = "".join(
        f'<tr class="{c["verdict"]}"><td>{html.escape(c["item_id"])}</td><td>{html.escape(c["question"])}</td>'
        f'<td>{html.escape(t(language, "pass" if c["was_ok"] else "fail"))} → '
        f'{html.escape(t(language, "pass" if c["ok"] else "fail"))}</td>'
        f'<td>{html.escape(", ".join(f"{m} {d:+.3f}" for m, d in c["deltas"].items()))}</td></tr>'
        for c in comparison["items"])
    head = (f'<div class="head">{comparison["better"]} {html.escape(t(language, "better"))}, {comparison["worse"]} '
            f'{html.escape(t(language, "worse"))}</div>')
    return f'<div class="run-changes">{head}<table>{rows}</table></div>'


def example_questions(eval_path: Path | str | None, per_language: int = 3) -> list[str]:
    """Questions for readers to start with: the first answerable items of the eval set in each language."""
    from common.errors import RagError

    try:
        items = EvalSet(eval_path).items()
    except RagError:
        return FALLBACK_EXAMPLES
    picked: dict[str, list[str]] = {}
    for item in items:
        if item.answerable and len(picked.setdefault(item.language, [])) < per_language:
            picked[item.language].append(item.question)
    return [q for questions in picked.values() for q in questions] or FALLBACK_EXAMPLES


def _number(value) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else html.escape(str(value))


def _md(text: str) -> str:
    """Text shown literally in Markdown."""
    return html.escape(text).replace("\n", " ").replace("*", r"\*").replace("_", r"\_").replace("`", r"\`")
