"""The editors' review room: the eval set as a filtered table, one item's answer and metrics, verdicts, edits.

Every change goes through the eval data layer (``eval.dataset.EvalSet``: locked, atomic writes) to the
file named by ``RAG_EVAL_SET``; eval results are kept in memory for the filters and the summary.
Reading is open; every write (verdict, edit, new item, eval run) takes the editor's key as an input of
its event and checks it in the handler, on the server (``rag.keys.editor_for``), so calling the event
directly through Gradio's queue without a valid key changes nothing. A verdict records who gave it.
"""
from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from common.text import detect_language
from eval.dataset import EvalItem
from rag.keys import editor_for
from rag.pipeline import Pipeline
from rag.settings import Settings
from ui.chat import Relabel
from ui.i18n import t
from ui.messages import error_message
from ui.review_data import (
    ALL,
    ReviewRoom,
    changes_html,
    current_answer_html,
    example_questions,
    filter_choices,
    headers,
    history_markdown,
    metrics_html,
    runs_choices,
    summary_html,
    verdict_choices,
)

__all__ = ["ReviewTab", "build_review_tab", "example_questions"]
PRIVATE = {"api_visibility": "private"}  # the review room's events are not part of the public API


@dataclass(frozen=True)
class ReviewTab:
    """What the rest of the UI needs from the review room."""

    room: ReviewRoom
    relabel: Relabel
    refresh: Callable  # (language, tag, verdict, run, search) -> what a page load shows
    refresh_inputs: list
    refresh_outputs: list


