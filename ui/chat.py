"""The reader's tab: a chat whose answers stream in, each followed by its highlighted sources."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gradio as gr

from common.dates import iso_date
from common.errors import InputError
from rag.backends import available_backends
from rag.keys import check_key
from rag.pipeline import Pipeline
from rag.retriever import Filters
from rag.settings import Settings
from rag.types import MODES
from ui.i18n import t
from ui.messages import error_message
from ui.render import answer_html, coverage_html, error_html, literal, streaming_html

Relabel = list[tuple[gr.components.Component, Callable[[str], dict]]]
HISTORY_TURNS = 6  # earlier messages passed to the pipeline with a follow-up question
# Deltas are painted at most this often: each paint is a queue message carrying the chat, and the
# extractive and reader answers arrive whole, as one delta a word. Painting each word took the finished
# answer 0.44 s (median) past the server's total in Chromium; a model's tokens still show as they come.
PAINT_INTERVAL = 0.1
# 👍 and 👎, then reasons offered in the message's menu (each a 👎 with that reason).
FEEDBACK = ("Like", "Dislike", "Wrong answer", "Wrong source", "Should have said the articles don't say",
            "The articles do say")


@dataclass(frozen=True)
class ChatTab:
    """The chat's components another tab or the language switch needs."""

    chatbot: gr.Chatbot
    box: gr.Textbox
    backend: gr.Dropdown
    relabel: Relabel
    coverage: gr.HTML
    cover: Callable[[str], str]  # language -> the coverage HTML, from the index as it is now


def retrieval_modes() -> list[str]:
    """The retrieval modes the settings allow (``RAG_RETRIEVAL_MODE``): dense, lexical, hybrid."""
    return list(MODES)


def answer_stream(get_pipeline: Callable[[], Pipeline], question: str, turns: list[dict], language: str,
                  options: dict) -> Iterator[tuple[str, dict | None]]:
    """(message HTML, final answer or None) as the answer streams in; errors become a message."""
    text, shown = "", time.monotonic()
    yield streaming_html(text, language), None
    try:
        for event in get_pipeline().ask_stream(question, history=turns[-HISTORY_TURNS:], **options):
            if event["event"] == "delta":
                text += event["data"]["text"]
                if time.monotonic() - shown >= PAINT_INTERVAL:
                    shown = time.monotonic()
                    yield streaming_html(text, language), None
            elif event["event"] == "done":
                yield answer_html(event["data"], f"a{len(turns) // 2 + 1}", language), event["data"]
    except Exception as exc:  # the UI's edge: every error becomes a readable message (logged if unexpected)
        yield error_html(error_message(exc, language)), None


def make_respond(get_pipeline: Callable[[], Pipeline], settings: Settings):
    """The chat's event handler: streams (chat, box, turns) while answering ``question``.

    With RAG_READ_REQUIRES_KEY the reader's key (an API key) is checked here, on the server."""

    def respond(question: str, chat: list[dict], turns: list[dict], language: str, backend: str,
                top_k: float, mode: str, key: str = "", answers: dict | None = None, date_from: str = "",
                date_to: str = "", sources: list[str] | None = None):
        chat, turns, question = list(chat or []), list(turns or []), (question or "").strip()
        answers = dict(answers or {})
        if not question:
            yield chat, "", turns, answers
            return
        chat.append({"role": "user", "content": literal(question)})
        try:
            check_key(settings, key, write=False, how="type an API key in the “Key” field")
        except Exception as exc:  # noqa: BLE001 -- shown as the answer, like every chat error
            yield ([*chat, {"role": "assistant", "content": error_html(error_message(exc, language))}], question, turns,
                   answers)
            return
        options = {"backend": backend or None, "top_k": int(top_k) if top_k else None, "mode": mode or None}
        try:
            options["filters"] = chat_filters(date_from, date_to, sources)
        except Exception as exc:  # noqa: BLE001 -- a date the reader mistyped: said in the chat
            yield ([*chat, {"role": "assistant", "content": error_html(error_message(exc, language))}], question, turns,
                   answers)
            return
        for message, answer in answer_stream(get_pipeline, question, turns, language, options):
            if answer is not None:
                turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer["answer"]}]
                answers[str(len(chat))] = {  # what a 👍/👎 on this message is about
                    "question": question, "answer": answer["answer"], "backend": answer.get("backend", ""),
                    "language": answer.get("language", ""),
                    "cited": [c["chunk_id"] for c in answer["citations"] if c.get("cited")]}
            yield [*chat, {"role": "assistant", "content": message}], "", turns, answers

    return respond


def chat_filters(date_from: str, date_to: str, sources) -> Filters | None:
    """The chat's date and source filters (None when unset); an InputError names a date that is not one."""
    start = iso_date((date_from or "").strip(), t("en", "date_from"))
    end = iso_date((date_to or "").strip(), t("en", "date_to"))
    if start and end and start > end:
        raise InputError(f"the start date {start} is after the end date {end}; swap them or clear one")
    filters = Filters(date_from=start, date_to=end, sources=tuple(sources or ()))
    return filters if filters else None


def source_choices(get_pipeline: Callable[[], Pipeline]) -> list[str]:
    """The sources of the indexed articles, sorted ([] without an index)."""
    try:
        return sorted({a.source for a in get_pipeline().data.articles if a.source}, key=str.lower)
    except Exception:  # noqa: BLE001 -- no index yet: the chat itself says what to do
        return []


