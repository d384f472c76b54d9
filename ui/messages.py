"""The one place where errors become messages a reader or an editor can act on (never a stack trace)."""
from __future__ import annotations

import logging

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
from rag.keys import ForbiddenError, MissingKeyError
from ui.i18n import t

log = logging.getLogger("rag.ui")

# Most specific first: the heading shown above the error's own message (which says what to do).
_HEADINGS: tuple[tuple[type[RagError], str], ...] = (
    (MissingKeyError, "error_key"), (ForbiddenError, "error_key"),
    (InputError, "error_input"), (UnknownNameError, "error_input"), (NotFoundError, "error_input"),
    (IndexMissingError, "error_index"), (IndexMismatchError, "error_index"), (BackendError, "error_backend"),
    (ConfigError, "error_config"), (ModelError, "error_model"),
)


def error_message(exc: BaseException, language: str) -> str:
    """A readable one-paragraph message for ``exc``; unexpected errors are logged with their traceback."""
    if isinstance(exc, RagError):
        key = next((k for kind, k in _HEADINGS if isinstance(exc, kind)), "error")
        return f"{t(language, key)}: {exc}"
    log.error("unexpected error in the web UI", exc_info=exc)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return f"{t(language, 'error_backend')}. {t(language, 'error_unknown')}"
    return t(language, "error_unknown")