def guarded(outputs: int):
    """Run a handler whose first argument is the language; an error fills the status line instead."""
    def wrap(handler):
        @functools.wraps(handler)
        def run(self, language, *args, **kwargs):
            try:
                return handler(self, language, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- the UI's edge: shown to the editor, logged if unexpected
                message = "⚠ " + error_message(exc, language).replace("\n", " ")
                gr.Warning(message)
                return (message, *[gr.update()] * (outputs - 1))
        return run
    return wrap


def signed(handler):
    """A write handler: its second argument, the editor key, becomes the editor's name (``by``) or an error."""
    @functools.wraps(handler)
    def run(self, language, key, *args, **kwargs):
        return handler(self, language, editor_for(self.settings, key), *args, **kwargs)
    return run


def done(message: str) -> str:
    """A success line for the status area (also shown as a toast)."""
    gr.Info(message, duration=4)
    return f"✓ {message}"


class Handlers:
    """The review room's event handlers. Each takes the language first and returns the status line first."""

    def __init__(self, room: ReviewRoom, settings: Settings):
        from eval.feedback import FeedbackStore

        self.room, self.settings = room, settings
        self.feedback = FeedbackStore(settings.feedback_file)

    def table(self, language: str, tag: str, verdict: str, run: str, search: str = "") -> pd.DataFrame:
        """The filtered eval set as the table's value."""
        return pd.DataFrame(self.room.rows(language, tag or ALL, verdict or ALL, run or ALL, search or ""),
                            columns=headers(language))

    def detail(self, item: EvalItem, language: str) -> tuple:
        """(header, question, expected, evidence, history, answer, metrics) of one item."""
        result = self.room.result(item.id)
        header = f"**{item.id}** · {item.language} · {', '.join(item.tags) or '—'}"
        return (header, item.question, item.expected_answer, item.evidence, history_markdown(item, language),
                current_answer_html(result, language), metrics_html(result, language))

    @guarded(outputs=9)
    def select(self, language, backend, evt: gr.SelectData):
        """Show the clicked item; its answer is computed once if no run has it yet.

        The table is left as it is (its "last run" column catches up with the next refresh), so that
        it keeps its scroll position while the editor goes through the items."""
        item = self.room.evalset.get(str(evt.row_value[0]) if evt.row_value else "")
        if self.room.result(item.id) is None:
            self.room.run([item], backend)
        return ("", item.id, *self.detail(item, language))

    @guarded(outputs=4)
    @signed
    def record(self, language, by, item_id, verdict, comment, tag, verdict_filter, run, search=""):
        """Record the editor's verdict on the selected item."""
        if not item_id:
            return t(language, "select_first"), gr.update(), gr.update(), gr.update()
        item = self.room.evalset.record_verdict(item_id, verdict or "", comment or "", by=by)
        return (done(f"{t(language, 'recorded')}: {item.id} → {t(language, 'v_' + verdict)} ({by})"),
                history_markdown(item, language), "", self.table(language, tag, verdict_filter, run, search))

    @guarded(outputs=3)
    @signed
    def record_shown(self, language, by, verdict, comment, tag, verdict_filter, run, search=""):
        """Record the editor's verdict on every item the table shows (its filters and search)."""
        if not verdict:
            return t(language, "pick_verdict"), gr.update(), gr.update()
        if not any(x and x != ALL for x in (tag, verdict_filter, run)) and not (search or "").strip():
            return t(language, "filter_first"), gr.update(), gr.update()
        ids = [row[0] for row in self.room.rows(language, tag or ALL, verdict_filter or ALL, run or ALL, search or "")]
        for item_id in ids:
            self.room.evalset.record_verdict(item_id, verdict, comment or "", by=by)
        return (done(f"{t(language, 'recorded')}: {len(ids)} {t(language, 'items')} → {t(language, 'v_' + verdict)} "
                     f"({by})"), "", self.table(language, tag, verdict_filter, run, search))

    @guarded(outputs=2)
    @signed
    def save(self, language, by, item_id, question, expected, evidence, tag, verdict, run, search=""):
        """Save the edited question, expected answer and evidence of the selected item."""
        if not item_id:
            return t(language, "select_first"), gr.update()
        item = self.room.evalset.update(item_id, by=by, question=question or "", expected_answer=expected or "",
                                        evidence=evidence or "")
        return done(f"{t(language, 'saved')}: {item.id}"), self.table(language, tag, verdict, run, search)

    @guarded(outputs=4)
    @signed
    def run_item(self, language, by, item_id, backend, tag, verdict, run, search=""):
        """Run the eval on the selected item and show its answer and metrics."""
        if not item_id:
            return t(language, "select_first"), gr.update(), gr.update(), gr.update()
        self.room.run([self.room.evalset.get(item_id)], backend)
        result = self.room.result(item_id)
        return (done(f"{t(language, 'ran')} {item_id}: {t(language, 'pass' if result['ok'] else 'fail')}"),
                current_answer_html(result, language), metrics_html(result, language),
                self.table(language, tag, verdict, run, search))

    @guarded(outputs=5)
    @signed
    def run_all(self, language, by, item_id, backend, tag, verdict, run, search="", progress=gr.Progress()):
        """Run the eval on the whole set; show the summary and refresh the selected item."""
        items = self.room.evalset.items()
        self.room.run(items, backend, progress=lambda i, n: progress((i, n), desc=t(language, "running")), by=by)
        result = self.room.result(item_id) if item_id else None
        keep = gr.update()
        return (done(f"{t(language, 'ran')} {len(items)} {t(language, 'items')}"),
                summary_html(self.room.summary, language), self.table(language, tag, verdict, run, search),
                current_answer_html(result, language) if result else keep,
                metrics_html(result, language) if result else keep)

    @guarded(outputs=7)
    @signed
    def add(self, language, by, question, expected, evidence, answerable, item_language, tags, tag, verdict, run,
            search=""):
        """Add a new item (its id is the next free one) and clear the form."""
        item = self.room.evalset.add(EvalItem("", question or "", expected or "", evidence or "", bool(answerable),
                                              item_language or "fr",
                                              tuple(x.strip() for x in (tags or "").split(",") if x.strip())))
        return (done(f"{t(language, 'added')}: {item.id}"), self.table(language, tag, verdict, run, search),
                gr.update(choices=filter_choices(language, self.room.tags())["tag"]), "", "", "", "")

    @guarded(outputs=2)
    def export(self, language, fmt):
        """The whole set, with its verdicts, as a file to download (JSON Lines or CSV)."""
        from eval.dataset import items_to_csv, items_to_jsonl

        items = self.room.evalset.items()
        folder = Path(tempfile.mkdtemp(prefix="eval-export-"))
        path = folder / f"{self.room.evalset.path.stem}.{fmt}"
        path.write_text(items_to_csv(items) if fmt == "csv" else items_to_jsonl(items), encoding="utf-8")
        return done(f"{t(language, 'exported')}: {len(items)} {t(language, 'items')}"), str(path)

    @guarded(outputs=3)
    @signed
    def import_file(self, language, by, upload, tag, verdict, run, search=""):
        """Add or update items from an exported file; nothing is written when any item is wrong."""
        from eval.dataset import parse_items

        if not upload:
            return t(language, "pick_file"), gr.update(), gr.update()
        path = Path(upload)
        result = self.room.evalset.import_items(parse_items(path.read_text(encoding="utf-8"), path.name), path.name)
        return (done(f"{t(language, 'imported')} ({by}): {len(result['added'])} {t(language, 'items')}, "
                     f"{len(result['updated'])} {t(language, 'updated')}"),
                self.table(language, tag, verdict, run, search),
                gr.update(choices=filter_choices(language, self.room.tags())["tag"]))

    @guarded(outputs=3)
    @signed
    def delete(self, language, by, item_id, tag, verdict, run, search=""):
        """Remove the selected item from the set."""
        if not item_id:
            return t(language, "select_first"), gr.update(), gr.update()
        self.room.evalset.delete(item_id)
        return (done(f"{t(language, 'deleted')} ({by}): {item_id}"), self.table(language, tag, verdict, run, search),
                "")

    def feedback_table(self, language: str) -> pd.DataFrame:
        """The readers' 👎, newest first: candidate items for the eval set."""
        rows = [[f.at, f.reason or "👎", f.question, f.answer[:300]] for f in self.feedback.items("down")[:100]]
        return pd.DataFrame(rows, columns=[t(language, k) for k in ("c_at", "c_reason", "c_question", "c_answer")])

    @staticmethod
    def feedback_pick(evt: gr.SelectData):
        """A 👎's question into the new-item form (an editor writes the expected answer)."""
        row = evt.row_value or []
        if len(row) < 3:
            return gr.update(), gr.update(), gr.update()
        return row[2], detect_language(str(row[2]), default="fr"), gr.update(open=True)

    def loaded(self, language, tag, verdict, run, search=""):
        """What a page (re)load shows: the last run's summary, the table and the saved runs, from the server
        as it is now, not as it was when the page was built."""
        choices = runs_choices(self.room, language)
        first = choices[0][1] if choices else None
        second = choices[1][1] if len(choices) > 1 else None
        return (summary_html(self.room.summary, language), self.table(language, tag, verdict, run, search),
                gr.update(choices=choices, value=first), gr.update(choices=choices, value=second),
                self.feedback_table(language))

    @guarded(outputs=2)
    def compare(self, language, newer, older):
        """The per-item changes from the run ``older`` to the run ``newer``."""
        if not newer or not older:
            return t(language, "pick_two_runs"), gr.update()
        return "", changes_html(self.room.compare(newer, older), language)

    @staticmethod
    def from_chat(turns: list[dict]):
        """The last question asked in the chat, and its language, for the new-item form."""
        asked = [m["content"] for m in turns or [] if m["role"] == "user"]
        if not asked:
            return gr.update(), gr.update()
        return asked[-1], detect_language(asked[-1], default="fr")


@dataclass(frozen=True)
class View:
    """The review room's components."""

    intro: gr.Markdown
    key: gr.Textbox
    status: gr.Markdown
    filters: tuple[gr.Dropdown, gr.Dropdown, gr.Dropdown, gr.Textbox]  # tag, verdict, run, search
    refresh: gr.Button
    grid: gr.Dataframe
    selected: gr.State
    item: dict  # header, question, expected, evidence, save, verdict, comment, record, history
    result: dict  # answer_label, answer, metrics_label, metrics, run_item
    run_all: gr.Button
    summary: gr.HTML
    history: dict  # accordion, newer, older, compare, changes
    feedback: dict  # accordion, table
    adder: dict  # accordion, from_chat, question, expected, evidence, answerable, language, tags, add
    transfer: dict  # accordion, jsonl, csv, delete, download, upload, import


def _layout(room: ReviewRoom, handlers: Handlers, lang: str) -> View:
    choices = filter_choices(lang, room.tags())
    with gr.Row(equal_height=True, elem_id="review-head"):
        intro = gr.Markdown(t(lang, "review_intro"))
        key = gr.Textbox(label=t(lang, "editor_key"), type="password", elem_id="editor-key", max_lines=1,
                         placeholder=t(lang, "editor_key_hint"), scale=0, min_width=260)
    status = gr.Markdown("", elem_id="review-status")
    with gr.Row(equal_height=True):
        filters = (gr.Dropdown(choices["tag"], value=ALL, label=t(lang, "f_tag"), elem_id="f-tag", scale=2),
                   gr.Dropdown(choices["verdict"], value=ALL, label=t(lang, "f_verdict"), elem_id="f-verdict", scale=2),
                   gr.Dropdown(choices["run"], value=ALL, label=t(lang, "f_run"), elem_id="f-run", scale=2),
                   gr.Textbox("", label=t(lang, "f_search"), placeholder=t(lang, "f_search_hint"), elem_id="f-search",
                              max_lines=1, scale=3))
        refresh = gr.Button(t(lang, "refresh"), elem_id="refresh", scale=1, size="sm")
        run_all = gr.Button(t(lang, "run_all"), elem_id="run-all", scale=1, size="sm")
    summary = gr.HTML(summary_html(room.summary, lang), elem_id="run-summary")
    with gr.Accordion(t(lang, "past_runs"), open=False, elem_id="past-runs") as accordion:
        choices = runs_choices(room, lang)
        with gr.Row(equal_height=True):
            history = {"accordion": accordion,
                       "newer": gr.Dropdown(choices, value=choices[0][1] if choices else None, label=t(lang, "run_a"),
                                            elem_id="run-newer", scale=3),
                       "older": gr.Dropdown(choices, value=choices[1][1] if len(choices) > 1 else None,
                                            label=t(lang, "run_b"), elem_id="run-older", scale=3),
                       "compare": gr.Button(t(lang, "compare"), elem_id="compare-runs", scale=1, size="sm")}
        history["changes"] = gr.HTML("", elem_id="run-changes")
    with gr.Accordion(t(lang, "feedback"), open=False, elem_id="reader-feedback") as fb_accordion:
        feedback = {"accordion": fb_accordion,
                    "table": gr.Dataframe(handlers.feedback_table(lang), interactive=False, wrap=True, max_height=260,
                                          elem_id="feedback-table")}
    grid = gr.Dataframe(handlers.table(lang, ALL, ALL, ALL), interactive=False, wrap=True, max_height=330,
                        elem_id="eval-table", column_widths=["8%", "44%", "7%", "15%", "9%", "9%", "8%"])
    with gr.Row():
        with gr.Column(scale=1):
            item = _item_panel(lang)
        with gr.Column(scale=1):
            result = {"answer_label": gr.Markdown(f"**{t(lang, 'current')}**"),
                      "answer": gr.HTML("", elem_id="item-answer"),
                      "metrics_label": gr.Markdown(f"**{t(lang, 'metrics')}**"),
                      "metrics": gr.HTML("", elem_id="item-metrics"),
                      "run_item": gr.Button(t(lang, "run_item"), elem_id="run-item")}
    return View(intro, key, status, filters, refresh, grid, gr.State(""), item, result, run_all, summary, history,
                feedback, _adder(lang), _transfer(lang))


def _item_panel(lang: str) -> dict:
    return {"header": gr.Markdown(t(lang, "pick"), elem_id="item-header"),
            "question": gr.Textbox(label=t(lang, "question"), lines=2, elem_id="item-question"),
            "expected": gr.Textbox(label=t(lang, "expected"), lines=3, elem_id="item-expected"),
            "evidence": gr.Textbox(label=t(lang, "evidence"), lines=3, elem_id="item-evidence"),
            "save": gr.Button(t(lang, "save"), elem_id="save-item"),
            "verdict": gr.Radio(verdict_choices(lang), label=t(lang, "verdict"), elem_id="verdict"),
            "comment": gr.Textbox(label=t(lang, "comment"), lines=2, elem_id="verdict-comment"),
            "record": gr.Button(t(lang, "record"), variant="primary", elem_id="record-verdict"),
            "record_shown": gr.Button(t(lang, "record_shown"), size="sm", elem_id="record-shown"),
            "history": gr.Markdown("", elem_id="verdict-history")}


def _transfer(lang: str) -> dict:
    with gr.Accordion(t(lang, "transfer"), open=False, elem_id="transfer") as accordion:
        with gr.Row():
            parts = {"accordion": accordion,
                     "jsonl": gr.Button(t(lang, "export_jsonl"), size="sm", elem_id="export-jsonl"),
                     "csv": gr.Button(t(lang, "export_csv"), size="sm", elem_id="export-csv"),
                     "delete": gr.Button(t(lang, "delete"), size="sm", variant="stop", elem_id="delete-item")}
        parts["download"] = gr.File(label=t(lang, "exported"), interactive=False, elem_id="export-file")
        parts["upload"] = gr.File(label=t(lang, "import_file"), file_types=[".jsonl", ".csv", ".json"],
                                  type="filepath", elem_id="import-file")
        parts["import"] = gr.Button(t(lang, "import"), size="sm", elem_id="import-items")
    return parts


def _adder(lang: str) -> dict:
    with gr.Accordion(t(lang, "new_item"), open=False, elem_id="new-item") as accordion:
        parts = {"accordion": accordion, "from_chat": gr.Button(t(lang, "from_chat"), size="sm", elem_id="from-chat"),
                 "question": gr.Textbox(label=t(lang, "question"), lines=2, elem_id="new-question"),
                 "expected": gr.Textbox(label=t(lang, "expected"), lines=2, elem_id="new-expected"),
                 "evidence": gr.Textbox(label=t(lang, "evidence"), lines=2, elem_id="new-evidence")}
        with gr.Row():
            parts |= {"answerable": gr.Checkbox(True, label=t(lang, "answerable"), elem_id="new-answerable"),
                      "language": gr.Dropdown(["fr", "en"], value="fr", label=t(lang, "item_lang"),
                                              elem_id="new-language"),
                      "tags": gr.Textbox(label=t(lang, "tags"), elem_id="new-tags")}
        parts["add"] = gr.Button(t(lang, "add"), variant="primary", elem_id="add-item")
    return parts


def _wire(v: View, h: Handlers, language: gr.Radio, turns: gr.State, backend: gr.Dropdown) -> None:
    i, r, a, filters = v.item, v.result, v.adder, list(v.filters)
    for trigger in (*filters, language):
        trigger.change(h.table, [language, *filters], v.grid, **PRIVATE)
    v.refresh.click(h.table, [language, *filters], v.grid, **PRIVATE).then(
        lambda L: gr.update(choices=filter_choices(L, h.room.tags())["tag"]), language, v.filters[0], **PRIVATE).then(
        h.feedback_table, language, v.feedback["table"], **PRIVATE)
    details = [i["header"], i["question"], i["expected"], i["evidence"], i["history"], r["answer"], r["metrics"]]
    v.grid.select(h.select, [language, backend], [v.status, v.selected, *details], **PRIVATE)
    i["record"].click(h.record, [language, v.key, v.selected, i["verdict"], i["comment"], *filters],
                      [v.status, i["history"], i["comment"], v.grid], **PRIVATE)
    i["record_shown"].click(h.record_shown, [language, v.key, i["verdict"], i["comment"], *filters],
                            [v.status, i["comment"], v.grid], **PRIVATE)
    i["save"].click(h.save, [language, v.key, v.selected, i["question"], i["expected"], i["evidence"], *filters],
                    [v.status, v.grid], **PRIVATE)
    r["run_item"].click(h.run_item, [language, v.key, v.selected, backend, *filters],
                        [v.status, r["answer"], r["metrics"], v.grid], **PRIVATE)
    v.run_all.click(h.run_all, [language, v.key, v.selected, backend, *filters],
                    [v.status, v.summary, v.grid, r["answer"], r["metrics"]], **PRIVATE).then(
        h.loaded, [language, *filters], [v.summary, v.grid, v.history["newer"], v.history["older"],
                                         v.feedback["table"]], **PRIVATE)
    a["from_chat"].click(h.from_chat, turns, [a["question"], a["language"]], **PRIVATE)
    x = v.transfer
    for fmt in ("jsonl", "csv"):
        x[fmt].click(functools.partial(h.export, fmt=fmt), language, [v.status, x["download"]], **PRIVATE)
    x["import"].click(h.import_file, [language, v.key, x["upload"], *filters], [v.status, v.grid, v.filters[0]],
                      **PRIVATE)
    x["delete"].click(h.delete, [language, v.key, v.selected, *filters], [v.status, v.grid, v.selected], **PRIVATE)
    hist = v.history
    v.feedback["table"].select(h.feedback_pick, None, [a["question"], a["language"], a["accordion"]], **PRIVATE)
    hist["compare"].click(h.compare, [language, hist["newer"], hist["older"]], [v.status, hist["changes"]], **PRIVATE)
    a["add"].click(h.add,
                   [language, v.key,
                    *[a[k] for k in ("question", "expected", "evidence", "answerable", "language", "tags")], *filters],
                   [v.status, v.grid, v.filters[0], a["question"], a["expected"], a["evidence"], a["tags"]],
                   **PRIVATE)


def _relabel(v: View, room: ReviewRoom) -> Relabel:
    def label(key):
        return lambda L: gr.update(label=t(L, key))

    def value(key, fmt="{}"):
        return lambda L: gr.update(value=fmt.format(t(L, key)))

    def choices(n, key):
        return lambda L: gr.update(label=t(L, key), choices=list(filter_choices(L, room.tags()).values())[n])

    i, r, a = v.item, v.result, v.adder
    return [(v.intro, value("review_intro")),
            (v.key, lambda L: gr.update(label=t(L, "editor_key"), placeholder=t(L, "editor_key_hint"))),
            (v.filters[0], choices(0, "f_tag")),
            (v.filters[1], choices(1, "f_verdict")),
            (v.filters[2], choices(2, "f_run")),
            (v.filters[3], lambda L: gr.update(label=t(L, "f_search"), placeholder=t(L, "f_search_hint"))),
            (v.refresh, value("refresh")), (i["question"], label("question")),
            (i["expected"], label("expected")), (i["evidence"], label("evidence")), (i["save"], value("save")),
            (i["verdict"], lambda L: gr.update(label=t(L, "verdict"), choices=verdict_choices(L))),
            (i["comment"], label("comment")), (i["record"], value("record")),
            (i["record_shown"], value("record_shown")),
            (r["answer_label"], value("current", "**{}**")), (r["metrics_label"], value("metrics", "**{}**")),
            (r["run_item"], value("run_item")), (v.run_all, value("run_all")),
            (v.summary, lambda L: gr.update(value=summary_html(room.summary, L))),
            (v.history["accordion"], label("past_runs")), (v.history["newer"], label("run_a")),
            (v.history["older"], label("run_b")), (v.history["compare"], value("compare")),
            (v.feedback["accordion"], label("feedback")),
            (a["accordion"], label("new_item")), (a["from_chat"], value("from_chat")),
            (a["question"], label("question")),
            (a["expected"], label("expected")), (a["evidence"], label("evidence")),
            (a["answerable"], label("answerable")),
            (a["language"], label("item_lang")), (a["tags"], label("tags")), (a["add"], value("add")),
            (v.transfer["accordion"], label("transfer")), (v.transfer["jsonl"], value("export_jsonl")),
            (v.transfer["csv"], value("export_csv")), (v.transfer["delete"], value("delete")),
            (v.transfer["download"], label("exported")), (v.transfer["upload"], label("import_file")),
            (v.transfer["import"], value("import"))]


def build_review_tab(get_pipeline: Callable[[], Pipeline], settings: Settings, eval_path: Path | None,
                     language: gr.Radio, turns: gr.State, backend: gr.Dropdown) -> ReviewTab:
    """The review room over the eval set at ``eval_path``; call inside a ``gr.Tab``."""
    room = ReviewRoom(eval_path, get_pipeline, settings.eval_runs_dir)
    handlers = Handlers(room, settings)
    view = _layout(room, handlers, language.value)
    _wire(view, handlers, language, turns, backend)
    hist = view.history
    return ReviewTab(room, _relabel(view, room), handlers.loaded, [language, *view.filters],
                     [view.summary, view.grid, hist["newer"], hist["older"], view.feedback["table"]])