def make_feedback(settings: Settings):
    """The chat's like handler: the reader's 👍/👎 (or a reason, a 👎) on an answer, stored for editors."""
    from eval.feedback import Feedback, FeedbackStore

    store = FeedbackStore(settings.feedback_file)

    def feedback(answers: dict, language: str, data: gr.LikeData):
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        about = (answers or {}).get(str(index))
        if about is None or data.liked in ("", None):
            return
        rating = "up" if data.liked is True or data.liked == "Like" else "down"
        reason = data.liked if isinstance(data.liked, str) and data.liked not in ("Like", "Dislike") else ""
        store.add(Feedback(rating, about["question"], about["answer"], reason, about["backend"],
                           about["language"], tuple(about["cited"])))
        gr.Info(t(language, "thanks"), duration=3)

    return feedback


def build_chat_tab(get_pipeline: Callable[[], Pipeline], settings: Settings, language: gr.Radio,
                   turns: gr.State, examples: list[str]) -> ChatTab:
    """The chat, its examples, reset button and folded settings; call inside a ``gr.Tab``."""
    lang = language.value
    intro = gr.Markdown(t(lang, "intro"), elem_id="chat-intro")
    coverage = gr.HTML("", elem_id="coverage")

    def cover(language: str) -> str:
        try:
            return coverage_html(get_pipeline().data.articles, language)
        except Exception:  # noqa: BLE001 -- no index yet: the chat itself says what to do
            return ""
    # The chat grows with its messages and the page scrolls (one scroll, not three); a new answer is
    # brought into view at its start (ui.app.HEAD), so an abstention is never scrolled past.
    # Its HTML is built here with every text escaped (ui.render.literal), so Gradio's sanitiser is not needed.
    chatbot = gr.Chatbot(show_label=False, height=None, min_height=320, autoscroll=False, elem_id="chat",
                         sanitize_html=False, latex_delimiters=[], feedback_options=FEEDBACK, buttons=["copy"],
                         layout="bubble")
    with gr.Row(equal_height=True):
        box = gr.Textbox(placeholder=t(lang, "placeholder"), show_label=False, scale=6, elem_id="question",
                         autofocus=True, max_lines=4)
        send = gr.Button(t(lang, "send"), variant="primary", scale=1, elem_id="ask")
        reset = gr.Button(t(lang, "reset"), scale=1, elem_id="reset")
    samples = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[[q] for q in examples],
                         label=t(lang, "examples"), elem_id="examples", samples_per_page=8)
    with gr.Accordion(t(lang, "settings"), open=False, elem_id="chat-settings") as folded:
        with gr.Row():
            backend = gr.Dropdown(available_backends(settings), value=settings.backend, label=t(lang, "backend"),
                                  elem_id="backend")
            top_k = gr.Slider(1, 20, value=settings.top_k, step=1, label=t(lang, "top_k"), elem_id="top-k")
            mode = gr.Radio(retrieval_modes(), value=settings.retrieval_mode, label=t(lang, "mode"), elem_id="mode")
        with gr.Row():
            date_from = gr.Textbox("", label=t(lang, "date_from"), placeholder="2025-01-01", max_lines=1,
                                   elem_id="date-from")
            date_to = gr.Textbox("", label=t(lang, "date_to"), placeholder="2025-12-31", max_lines=1, elem_id="date-to")
            sources = gr.Dropdown(source_choices(get_pipeline), value=[], multiselect=True, allow_custom_value=True,
                                  label=t(lang, "source_filter"), elem_id="sources")
    key = gr.Textbox("", label=t(lang, "key"), type="password", placeholder=t(lang, "key_hint"), max_lines=1,
                     elem_id="reader-key", visible=settings.read_requires_key)

    answers = gr.State({})
    inputs = [box, chatbot, turns, language, backend, top_k, mode, key, answers, date_from, date_to, sources]
    outputs = [chatbot, box, turns, answers]
    respond = make_respond(get_pipeline, settings)
    send.click(respond, inputs, outputs, api_name="chat")
    box.submit(respond, inputs, outputs, api_visibility="private")
    samples.click(lambda sample: sample[0], samples, box, api_visibility="private").then(
        respond, inputs, outputs, api_visibility="private")
    reset.click(lambda: ([], "", [], {}), None, outputs, api_visibility="private")
    chatbot.like(make_feedback(settings), [answers, language], None, api_visibility="private")
    relabel: Relabel = [
        (intro, lambda L: gr.update(value=t(L, "intro"))), (box, lambda L: gr.update(placeholder=t(L, "placeholder"))),
        (send, lambda L: gr.update(value=t(L, "send"))), (reset, lambda L: gr.update(value=t(L, "reset"))),
        (samples, lambda L: gr.update(label=t(L, "examples"))), (folded, lambda L: gr.update(label=t(L, "settings"))),
        (backend, lambda L: gr.update(label=t(L, "backend"))), (top_k, lambda L: gr.update(label=t(L, "top_k"))),
        (mode, lambda L: gr.update(label=t(L, "mode"))),
        (date_from, lambda L: gr.update(label=t(L, "date_from"))),
        (date_to, lambda L: gr.update(label=t(L, "date_to"))),
        (sources, lambda L: gr.update(label=t(L, "source_filter"), choices=source_choices(get_pipeline))),
        (key, lambda L: gr.update(label=t(L, "key"), placeholder=t(L, "key_hint"))),
        (coverage, lambda L: gr.update(value=cover(L))),
    ]
    return ChatTab(chatbot, box, backend, relabel, coverage, cover)
