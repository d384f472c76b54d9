"""``POST /ask`` and ``POST /ask/stream``: an answer with its cited passages, as JSON or Server-Sent Events."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from itertools import chain

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from index.errors import InputError, RagError
from rag.api_models import AskIn, AskOut, ErrorOut, FiltersIn
from rag.auth import require_read
from rag.http_edge import error_payload
from rag.pipeline import Pipeline
from rag.retriever import Filters

log = logging.getLogger("rag.api")
router = APIRouter(tags=["Questions"], dependencies=[Depends(require_read)])

ERROR_TEXTS = {
    400: "Bad input (empty or over-long question, unknown backend, malformed JSON); the message says what to fix",
    401: "An API key is needed", 403: "The API key is not valid", 413: "The body is too large",
    415: "The body is not sent as JSON",
    422: "The body does not match the schema; the message lists the fields", 500: "Internal error (quote the request id)",
}
ERRORS = {code: {"model": ErrorOut, "description": text} for code, text in ERROR_TEXTS.items()}
SSE_EXAMPLE = ('event: citations\ndata: [{"n": 1, "chunk_id": "a#1", ...}]\n\n'
               'event: delta\ndata: {"text": "Microsoft a investi "}\n\n'
               'event: done\ndata: {"answer": "...", "timings_ms": {...}, ...}\n\n')
SSE_EVENT = {"type": "object", "description": "One event; `data` is JSON (`done` carries the whole answer)",
             "required": ["event", "data"],
             "properties": {"event": {"type": "string", "enum": ["citations", "delta", "reset", "done", "error"]},
                            "data": {"type": "string", "contentMediaType": "application/json"}}}
ASK_RESPONSES = {200: {"model": AskOut, "description": "The answer as JSON, or as Server-Sent Events with `stream`",
                       "content": {"text/event-stream": {"schema": SSE_EVENT, "example": SSE_EXAMPLE}}},
                 **ERRORS}


def ask_kwargs(question: str, top_k: int | None = None, mode: str | None = None,
               backend: str | None = None, history: list[dict] | None = None,
               filters: FiltersIn | None = None) -> dict:
    """Keyword arguments for ``Pipeline.ask``/``ask_stream`` from the request's fields."""
    f = filters
    return {"question": question, "top_k": top_k, "backend": backend, "history": history or [], "mode": mode,
            "filters": Filters(tuple(f.article_ids or ()), f.date_from or "", f.date_to or "",
                               f.language or "") if f else None}


def _kwargs(body: AskIn, request: Request) -> dict:
    limit = request.app.state.settings.max_question_chars  # as the schema says: spaces count too
    if len(body.question) > limit:
        raise InputError(f"the question has {len(body.question)} characters; the limit is {limit} "
                         "(RAG_MAX_QUESTION_CHARS)")
    return ask_kwargs(body.question, body.top_k, body.mode, body.backend,
                      [t.model_dump() for t in body.history or []], body.filters)


@router.post("/ask", summary="Answer a question from the articles, with cited sources",
             response_model=None, responses=ASK_RESPONSES)
def ask(body: AskIn, request: Request):
    """The answer, whether the articles say (``abstained``), the numbered passages and step timings.

    With ``"stream": true`` the response is Server-Sent Events: ``citations`` first, then ``delta``
    events with pieces of the answer text, then ``done`` with the whole answer and its timings.
    """
    pipeline: Pipeline = request.app.state.pipeline
    if body.stream:
        return sse_response(request, pipeline.ask_stream(**_kwargs(body, request)), _ask_event)
    answer = pipeline.ask(**_kwargs(body, request))
    request.state.timings_ms = answer.timings_ms
    return JSONResponse(answer.to_dict())


@router.post("/ask/stream", summary="Answer as Server-Sent Events: citations, deltas, done",
             response_model=None, responses=ASK_RESPONSES)
def ask_stream(body: AskIn, request: Request):
    """Same as ``POST /ask`` with ``"stream": true``."""
    return sse_response(request, request.app.state.pipeline.ask_stream(**_kwargs(body, request)), _ask_event)


def _ask_event(event: dict) -> Iterator[str]:
    yield sse(event["event"], event["data"])


def sse(event: str | None, data) -> str:
    """One Server-Sent Event; ``event`` None sends a bare ``data:`` line (OpenAI's style)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def sse_response(request: Request, events: Iterator[dict], render: Callable[[dict], Iterator[str]],
                 error_event: str | None = "error") -> StreamingResponse:
    """Stream ``events`` rendered as SSE text. The first event is produced before the response starts,
    so bad input (empty question, unknown backend) is still an HTTP 4xx, not an error inside a 200."""
    first = next(events)
    rid, path = request.state.request_id, request.url.path

    def body() -> Iterator[str]:
        try:
            for event in chain([first], events):
                if event["event"] == "done":
                    request.state.timings_ms = event["data"].get("timings_ms")
                yield from render(event)
        except RagError as exc:
            yield sse(error_event, error_payload(path, str(exc), rid))
        except Exception:
            log.exception("request_id=%s stream failed", rid)
            yield sse(error_event, error_payload(path, "internal error; quote the request id", rid, "server_error"))

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
