"""An OpenAI-compatible door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Any OpenAI client (base URL ``http://HOST:PORT/v1``) gets our answer as the assistant message. The
sources are not dropped: they travel in the extra top-level field ``sources`` (the citation objects
of ``POST /ask``, numbered like the ``[n]`` marks) and as a numbered list at the end of the content.
A "model" is an answer backend. The last message is the question; earlier user and assistant
messages are the history; system messages are ignored (the backend has its own instructions).
"""
from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from common.citations import cited_numbers
from common.errors import InputError, UnknownNameError
from rag.backends import available_backends, backend_names
from rag.http.ask import ERROR_TEXTS, filters_of
from rag.http.auth import require_read
from rag.http.schemas import FiltersIn, OpenAIErrorOut, TopK
from rag.http.sse import sse, sse_response
from rag.prompt import tiktoken_counter
from rag.types import AskRequest

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], dependencies=[Depends(require_read)],
                   responses={code: {"model": OpenAIErrorOut, "description": text}
                              for code, text in ERROR_TEXTS.items()})
SOURCES_HEADING = {"fr": "Sources :", "en": "Sources:"}


class ContentPart(BaseModel):
    """A part of a message's content; only ``text`` parts are read."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    """A chat message."""

    model_config = ConfigDict(extra="allow")
    role: str = Field(..., pattern="^(system|developer|user|assistant|tool)$")
    content: str | list[ContentPart] | None = None


class ChatIn(BaseModel):
    """OpenAI's chat completion request; unknown OpenAI parameters (temperature, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"model": "reader",
         "messages": [{"role": "user", "content": "Combien Microsoft a-t-il investi dans OpenAI ?"}]}]})

    model: str = Field(..., description="An answer backend; GET /v1/models lists them")
    messages: list[Message] = Field(..., min_length=1, max_length=100)
    stream: bool = Field(False, strict=True)
    top_k: TopK | None = Field(None, description="Extension: passages to retrieve")
    mode: str | None = Field(None, description="Extension: retrieval mode (dense, lexical, hybrid)")
    filters: FiltersIn | None = Field(None, description="Extension: the filters of POST /ask")


@router.get("/models", summary="The answer backends this server can use, as OpenAI models")
def models(request: Request) -> dict:
    """One model per configured answer backend (a backend whose settings are missing is not offered)."""
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "newsrag"}
                                       for name in available_backends(request.app.state.settings)]}


CHUNK_EVENT = {"type": "object", "required": ["data"], "description": "`data` is a chat.completion.chunk or [DONE]",
               "properties": {"data": {"type": "string"}}}


@router.post("/chat/completions", summary="Answer the last user message, OpenAI-style, with sources",
             response_model=None, responses={200: {"description": "A chat.completion, or chunk events with `stream`",
                                                   "content": {"application/json": {"schema": {"type": "object"}},
                                                               "text/event-stream": {"schema": CHUNK_EVENT}}}})
def chat_completions(body: ChatIn, request: Request):
    """A ``chat.completion`` (or ``chat.completion.chunk`` events with ``stream``) with extra ``sources``."""
    if body.model not in backend_names():
        raise UnknownNameError("model", body.model, backend_names())
    pipeline = request.app.state.pipeline
    question, history = _conversation(body.messages)
    ask = AskRequest(question, body.top_k, body.model, filters_of(body.filters), tuple(history), body.mode)
    head = {"id": f"chatcmpl-{request.state.request_id}", "created": int(time.time()), "model": body.model}
    if body.stream:
        chunks = _Chunks(head, lambda answer, content: usage(pipeline.settings, question, history, answer, content))
        return sse_response(request, pipeline.ask_stream(ask), chunks.render, error_event=None)
    answer = pipeline.ask(ask).to_dict()
    request.state.timings_ms = answer["timings_ms"]
    message = {"role": "assistant", "content": answer["answer"] + sources_text(answer)}
    return JSONResponse({**head, "object": "chat.completion", "system_fingerprint": None,
                         "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                         "usage": usage(pipeline.settings, question, history, answer, message["content"]),
                         **_extras(answer)})


def usage(settings, question: str, history: list[dict], answer: dict, content: str) -> dict:
    """OpenAI's token counts, with tiktoken (``RAG_TIKTOKEN_ENCODING``): the prompt is the question, the
    conversation and the passages read; the completion is the content returned. A generative backend's
    own tokenizer may count a little differently."""
    count = tiktoken_counter(settings.tiktoken_encoding)
    prompt = count(question) + sum(count(h["content"]) for h in history) + sum(
        count(c["text"]) for c in answer["citations"])
    completion = count(content)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _conversation(messages: list[Message]) -> tuple[str, list[dict]]:
    """The question (the last message, from the user) and the earlier user/assistant turns."""
    *earlier, last = messages
    if last.role != "user" or not _text(last).strip():
        raise InputError("the last message must be the user's question, with text content")
    history = [{"role": m.role, "content": _text(m)} for m in earlier if m.role in ("user", "assistant")]
    return _text(last), history


def _text(message: Message) -> str:
    if isinstance(message.content, list):
        return "\n".join(p.text for p in message.content if p.type == "text" and p.text)
    return message.content or ""


def sources_text(answer: dict) -> str:
    """The numbered list of the passages the answer cites, to append to the content ('' if none)."""
    cited = set(cited_numbers(answer["answer"]))
    lines = [(f"[{c['n']}] {c['title']}" + (f" ({c['date']})" if c["date"] else "")
              + (f" {c['url']}" if c["url"] else ""))
             for c in answer["citations"] if c["n"] in cited and not answer["abstained"]]
    heading = SOURCES_HEADING.get(answer.get("language", ""), SOURCES_HEADING["en"])
    return "\n\n" + heading + "\n" + "\n".join(lines) if lines else ""


def _extras(answer: dict) -> dict:
    """The fields OpenAI does not have: all retrieved passages, abstention, backend and timings."""
    return {"sources": answer["citations"], "abstained": answer["abstained"], "timings_ms": answer["timings_ms"]}


class _Chunks:
    """Renders pipeline events as ``chat.completion.chunk`` events, then ``[DONE]``."""

    def __init__(self, head: dict, count=None):
        self.head, self.count = {**head, "object": "chat.completion.chunk"}, count

    def chunk(self, delta: dict, finish: str | None = None, **extra) -> str:
        return sse(None, {**self.head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                    "logprobs": None}], **extra})

    def render(self, event: dict) -> Iterator[str]:
        kind, data = event["event"], event["data"]
        if kind == "citations":
            yield self.chunk({"role": "assistant", "content": ""})
        elif kind == "delta":
            yield self.chunk({"content": data["text"]})
        elif kind == "done":
            tail = sources_text(data)
            if tail:
                yield self.chunk({"content": tail})
            extra = {"usage": self.count(data, data["answer"] + tail)} if self.count else {}
            yield self.chunk({}, "stop", **extra, **_extras(data))
            yield sse(None, "[DONE]")
