"""The HTTP API: questions, articles, health, and an OpenAI-compatible door. Errors become HTTP statuses here.

Run the API alone with ``uvicorn --factory rag.http.app:create_default_app``; ``rag serve`` (``make run``)
serves it together with the web UI.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import (
    BackendError,
    ConfigError,
    IndexMismatchError,
    IndexMissingError,
    InputError,
    ModelError,
    NotFoundError,
    RagError,
    UnknownNameError,
)
from rag.backends import backend_names
from rag.http import ask, openai, routes
from rag.http.auth import ForbiddenError, MissingKeyError, mark_optional_reads
from rag.http.jobs import IngestJobs
from rag.http.middleware import Edge, error_payload
from rag.http.schemas import PATTERN_TEXT
from rag.pipeline import Pipeline
from rag.service import FeedSyncer, IndexFollower, load_pipeline, warm_writer
from rag.settings import Settings, get_settings
from rag.types import MODES

STATUS = {MissingKeyError: 401, ForbiddenError: 403, InputError: 400, UnknownNameError: 400,
          NotFoundError: 404, BackendError: 502, IndexMissingError: 503, IndexMismatchError: 503,
          ModelError: 503, ConfigError: 503}  # 502: the model server failed; 503: this server is not set up for it
DESCRIPTION = """Answers from news articles, every sentence cited `[n]`, or an abstention when the articles don't say.

* `POST /ask` — the answer, its numbered passages and timings; `"stream": true` for Server-Sent Events.
* `GET/POST /articles`, `GET/DELETE /articles/{id}` — the indexed articles; writes need an API key.
* `POST /v1/chat/completions`, `GET /v1/models` — for OpenAI clients; sources in `sources` and at the end of the text.

Errors are `{"error": "what to fix", "request_id": "..."}`; every response has an `x-request-id` header.
"""


def create_app(load: Callable[[], Pipeline], on_ready: Callable[[], None] | None = None,
               settings: Settings | None = None) -> FastAPI:
    """The API app; ``load`` builds the pipeline once, at start-up, then ``on_ready`` runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        _set_threads(app.state.settings.faiss_threads, app.state.settings.torch_threads)
        app.state.pipeline = load()
        # Follow what other processes commit to the index folder (the CLI, other replicas).
        app.state.follower = IndexFollower(app.state.pipeline, app.state.settings.follow_interval).start()
        # Sync RAG_FEEDS into the served index on schedule (nothing without feeds).
        app.state.feeds = FeedSyncer(app.state.pipeline, app.state.settings).start()
        if on_ready:
            on_ready()
        yield
        app.state.feeds.stop()
        app.state.follower.stop()

    # Swagger UI and ReDoc served from fastapi-offline's files, not a CDN: /docs works with no internet.
    app = FastAPIOffline(title="newsrag", version="0.1.0", lifespan=lifespan, description=DESCRIPTION,
                         static_url="/docs-assets")
    app.state.settings = settings or get_settings()
    app.state.jobs = IngestJobs()
    app.add_middleware(Edge, max_body_bytes=app.state.settings.max_body_bytes)
    routers = (routes.status_router, ask.router, routes.articles_router, openai.router)
    _add_error_handlers(app, routers)
    for router in routers:
        app.include_router(router)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        """The browser's icon (fastapi-offline's), so no page load logs a 404."""
        import fastapi_offline

        return FileResponse(Path(fastapi_offline.__file__).parent / "static" / "favicon.png", media_type="image/png")
    app.openapi = lambda: app.openapi_schema or _openapi(app, routers)
    return app


def _set_threads(faiss_threads: int, torch_threads: int) -> None:
    """One OpenMP thread per FAISS search: under concurrent requests FAISS's default (every core) is several
    times slower (README, bench/latency.py --faiss-threads). Torch keeps its default unless told."""
    if faiss_threads > 0:
        import faiss

        faiss.omp_set_num_threads(faiss_threads)
    if torch_threads > 0:
        import torch

        torch.set_num_threads(torch_threads)


