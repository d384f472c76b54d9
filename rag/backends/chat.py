"""What the generative backends share: a chat model protocol and the backend built on it.

A ``ChatModel`` turns chat messages into text (``openai`` over HTTP, ``llamacpp`` in process).
``ChatBackend`` wraps one: it builds the prompt within the token budget, streams the model's
text to ``Request.on_delta`` and reports an abstention when the model says the articles don't say.
Citations are verified afterwards by the pipeline (``rag.citecheck``), because the backend is
``generative``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from common.sentences import sentence_spans
from rag.backends import Generation, Request
from rag.prompt import Budget, build_prompt, is_abstention


@dataclass(frozen=True)
class Completion:
    """A chat model's reply and the model that wrote it."""

    text: str
    model: str


class ChatModel(Protocol):
    """A chat-completions model."""

    def complete(self, messages: list[dict], max_tokens: int,
                 on_delta: Callable[[str], None] | None = None) -> Completion: ...


class ChatBackend:
    """A backend that asks a chat model to answer from the passages, citing them."""

    generative = True

    def __init__(self, name: str, chat: ChatModel, budget: Budget):
        self.name, self.chat, self.budget = name, chat, budget

    def generate(self, request: Request) -> Generation:
        """The model's answer to the question from the passages that fit the budget."""
        prompt = build_prompt(request.question, request.hits, request.language,
                              request.max_sentences, self.budget)
        completion = self.chat.complete(prompt.messages, self.budget.answer_tokens, request.on_delta)
        text = completion.text.strip()
        return Generation(text, abstained=not text or _all_abstain(text), model=completion.model,
                          notes=list(prompt.notes))


def _all_abstain(text: str) -> bool:
    """True when every sentence of the reply says the articles don't say."""
    spans = sentence_spans(text) or [(0, len(text))]
    return all(is_abstention(text[a:b]) for a, b in spans)
