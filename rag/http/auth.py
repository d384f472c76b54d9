"""API keys: write endpoints always need one; reads need one when ``RAG_READ_REQUIRES_KEY`` is true.

A key is sent as ``Authorization: Bearer KEY`` (what OpenAI clients send) or ``X-API-Key: KEY``.
Keys are compared in constant time.
"""
from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from rag.keys import HOW, ForbiddenError, MissingKeyError, check_key

_bearer = HTTPBearer(auto_error=False, description="An API key from RAG_API_KEYS")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from RAG_API_KEYS")

__all__ = ["HOW", "ForbiddenError", "MissingKeyError", "check_key", "require_read", "require_write"]


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
