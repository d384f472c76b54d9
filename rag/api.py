"""The HTTP API: ``POST /ask`` and friends. Errors become HTTP statuses here, in one place."""
from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from index.errors import (IndexMismatchError, IndexMissingError, InputError, NotFoundError, RagError,
                          UnknownNameError)
from rag.pipeline import Pipeline
from rag.retriever import Filters

log = logging.getLogger("rag.api")


class FiltersIn(BaseModel):
    """Restrict the search to some articles, a date range or a language."""

    article_ids: list[str] | None = None
    date_from: str | None = Field(None, examples=["2025-01-01"])
    date_to: str | None = Field(None, examples=["2025-12-31"])
    language: str | None = Field(None, examples=["fr"])


class Turn(BaseModel):
    """One earlier message of the conversation."""

    role: str = Field(..., pattern="^(user|assistant)$")
    content: str


class AskIn(BaseModel):
    """A question about the articles."""

    question: str = Field(..., examples=["Combien Microsoft a-t-il investi dans OpenAI ?"])
    top_k: int | None = Field(None, ge=1, le=50)
    backend: str | None = Field(None, examples=["extractive"])
    history: list[Turn] | None = None
    filters: FiltersIn | None = None


STATUS = {InputError: 400, UnknownNameError: 400, NotFoundError: 404, IndexMissingError: 503,
          IndexMismatchError: 503}


def create_app(load: Callable[[], Pipeline], on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The API app; ``load`` builds the pipeline once, at start-up, then ``on_ready`` runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pipeline = load()
        if on_ready:
            on_ready()
        yield

    app = FastAPI(title="newsrag", version="0.1.0", lifespan=lifespan,
                  description="Answers from news articles, every sentence cited.")

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id, started = rid, time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("request %s %s %s failed", rid, request.method, request.url.path)
            response = JSONResponse({"error": "internal error", "request_id": rid}, status_code=500)
        response.headers["x-request-id"] = rid
        log.info("request_id=%s method=%s path=%s status=%s ms=%.1f", rid, request.method,
                 request.url.path, response.status_code, (time.perf_counter() - started) * 1000)
        return response

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
        return JSONResponse({"error": str(exc), "request_id": request.state.request_id}, status_code=status)

    @app.post("/ask", summary="Answer a question from the articles, with cited sources")
    def ask(body: AskIn, request: Request) -> dict:
        pipeline: Pipeline = request.app.state.pipeline
        f = body.filters
        filters = Filters(tuple(f.article_ids or ()), f.date_from or "", f.date_to or "", f.language or "") if f else None
        answer = pipeline.ask(body.question, top_k=body.top_k, backend=body.backend, filters=filters,
                              history=[t.model_dump() for t in body.history or []])
        return answer.to_dict()

    @app.get("/health", summary="The process is alive")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="Model and index are loaded")
    def ready(request: Request) -> dict:
        pipeline: Pipeline = request.app.state.pipeline
        return {"status": "ready", "chunks": len(pipeline.data), "articles": len(pipeline.data.articles),
                "manifest": pipeline.data.manifest}

    @app.get("/articles", summary="The indexed articles")
    def articles(request: Request) -> list[dict]:
        data = request.app.state.pipeline.data
        return [{"id": a.id, "title": a.title, "date": a.date, "url": a.url, "language": a.language,
                 "chunks": a.n_chunks} for a in data.articles]

    @app.get("/articles/{article_id}", summary="One article with its text")
    def article(article_id: str, request: Request) -> dict:
        record = request.app.state.pipeline.data.article_by_id.get(article_id)
        if record is None:
            raise NotFoundError(f"no article {article_id!r}; GET /articles lists them")
        return {k: v for k, v in record.__dict__.items() if k != "path"}

    return app
