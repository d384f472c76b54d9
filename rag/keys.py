"""Who may do what: API keys for the HTTP API, editor keys for the review room.

- Writes through the API (``POST``/``DELETE /articles``) need a key of ``RAG_API_KEYS``; reads need one
  only when ``RAG_READ_REQUIRES_KEY`` is true (the chat asks for it then too).
- The review room's writes (verdicts, edits, new items, eval runs) need an editor's key:
  ``RAG_EDITOR_KEYS`` entries ``name:key`` (the name is recorded with each verdict), or, when none is
  set, any API key (recorded as ``api-<first 6 hex of its sha256>``).
Keys are compared in constant time; every check runs on the server, in the handler that writes.
"""
from __future__ import annotations

import hashlib
import hmac

from common.errors import RagError

HOW = "send `Authorization: Bearer <key>` or `X-API-Key: <key>`"


class MissingKeyError(RagError):
    """The endpoint needs a key and the request has none (HTTP 401)."""


class ForbiddenError(RagError):
    """The key is not valid, or the server has none configured for this action (HTTP 403)."""


def _matches(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())


def check_key(settings, given: str | None, write: bool, how: str = HOW) -> None:
    """Raise unless ``given`` may use an endpoint of this kind (``write`` or read)."""
    if not write and not settings.read_requires_key:
        return
    what = "writing articles" if write else "reading (RAG_READ_REQUIRES_KEY=true)"
    if not settings.api_keys:
        raise ForbiddenError(f"{what} is disabled because the server has no API key: set RAG_API_KEYS=key1,key2 "
                             f"on the server, then {how}")
    if not given:
        raise MissingKeyError(f"{what} needs an API key: {how}")
    if not any([_matches(given, key) for key in settings.api_keys]):  # a list: every key is compared
        raise ForbiddenError(f"the API key is not valid for {what}; use one of the keys in RAG_API_KEYS")


def editor_keys(settings) -> dict[str, str]:
    """Editor name -> key: RAG_EDITOR_KEYS, else the API keys under a name derived from each key."""
    if settings.editor_keys:
        return dict(settings.editor_keys)
    return {"api-" + hashlib.sha256(key.encode()).hexdigest()[:6]: key for key in settings.api_keys}


def editor_for(settings, given: str | None) -> str:
    """The name of the editor whose key is ``given``; raises with what to do when there is none."""
    keys = editor_keys(settings)
    if not keys:
        raise ForbiddenError("the review room is read-only because the server has no editor key: set "
                             "RAG_EDITOR_KEYS=name:key (or RAG_API_KEYS) on the server, then sign in with the key")
    given = (given or "").strip()
    if not given:
        raise MissingKeyError("changing the eval set needs an editor's key: type yours in the “Editor key” field")
    names = [name for name, key in keys.items() if _matches(given, key)]
    if not names:
        raise ForbiddenError("this editor key is not valid: use your key from RAG_EDITOR_KEYS (or RAG_API_KEYS)")
    return names[0]
