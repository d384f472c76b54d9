"""``/health``, ``/ready`` and ``/articles``: the server's state and the indexed articles (reads and writes)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field

from common.errors import NotFoundError
from index.loaders import make_article, within_limit
from rag.backends import available_backends
from rag.http.ask import ERRORS
from rag.http.auth import require_read, require_write
from rag.http.pages import article_page
from rag.http.schemas import ArticleIn, ArticleOut, ArticleSummary, ErrorOut, IngestOut, JobOut, ReadyOut
from rag.pipeline import Pipeline
from rag.service import update_live

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
            "model": pipeline.embedder.name, "backends": available_backends(pipeline.settings),
            "default_backend": pipeline.settings.backend, "manifest": pipeline.data.manifest,
            "version": Path(pipeline.data.path).name if pipeline.data.path else ""}


articles_router = APIRouter(prefix="/articles", tags=["Articles"], responses={
    **ERRORS, 404: {"model": ErrorOut, "description": "No article with this id"}})


@articles_router.get("", summary="The indexed articles", response_model=list[ArticleSummary],
                     dependencies=[Depends(require_read)])
def list_articles(request: Request) -> list[dict]:
    """Every indexed article's id, title, date, URL, language and chunk count, in index order."""
    return [{"id": a.id, "title": a.title, "date": a.date, "url": a.url, "language": a.language,
             "chunks": a.n_chunks, "source": a.source, "updated": a.updated, "story": a.story}
            for a in request.app.state.pipeline.data.articles]


@articles_router.get("/{article_id}", summary="One article with its text", response_model=ArticleOut,
                     dependencies=[Depends(require_read)])
def get_article(article_id: str, request: Request) -> dict:
    """The article's metadata and full text; ``start``/``end`` of citations are offsets into ``text``."""
    record = request.app.state.pipeline.data.article_by_id.get(article_id)
    if record is None:
        raise NotFoundError(f"no article {article_id!r}; GET /articles lists them")
    copies = [{"article_id": a.id, "title": a.title, "source": a.source, "date": a.date, "url": a.url}
              for a in request.app.state.pipeline.data.copies(article_id)]
    return {**{k: v for k, v in dataclasses.asdict(record).items() if k not in ("path", "minhash")}, "copies": copies}


@articles_router.get("/{article_id}/view", summary="The article as a page, the cited span marked",
                     response_model=None, dependencies=[Depends(require_read)],
                     responses={200: {"description": "An HTML page",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}})
def view_article(article_id: str, request: Request, start: int = Query(0, ge=0), end: int = Query(0, ge=0)):
    """The whole article as a readable HTML page, with ``text[start:end]`` (a citation's offsets, e.g. from
    the UI's "read the article" link) marked and scrolled to (``#cited``)."""
    record = request.app.state.pipeline.data.article_by_id.get(article_id)
    if record is None:
        raise NotFoundError(f"no article {article_id!r}; GET /articles lists them")
    return HTMLResponse(article_page(record, start, end), headers={
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"})


@articles_router.post("", summary="Add or replace articles (one object or a list)", response_model=IngestOut,
                      dependencies=[Depends(require_write)],
                      responses={202: {"model": JobOut, "description": "A large batch, queued as a job: poll its "
                                       "`url` (also in the Location header)"}})
def add_articles(body: ArticleIn | Annotated[list[ArticleIn], Field(min_length=1, max_length=1000)],
                 request: Request, wait: bool | None = Query(None, description="true: answer when indexed "
                                                             "(200); false: always queue a job (202); default: "
                                                             "a job past RAG_INGEST_JOB_CHARS of text")):
    """Index the articles incrementally: new ids are added, changed ones replaced, identical ones skipped.

    Every article is checked first (a bad one is a 4xx and nothing is written). A batch with more text than
    ``RAG_INGEST_JOB_CHARS`` is indexed in the background: the answer is 202 with the job to poll.
    Questions asked meanwhile are answered from the previous index until the new one is swapped in whole.
    """
    items = body if isinstance(body, list) else [body]
    settings = request.app.state.settings
    articles = {a.id: a for a in (_article(i, item, settings.max_article_chars)
                                  for i, item in enumerate(items))}  # a later one wins
    pipeline, batch = request.app.state.pipeline, list(articles.values())
    queued = (not wait) if wait is not None else sum(len(a.text) for a in batch) > settings.ingest_job_chars
    if not queued:
        return _ingest_out(pipeline, update_live(pipeline, articles=batch))
    job = request.app.state.jobs.submit(len(batch), lambda: _ingest_out(pipeline, update_live(pipeline,
                                                                                               articles=batch)))
    body = job.to_dict()
    return JSONResponse(body, status_code=202, headers={"location": body["url"]})


@articles_router.get("/jobs/{job_id}", summary="A queued batch of articles: its status and result",
                     response_model=JobOut, dependencies=[Depends(require_write)])
def get_job(job_id: str, request: Request) -> dict:
    """Where a ``POST /articles`` job is (queued, running, done, failed) and, once done, what it changed."""
    return request.app.state.jobs.get(job_id).to_dict()


@articles_router.delete("/{article_id}", summary="Delete an article from the index", response_model=IngestOut,
                        dependencies=[Depends(require_write)])
def delete_article(article_id: str, request: Request) -> dict:
    """Remove the article and its chunks; the new index is swapped in whole."""
    pipeline: Pipeline = request.app.state.pipeline
    _follow(request)  # a version committed by another process a moment ago counts
    if article_id not in pipeline.data.article_by_id:
        raise NotFoundError(f"no article {article_id!r} to delete; GET /articles lists them")
    return _ingest_out(pipeline, update_live(pipeline, delete=[article_id]))


def _follow(request: Request) -> None:
    """Serve the live version now if another process committed one since the follower's last look."""
    follower = getattr(request.app.state, "follower", None)
    if follower is not None:
        follower.check()


def _article(i: int, item: ArticleIn, max_chars: int):
    """A checked Article from the request; API articles have no file path (so a corpus sync keeps them)."""
    article = within_limit(make_article(item.model_dump(exclude={"text"}), item.text, path=f"articles[{i}]"),
                           max_chars, f"articles[{i}]")
    return dataclasses.replace(article, path="")


def _ingest_out(pipeline: Pipeline, report) -> dict:
    return {"added": report.added, "replaced": report.replaced, "unchanged": report.unchanged,
            "deleted": report.deleted, "chunks_embedded": report.chunks_embedded,
            "chunks_total": report.chunks_total, "articles_total": len(pipeline.data.articles),
            "seconds": report.seconds, "same_url": report.same_url}
