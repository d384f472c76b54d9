"""API keys: write endpoints always need one; reads need one when ``RAG_READ_REQUIRES_KEY`` is true.

A key is sent as ``Authorization: Bearer KEY`` (what OpenAI clients send) or ``X-API-Key: KEY``.
Keys are compared in constant time.
"""
from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from common.errors import RagError

_bearer = HTTPBearer(auto_error=False, description="An API key from RAG_API_KEYS")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from RAG_API_KEYS")
HOW = "send `Authorization: Bearer <key>` or `X-API-Key: <key>`"


class MissingKeyError(RagError):
    """The endpoint needs an API key and the request has none (HTTP 401)."""


class ForbiddenError(RagError):
    """The key is not valid, or the server has none configured for this endpoint (HTTP 403)."""


def check_key(settings, given: str | None, write: bool) -> None:
    """Raise unless ``given`` may use an endpoint of this kind (``write`` or read)."""
    if not write and not settings.read_requires_key:
        return
    what = "writing articles" if write else "reading (RAG_READ_REQUIRES_KEY=true)"
    if not settings.api_keys:
        raise ForbiddenError(f"{what} is disabled because the server has no API key: set RAG_API_KEYS=key1,key2 "
                             f"on the server, then {HOW}")
    if not given:
        raise MissingKeyError(f"{what} needs an API key: {HOW}")
    if not any(hmac.compare_digest(given.encode(), key.encode()) for key in settings.api_keys):
        raise ForbiddenError(f"the API key is not valid for {what}; use one of the keys in RAG_API_KEYS")


def _given(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    return (bearer.credentials if bearer else None) or header


def require_write(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                  header: str | None = Depends(_header)) -> None:
    """Dependency of the write endpoints."""
    check_key(request.app.state.settings, _given(bearer, header), write=True)


def require_read(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                 header: str | None = Depends(_header)) -> None:
    """Dependency of the read endpoints (open unless RAG_READ_REQUIRES_KEY is true)."""
    check_key(request.app.state.settings, _given(bearer, header), write=False)


def mark_optional_reads(spec: dict, routers) -> None:
    """Make the OpenAPI ``spec`` say that the reads of ``routers`` need no key (``{}`` in ``security``)."""
    from fastapi.routing import APIRoute

    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and any(d.dependency is require_read for d in route.dependencies):
                for method in route.methods:
                    operation = spec["paths"][route.path_format][method.lower()]
                    operation["security"] = [{}, *operation.get("security", [])]
