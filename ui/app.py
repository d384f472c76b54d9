"""The reader's chat (Gradio Blocks), mounted beside the API."""
from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from index.errors import RagError
from rag.pipeline import Pipeline
from ui.render import answer_markdown, sources_html

LABELS = {
    "en": {"title": "Ask the articles", "placeholder": "Ask a question about the articles…", "send": "Ask",
           "reset": "Reset", "sources": "Sources", "related": "The articles don't say. Related passages:",
           "error": "Sorry, something went wrong"},
    "fr": {"title": "Interrogez les articles", "placeholder": "Posez une question sur les articles…",
           "send": "Demander", "reset": "Effacer", "sources": "Sources",
           "related": "Les articles ne le disent pas. Passages proches :", "error": "Désolé, une erreur est survenue"},
}
CSS = """
.source { border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; margin: 6px 0; }
.source-head { font-weight: 600; margin-bottom: 4px; }
.source .num { color: #b45309; } .source .date, .source .score { color: #666; font-weight: 400; font-size: 0.9em; }
.passage mark { background: #fde68a; padding: 0 2px; }
a.cite { color: #b45309; text-decoration: none; font-weight: 600; }
"""
EXAMPLES = [
    "Combien Microsoft a-t-il investi dans OpenAI ?",
    "Pourquoi Sam Altman a-t-il parlé avec Satya Nadella ?",
    "What could OpenAI ask the US authorities to do?",
]


def build_ui(get_pipeline: Callable[[], Pipeline], language: str = "fr") -> gr.Blocks:
    """The chat tab: question in, answer with its highlighted sources out."""
    labels = LABELS[language]

    def respond(question: str, history: list[dict]):
        history = list(history or [])
        if not question or not question.strip():
            return history, "", gr.update()
        try:
            answer = get_pipeline().ask(question, history=[m for m in history if m["role"] in ("user", "assistant")])
        except RagError as exc:
            history += [{"role": "user", "content": question},
                        {"role": "assistant", "content": f"{labels['error']}: {exc}"}]
            return history, "", ""
        history += [{"role": "user", "content": question},
                    {"role": "assistant", "content": answer_markdown(answer)}]
        return history, "", sources_html(answer, labels)

    with gr.Blocks(title="newsrag") as ui:
        gr.Markdown(f"## {labels['title']}")
        chat = gr.Chatbot(label="", height=380, elem_id="chat", sanitize_html=False)
        with gr.Row():
            box = gr.Textbox(placeholder=labels["placeholder"], show_label=False, scale=5, elem_id="question")
            send = gr.Button(labels["send"], variant="primary", scale=1, elem_id="ask")
        sources = gr.HTML(elem_id="sources")
        gr.Examples(EXAMPLES, inputs=box)
        reset = gr.Button(labels["reset"], size="sm")
        send.click(respond, [box, chat], [chat, box, sources], api_name="ask")
        box.submit(respond, [box, chat], [chat, box, sources], api_name=False)
        reset.click(lambda: ([], "", ""), None, [chat, box, sources], api_name=False)
    return ui
