"""The HTTP API: questions, articles, health, and an OpenAI-compatible door. Errors become HTTP statuses here.

Run the API alone with ``uvicorn --factory rag.api:create_default_app``; ``rag serve`` (``make run``)
serves it together with the web UI.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.errors import (BackendError, ConfigError, IndexMismatchError, IndexMissingError, InputError, ModelError,
                          NotFoundError, RagError, UnknownNameError)
from index.loaders import make_article
from rag import api_ask, openai_compat
from rag.api_models import ArticleIn, ArticleOut, ArticleSummary, ErrorOut, IngestOut, ReadyOut
from rag.auth import ForbiddenError, MissingKeyError, mark_optional_reads, require_read, require_write
from rag.backends import backend_names
from rag.http_edge import Edge, error_payload
from rag.pipeline import Pipeline
from rag.retriever import MODES
from rag.service import load_pipeline, update_live
from rag.settings import Settings, get_settings

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
        app.state.pipeline = load()
        if on_ready:
            on_ready()
        yield

    app = FastAPI(title="newsrag", version="0.1.0", lifespan=lifespan, description=DESCRIPTION)
    app.state.settings = settings or get_settings()
    app.add_middleware(Edge, max_body_bytes=app.state.settings.max_body_bytes)
    routers = (status_router, api_ask.router, articles_router, openai_compat.router)
    _add_error_handlers(app, routers)
    for router in routers:
        app.include_router(router)
    app.openapi = lambda: app.openapi_schema or _openapi(app, routers)
    return app


def create_default_app() -> FastAPI:
    """The API alone, on the settings from the environment (for ``uvicorn --factory``)."""
    return create_app(lambda: load_pipeline(get_settings()))


def _openapi(app: FastAPI, routers) -> dict:
    """FastAPI's schema, plus what depends on the settings: the question's length limit, optional keys."""
    spec = FastAPI.openapi(app)
    settings, schemas = app.state.settings, spec["components"]["schemas"]
    schemas["AskIn"]["properties"]["question"]["maxLength"] = settings.max_question_chars
    for model, field, names in (("AskIn", "backend", backend_names()), ("ChatIn", "model", backend_names()),
                                ("AskIn", "mode", sorted(MODES)), ("ChatIn", "mode", sorted(MODES))):
        prop = schemas[model]["properties"][field]
        next((s for s in prop.get("anyOf", [prop]) if s.get("type") == "string"))["enum"] = names
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
            return _error(request, 400, f"the body is not valid JSON ({bad_json.get('ctx', {}).get('error', 'decode error')}"
                          f" at character {bad_json['loc'][-1]}); send a JSON object, see /docs for examples")
        if isinstance(exc.body, bytes):  # not parsed: the Content-Type is not JSON
            return _error(request, 415, f"the body must be JSON sent with `Content-Type: application/json` (got "
                          f"{request.headers.get('content-type') or 'no Content-Type'})")
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        return _error(request, 422, f"invalid request: {_describe(errors, exc.body)}; see /docs for the schema", detail=detail)

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
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts) + (f" (and {len(errors) - limit} more)" if len(errors) > limit else "")


def _is_tag(part) -> bool:
    """True for pydantic's name of a union member in an error location ('ArticleIn', 'list[ArticleIn]')."""
    return isinstance(part, str) and bool(part) and (part[0].isupper() or "[" in part)


status_router = APIRouter(tags=["Status"])


@status_router.get("/health", summary="The process is alive")
def health() -> dict:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@status_router.get("/ready", summary="Model and index are loaded", response_model=ReadyOut)
def ready(request: Request) -> dict:
    """Counts of the loaded index, its manifest, the embedding model and the answer backends."""
    pipeline: Pipeline = request.app.state.pipeline
    return {"status": "ready", "chunks": len(pipeline.data), "articles": len(pipeline.data.articles),
            "model": pipeline.embedder.name, "backends": backend_names(),
            "default_backend": pipeline.settings.backend, "manifest": pipeline.data.manifest}


articles_router = APIRouter(prefix="/articles", tags=["Articles"], responses={
    **api_ask.ERRORS, 404: {"model": ErrorOut, "description": "No article with this id"}})


@articles_router.get("", summary="The indexed articles", response_model=list[ArticleSummary],
                     dependencies=[Depends(require_read)])
def list_articles(request: Request) -> list[dict]:
    """Every indexed article's id, title, date, URL, language and chunk count, in index order."""
    return [{"id": a.id, "title": a.title, "date": a.date, "url": a.url, "language": a.language,
             "chunks": a.n_chunks} for a in request.app.state.pipeline.data.articles]


@articles_router.get("/{article_id}", summary="One article with its text", response_model=ArticleOut,
                     dependencies=[Depends(require_read)])
def get_article(article_id: str, request: Request) -> dict:
    """The article's metadata and full text; ``start``/``end`` of citations are offsets into ``text``."""
    record = request.app.state.pipeline.data.article_by_id.get(article_id)
    if record is None:
        raise NotFoundError(f"no article {article_id!r}; GET /articles lists them")
    return {k: v for k, v in dataclasses.asdict(record).items() if k != "path"}


@articles_router.post("", summary="Add or replace articles (one object or a list)", response_model=IngestOut,
                      dependencies=[Depends(require_write)])
def add_articles(body: ArticleIn | Annotated[list[ArticleIn], Field(min_length=1, max_length=1000)],
                 request: Request) -> dict:
    """Index the articles incrementally: new ids are added, changed ones replaced, identical ones skipped.

    Questions asked meanwhile are answered from the previous index until the new one is swapped in whole.
    """
    items = body if isinstance(body, list) else [body]
    articles = {a.id: a for a in (_article(i, item) for i, item in enumerate(items))}  # a later one wins
    return _ingest_out(request, update_live(request.app.state.pipeline, articles=list(articles.values())))


@articles_router.delete("/{article_id}", summary="Delete an article from the index", response_model=IngestOut,
                        dependencies=[Depends(require_write)])
def delete_article(article_id: str, request: Request) -> dict:
    """Remove the article and its chunks; the new index is swapped in whole."""
    pipeline: Pipeline = request.app.state.pipeline
    if article_id not in pipeline.data.article_by_id:
        raise NotFoundError(f"no article {article_id!r} to delete; GET /articles lists them")
    return _ingest_out(request, update_live(pipeline, delete=[article_id]))


def _article(i: int, item: ArticleIn):
    """A checked Article from the request; API articles have no file path (so a corpus sync keeps them)."""
    article = make_article(item.model_dump(exclude={"text"}), item.text, path=f"articles[{i}]")
    return dataclasses.replace(article, path="")


def _ingest_out(request: Request, report) -> dict:
    return {"added": report.added, "replaced": report.replaced, "unchanged": report.unchanged,
            "deleted": report.deleted, "chunks_embedded": report.chunks_embedded,
            "chunks_total": report.chunks_total, "articles_total": len(request.app.state.pipeline.data.articles),
            "seconds": report.seconds}
