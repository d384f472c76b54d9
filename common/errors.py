"""The project's errors. Each message says what went wrong and what to do next."""
from __future__ import annotations


class RagError(Exception):
    """Base class for errors a user can act on; the edges (CLI, HTTP, UI) turn them into messages."""


class ConfigError(RagError):
    """A setting is missing or invalid."""


class InputError(RagError):
    """Input from a user (a file, a question, a request) is malformed."""


class ModelError(RagError):
    """An embedding model cannot be found, converted or loaded."""


class IndexMismatchError(RagError):
    """The index on disk does not match the current settings or is damaged."""


class IndexMissingError(RagError):
    """No index exists where one was expected."""


class NotFoundError(RagError):
    """A named thing (article, eval item) does not exist."""


class UnknownNameError(RagError):
    """A registry was asked for a name it does not know."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")


class BackendError(RagError):
    """An answer backend failed (unreachable, timed out, returned garbage)."""
