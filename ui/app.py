"""The web UI (Gradio Blocks): the readers' chat and the editors' review room, mounted beside the API."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from rag.pipeline import Pipeline
from rag.settings import Settings, get_settings
from ui.chat import build_chat_tab
from ui.i18n import BROWSER_LANGUAGE_JS, pick, t
from ui.review import build_review_tab, example_questions

CSS = """
#lang-switch { max-width: 260px; margin-left: auto; }
.rag-answer .answer-text { line-height: 1.5; }
.rag-answer.abstained .answer-text { font-style: italic; color: #92400e; }
.rag-answer.error .answer-text { color: #b91c1c; }
.rag-answer .pending { color: #6b7280; }
.rag-answer .understood { color: #6b7280; font-size: 0.85em; margin-bottom: 4px; }
.rag-answer .sources-head { font-weight: 600; margin: 10px 0 4px; font-size: 0.9em; color: #374151; }
.rag-answer .source { border: 1px solid #e5e7eb; border-radius: 6px; padding: 6px 10px; margin: 6px 0;
  background: #fafafa; color: #111827; scroll-margin: 12px; transition: box-shadow .3s; }
.rag-answer .source.flash { box-shadow: 0 0 0 3px #f59e0b; }
.rag-answer .source-head { font-weight: 600; margin-bottom: 4px; font-size: 0.92em; }
.rag-answer .article-group { margin: 8px 0; }
.rag-answer .open-article { float: right; font-weight: 400; font-size: 0.85em; color: #b45309; }
.rag-answer .article-head { font-weight: 600; font-size: 0.92em; color: #111827; margin: 4px 0 2px; }
.rag-answer .article-head .date { color: #6b7280; font-weight: 400; font-size: 0.9em; }
.rag-answer .article-head .outlet { color: #374151; font-weight: 400; font-size: 0.9em; }
.rag-answer .copies { color: #6b7280; font-size: 0.85em; margin: 0 0 4px; }
.rag-answer .source .num { color: #b45309; }
.rag-answer .source .date, .rag-answer .source .score { color: #6b7280; font-weight: 400; font-size: 0.9em; }
.rag-answer .passage { font-size: 0.9em; }
.rag-answer .related { border-left: 3px solid #d1d5db; padding-left: 10px; margin-top: 10px; }
.rag-answer .related .source { background: #f3f4f6; color: #374151; }
.rag-answer .related .sources-head { color: #6b7280; font-weight: 500; }
.rag-answer .passage mark { background: #fde68a; color: inherit; padding: 0 2px; border-radius: 2px; }
.rag-answer a.cite { color: #b45309; text-decoration: none; font-weight: 600; cursor: pointer; }
.rag-answer .answer-meta { color: #9ca3af; font-size: 0.75em; margin-top: 4px; }
#review-status { min-height: 1.5em; }
/* Toasts (a run's end, a refused write) open at the bottom, never over the language switch. */
.toast-wrap { top: auto !important; bottom: var(--size-4) !important; }
#coverage .coverage { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 12px; background: #fafafa; }
#coverage .head { font-weight: 600; margin-bottom: 4px; } #coverage ul { margin: 0; padding-left: 1.2em; }
#coverage li { font-size: 0.92em; } #coverage .date, #coverage .more { color: #6b7280; font-size: 0.9em; }
.metrics .overall { display: inline-block; font-weight: 700; padding: 1px 10px; border-radius: 10px;
  margin-bottom: 6px; }
.metrics .overall.ok { background: #dcfce7; color: #166534; }
.metrics .overall.ko { background: #fee2e2; color: #991b1b; }
.metrics table { border-collapse: collapse; font-size: 0.88em; }
.metrics td, .metrics th { padding: 2px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; }
.run-summary .head { font-weight: 600; } .run-summary .meta { color: #6b7280; font-size: 0.85em; margin: 2px 0 6px; }
.run-summary .grid { display: flex; flex-wrap: wrap; gap: 6px; }
.run-summary .cell { border: 1px solid #e5e7eb; border-radius: 6px; padding: 3px 8px; font-size: 0.88em; }
.run-summary .cell .k { color: #6b7280; margin-right: 6px; } .run-summary .cell .v { font-weight: 600; }
/* On a phone the review room stacks its intro over the key, and the eval table keeps id, question,
   verdict and run (lang, tags and answerable are in the item's form below it). Gradio 6's table is a
   grid of flex rows whose cells carry inline widths, hence the !important. */
@media (max-width: 640px) {
  #review-head { flex-wrap: wrap; }
  #review-head > * { min-width: 100% !important; }
  #eval-table [data-col="2"], #eval-table [data-col="3"], #eval-table [data-col="4"],
  #eval-table [data-heading="2"], #eval-table [data-heading="3"], #eval-table [data-heading="4"] {
    display: none !important; }
  #eval-table table { table-layout: fixed !important; width: 100% !important; }
  #eval-table [data-col="0"], #eval-table [data-heading="0"] {
    width: 18% !important; min-width: 18% !important; max-width: 18% !important; flex: 0 0 18% !important; }
  #eval-table [data-col="1"], #eval-table [data-heading="1"] {
    width: 52% !important; min-width: 52% !important; max-width: 52% !important; flex: 0 0 52% !important; }
  #eval-table [data-col="5"], #eval-table [data-col="6"], #eval-table [data-heading="5"],
  #eval-table [data-heading="6"] {
    width: 15% !important; min-width: 15% !important; max-width: 15% !important; flex: 0 0 15% !important; }
}
"""

# Clicking [n] scrolls its source card into view (inside the chat's scrolling box) and flashes it.
HEAD = """<script>
document.addEventListener('click', (event) => {
  const link = event.target.closest && event.target.closest('a.cite');
  if (!link) return;
  event.preventDefault(); event.stopPropagation();
  const card = document.getElementById(link.dataset.target);
  if (!card) return;
  card.scrollIntoView({behavior: 'smooth', block: 'center'});
  card.classList.add('flash');
  setTimeout(() => card.classList.remove('flash'), 1600);
}, true);
// A finished answer is brought into view at its start (the chat no longer scrolls itself to its bottom).
new MutationObserver(() => {
  const done = document.querySelectorAll('#chat .rag-answer:not(.streaming)');
  const last = done[done.length - 1];
  if (!last || last.dataset.seen) return;
  last.dataset.seen = '1';
  const r = last.getBoundingClientRect();
  if (r.top < 0 || r.top > window.innerHeight * 0.6) {
    const target = last.closest('.message-row, .message-wrap > div') || last;
    (target.previousElementSibling || target).scrollIntoView({behavior: 'smooth', block: 'start'});
  }
}).observe(document.documentElement, {childList: true, subtree: true});
</script>
<style>html.lang-pending body { visibility: hidden; }</style>
<script>
// With the language left to the browser (#title.lang-auto) the page is built in English and relabelled
// once the browser's language is known, a round trip later: a French browser saw English for ~0.6 s.
// The page now stays hidden until its title is in the browser's language (2 s at most).
(() => {
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  if (!String(langs[0]).toLowerCase().startsWith('fr')) return;
  const root = document.documentElement;
  root.classList.add('lang-pending');
  const observer = new MutationObserver(() => {
    const title = document.querySelector('#title');
    if (title && (!title.classList.contains('lang-auto') || title.innerText.trim() === FRENCH_TITLE)) done();
  });
  const done = () => { root.classList.remove('lang-pending'); observer.disconnect(); };
  observer.observe(root, {childList: true, subtree: true, characterData: true});
  setTimeout(done, 2000);
})();
</script>""".replace("FRENCH_TITLE", json.dumps(t("fr", "title")))


def build_ui(get_pipeline: Callable[[], Pipeline], language: str = "auto", settings: Settings | None = None,
             eval_path: Path | None = None) -> gr.Blocks:
    """The two tabs; ``language`` "auto" follows the browser, "fr" or "en" fixes the start language."""
    settings = settings or get_settings()
    eval_path = eval_path or settings.eval_set
    start = "en" if language == "auto" else pick(language)
    # No telemetry or version check: the server makes no outbound call.
    with gr.Blocks(title="newsrag", analytics_enabled=False) as ui:
        with gr.Row(equal_height=True):
            title = gr.Markdown(f"## {t(start, 'title')}", elem_id="title",
                                elem_classes=["lang-auto"] if language == "auto" else None)
            switch = gr.Radio([("English", "en"), ("Français", "fr")], value=start, show_label=False,
                              elem_id="lang-switch", container=False)
        turns = gr.State([])
        with gr.Tabs():
            with gr.Tab(t(start, "tab_chat"), id="chat", elem_id="tab-chat") as chat_tab:
                chat = build_chat_tab(get_pipeline, settings, switch, turns, example_questions(eval_path))
            with gr.Tab(t(start, "tab_review"), id="review", elem_id="tab-review") as review_tab:
                review = build_review_tab(get_pipeline, settings, eval_path, switch, turns, chat.backend)
        relabel = [(title, lambda L: gr.update(value=f"## {t(L, 'title')}")),
                   (chat_tab, lambda L: gr.update(label=t(L, "tab_chat"))),
                   (review_tab, lambda L: gr.update(label=t(L, "tab_review"))), *chat.relabel, *review.relabel]
        switch.change(lambda L: [update(pick(L)) for _, update in relabel], switch,
                      [component for component, _ in relabel], api_visibility="private")
        # Each page load shows the review room as the server has it now (a run made since start, say).
        ui.load(review.refresh, review.refresh_inputs, review.refresh_outputs, api_visibility="private")
        ui.load(chat.cover, switch, chat.coverage, api_visibility="private")
        if language == "auto":
            ui.load(None, None, switch, js=BROWSER_LANGUAGE_JS, api_visibility="private")
    return ui


def mount_options() -> dict:
    """What ``gr.mount_gradio_app`` needs besides the app: styles and the citation-click script."""
    return {"css": CSS, "head": HEAD, "footer_links": ["api"]}

