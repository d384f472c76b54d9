"""The outer edge of the HTTP app: request ids, one log line per request, body size limit, last-resort 500.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so that streamed responses pass through
untouched and the per-request cost stays a few microseconds.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException

log = logging.getLogger("rag.http")

_RID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
BODY_LIMITED = ("/ask", "/articles", "/v1/")  # the API's own endpoints; mounted apps (the UI) set their own


def error_payload(path: str, message: str, request_id: str, kind: str = "invalid_request_error",
                  detail: list | None = None) -> dict:
    """The JSON body of every error: ``{"error": message, "request_id"}``; OpenAI's shape under ``/v1/``."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": kind, "param": None, "code": None}, "request_id": request_id}
    return {"error": message, "request_id": request_id, **({"detail": detail} if detail else {})}


MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024


class Edge:
    """ASGI middleware: ``x-request-id`` on every response, a log line with timings, 413, 431 and 500 bodies."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _RID.fullmatch(given) else uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        seen = {"status": 0, "started": time.perf_counter()}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        raw_headers = scope.get("headers") or []
        header_bytes = sum(len(k) + len(v) for k, v in raw_headers)
        if len(raw_headers) > MAX_HEADERS or header_bytes > MAX_HEADER_BYTES:
            message = (f"the request has {len(raw_headers)} headers of {header_bytes} bytes in all; the limits are "
                       f"{MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes: send fewer or shorter headers")
            await _send_json(send_with_id, 431, error_payload(scope["path"], message, rid))
            _log_request(scope, rid, seen, None)
            return
        try:
            too_large = self._too_large(scope["path"], headers)
            if too_large:
                await _send_json(send_with_id, 413, error_payload(scope["path"], too_large, rid))
            else:
                await self.app(scope, self._counting(receive, scope["path"]), send_with_id)
        except _BodyTooLarge as exc:
            if not seen["status"]:
                await _send_json(send_with_id, 413, error_payload(scope["path"], exc.detail, rid))
        except Exception:
            log.exception("request_id=%s method=%s path=%s failed", rid, scope["method"], scope["path"])
            if not seen["status"]:
                body = error_payload(scope["path"], "internal error; quote the request id when reporting it",
                                     rid, kind="server_error")
                await _send_json(send_with_id, 500, body)
        finally:
            _log_request(scope, rid, seen, state.get("timings_ms"))

    def _too_large(self, path: str, headers: dict) -> str:
        """The 413 message when the declared Content-Length is over the limit, else ''."""
        length = headers.get(b"content-length")
        if not path.startswith(BODY_LIMITED) or not length or not length.isdigit():
            return ""
        return self._message(int(length)) if int(length) > self.max_body_bytes else ""

    def _message(self, size: int) -> str:
        return (f"the request body has {'more than ' if size < 0 else ''}{abs(size)} bytes; the limit is "
                f"{self.max_body_bytes} (RAG_MAX_BODY_BYTES): send fewer or shorter articles per request")

    def _counting(self, receive, path: str):
        """``receive`` that stops a chunked body (no Content-Length) once it passes the limit."""
        if not path.startswith(BODY_LIMITED):
            return receive
        total = 0

        async def wrapped():
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_body_bytes:
                    raise _BodyTooLarge(self._message(-self.max_body_bytes))
            return message
        return wrapped


class _BodyTooLarge(HTTPException):
    """Raised inside ``receive`` when a streamed body passes the limit; FastAPI re-raises HTTP exceptions
    from body reading, so it reaches the app's handler as a 413 with this message."""

    def __init__(self, message: str):
        super().__init__(413, message)


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


QUIET_PREFIXES = ("/ui/", "/docs-assets/", "/favicon.ico")  # the UI's assets and queue polls: DEBUG, not INFO


def _log_request(scope, rid: str, seen: dict, timings: dict | None) -> None:
    """One structured line per request: id, method, path, status, wall time and the answer's step timings.
    The web UI's own traffic (assets, queue polls: hundreds a session) is logged at DEBUG unless it fails."""
    steps = "".join(f" {k}_ms={v}" for k, v in (timings or {}).items())
    status = seen["status"] or 500
    quiet = scope["path"].startswith(QUIET_PREFIXES) and status < 400
    log.log(logging.DEBUG if quiet else logging.INFO, "request_id=%s method=%s path=%s status=%s ms=%.1f%s", rid,
            scope["method"], scope["path"], status, (time.perf_counter() - seen["started"]) * 1000, steps)
