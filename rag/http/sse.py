"""Server-Sent Events: how ``POST /ask`` (``stream``) and the OpenAI door send an answer piece by piece.

The events come from ``Pipeline.ask_stream`` (see docs/streaming.md for the whole path); this
module only writes them as SSE text and turns an error raised mid-stream into a last event.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from itertools import chain

from fastapi import Request
from fastapi.responses import StreamingResponse

from common.errors import RagError
from rag.http.middleware import error_payload

log = logging.getLogger("rag.http")


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
