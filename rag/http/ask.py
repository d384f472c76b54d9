"""``POST /ask`` and ``POST /ask/stream``: an answer with its cited passages, as JSON or Server-Sent Events."""
from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from common.errors import InputError
from rag.http.auth import require_read
from rag.http.schemas import AskIn, AskOut, ErrorOut, FiltersIn
from rag.http.sse import sse, sse_response
from rag.pipeline import Pipeline
from rag.retriever import Filters
from rag.types import AskRequest

router = APIRouter(tags=["Questions"], dependencies=[Depends(require_read)])

ERROR_TEXTS = {
    400: "Bad input (empty or over-long question, unknown backend, malformed JSON); the message says what to fix",
    401: "An API key is needed", 403: "The API key is not valid", 413: "The body is too large",
    415: "The body is not sent as JSON",
    422: "The body does not match the schema; the message lists the fields",
    431: "Too many or too large request headers",
    500: "Internal error (quote the request id)",
    502: "The answer backend's model server failed and no fallback could answer",
    503: "This server is not set up for the request: no index yet, or the backend asked for is not configured "
         "(the message says which setting to give)",
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


def filters_of(f: FiltersIn | None) -> Filters | None:
    """Retrieval filters from a request's ``filters`` object."""
    if f is None:
        return None
    return Filters(tuple(f.article_ids or ()), f.date_from or "", f.date_to or "", f.language or "",
                   sources=tuple(f.sources or ()))


def _request(body: AskIn, request: Request) -> AskRequest:
    limit = request.app.state.settings.max_question_chars  # as the schema says: spaces count too
    if len(body.question) > limit:
        raise InputError(f"the question has {len(body.question)} characters; the limit is {limit} "
                         "(RAG_MAX_QUESTION_CHARS)")
    return AskRequest(body.question, body.top_k, body.backend, filters_of(body.filters),
                      tuple(t.model_dump() for t in body.history or []), body.mode)


@router.post("/ask", summary="Answer a question from the articles, with cited sources",
             response_model=None, responses=ASK_RESPONSES)
def ask(body: AskIn, request: Request):
    """The answer, whether the articles say (``abstained``), the numbered passages and step timings.

    With ``"stream": true`` the response is Server-Sent Events: ``citations`` first, then ``delta``
    events with pieces of the answer text, then ``done`` with the whole answer and its timings.
    """
    pipeline: Pipeline = request.app.state.pipeline
    if body.stream:
        return sse_response(request, pipeline.ask_stream(_request(body, request)), _ask_event)
    answer = pipeline.ask(_request(body, request))
    request.state.timings_ms = answer.timings_ms
    return JSONResponse(answer.to_dict())


@router.post("/ask/stream", summary="Answer as Server-Sent Events: citations, deltas, done",
             response_model=None, responses=ASK_RESPONSES)
def ask_stream(body: AskIn, request: Request):
    """Same as ``POST /ask`` with ``"stream": true``."""
    return sse_response(request, request.app.state.pipeline.ask_stream(_request(body, request)), _ask_event)


def _ask_event(event: dict) -> Iterator[str]:
    yield sse(event["event"], event["data"])