def create_default_app() -> FastAPI:
    """The API alone, on the settings from the environment (for ``uvicorn --factory``)."""
    def load() -> Pipeline:
        pipeline = load_pipeline(get_settings())
        pipeline.warm_up()  # each of `uvicorn --workers N` answers its first question as fast as its next
        warm_writer()
        return pipeline

    return create_app(load)


def _openapi(app: FastAPI, routers) -> dict:
    """FastAPI's schema, plus what depends on the settings: the question's length limit, optional keys."""
    spec = FastAPI.openapi(app)
    settings, schemas = app.state.settings, spec["components"]["schemas"]
    schemas["AskIn"]["properties"]["question"]["maxLength"] = settings.max_question_chars
    for model, field, names in (("AskIn", "backend", backend_names()), ("ChatIn", "model", backend_names()),
                                ("AskIn", "mode", sorted(MODES)), ("ChatIn", "mode", sorted(MODES))):
        prop = schemas[model]["properties"][field]
        next(s for s in prop.get("anyOf", [prop]) if s.get("type") == "string")["enum"] = names
    if not settings.read_requires_key:
        mark_optional_reads(spec, routers)
    return spec


def _add_error_handlers(app: FastAPI, routers) -> None:
    """The one place where errors become statuses and bodies that say what to fix."""

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
        headers = {"www-authenticate": "Bearer"} if status == 401 else None
        kind = "authentication_error" if status in (401, 403) else "invalid_request_error"
        return _error(request, status, str(exc), kind, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json:
            return _error(request, 400, "the body is not valid JSON "
                          f"({bad_json.get('ctx', {}).get('error', 'decode error')}"
                          f" at character {bad_json['loc'][-1]}); send a JSON object, see /docs for examples")
        if isinstance(exc.body, bytes):  # not parsed: the Content-Type is not JSON
            return _error(request, 415, f"the body must be JSON sent with `Content-Type: application/json` (got "
                          f"{request.headers.get('content-type') or 'no Content-Type'})")
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        return _error(request, 422, f"invalid request: {_describe(errors, exc.body)}; see /docs for the schema",
                      detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = {404: f"no such endpoint: {request.method} {request.url.path}; see /docs",
                   405: f"{request.method} is not allowed on {request.url.path}; see /docs"}
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # the methods of every route on this path, not only the first one's
            headers = {"allow": ", ".join(sorted({m for router in routers for route in router.routes
                                                  if route.path_regex.match(request.url.path) for m in route.methods}))}
        return _error(request, exc.status_code, message.get(exc.status_code, str(exc.detail)), headers=headers)


def _error(request: Request, status: int, message: str, kind: str = "invalid_request_error",
           detail: list | None = None, headers: dict | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", "")
    return JSONResponse(error_payload(request.url.path, message, rid, kind, detail), status_code=status,
                        headers=headers)


def _describe(errors: list[dict], body, limit: int = 5) -> str:
    """'question: Field required; top_k: Input should be less than or equal to 50' from pydantic errors.

    For a body that may be one object or a list (POST /articles), only the errors of the shape sent are told.
    """
    tagged = [e for e in errors if len(e["loc"]) > 1 and _is_tag(e["loc"][1])]
    if tagged:
        errors = [e for e in tagged if str(e["loc"][1]).startswith("list[") == isinstance(body, list)] or errors
    parts = []
    for e in errors[:limit]:
        where = ".".join(str(p) for p in e["loc"][1:] if not _is_tag(p)) or "body"
        pattern = e.get("ctx", {}).get("pattern") if e.get("type") == "string_pattern_mismatch" else None
        parts.append(f"{where}: {PATTERN_TEXT.get(pattern, e['msg'])}")
    return "; ".join(parts) + (f" (and {len(errors) - limit} more)" if len(errors) > limit else "")


def _is_tag(part) -> bool:
    """True for pydantic's name of a union member in an error location ('ArticleIn', 'list[ArticleIn]')."""
    return isinstance(part, str) and bool(part) and (part[0].isupper() or "[" in part)
