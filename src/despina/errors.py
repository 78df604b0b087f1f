"""The despina error tree.

Every error despina raises on purpose derives from :class:`DespinaError`. Errors about bad input
also derive from the matching builtin, so ``except ValueError`` keeps working::

    DespinaError
    ├── ConfigError (ValueError)              bad environment variable, home or project name
    ├── ProjectNotFound (LookupError)         no such project in the store
    ├── RunNotFound (LookupError)             no such run in a project
    ├── StoreError                            the store could not be read or written
    │   ├── StoreBusy                         other writers held the store past the busy timeout
    │   └── SchemaTooNew                      the database was written by a newer despina
    ├── InvalidQuery (ValueError)             a query argument or NQL text is wrong
    │   └── NqlError                          NQL syntax or semantic error, with position
    └── AuthError                             token missing, forged, revoked (status 401/403)

Each class carries the HTTP status the server answers with (``status``). Messages say what failed,
the offending value, what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "DespinaError",
    "InvalidQuery",
    "NqlError",
    "ProjectNotFound",
    "RunNotFound",
    "SchemaTooNew",
    "StoreBusy",
    "StoreError",
]


class DespinaError(Exception):
    """Base of every error despina raises on purpose."""

    status = 500


class ConfigError(DespinaError, ValueError):
    """A setting (argument or environment variable) has an unusable value."""

    status = 400


class ProjectNotFound(DespinaError, LookupError):
    """The named project does not exist in the store."""

    status = 404


class RunNotFound(DespinaError, LookupError):
    """The named run does not exist in the project."""

    status = 404


class StoreError(DespinaError):
    """The store could not be opened, read or written; the message says why."""


class StoreBusy(StoreError):
    """Other writers kept the store locked past the busy timeout; retrying later succeeds.

    The server answers 429 with ``Retry-After``: the clients back off and resend."""

    status = 429


class SchemaTooNew(StoreError):
    """The database schema is newer than this despina understands."""


class InvalidQuery(DespinaError, ValueError):
    """A query argument or filter is invalid."""

    status = 400


class NqlError(InvalidQuery):
    """An NQL query could not be parsed or resolved.

    ``line``, ``col`` (1-based), ``start`` and ``end`` (0-based character offsets into the query)
    locate the problem; ``str()`` shows the query with a caret under it.
    """

    def __init__(
        self,
        description: str,
        query: str,
        start: int,
        end: int | None = None,
    ) -> None:
        self.description = description
        self.query = query
        self.start = max(0, min(start, len(query)))
        self.end = max(self.start + 1, end if end is not None else self.start + 1)
        before = query[: self.start]
        self.line = before.count("\n") + 1
        self.col = self.start - (before.rfind("\n") + 1) + 1
        super().__init__(self._render())

    def _render(self) -> str:
        lines = self.query.split("\n")
        text_line = lines[self.line - 1] if lines else ""
        width = max(1, min(self.end - self.start, len(text_line) - self.col + 1))
        caret = " " * (self.col - 1) + "^" * width
        return f"{self.description} (line {self.line}, col {self.col})\n  {text_line}\n  {caret}"


class AuthError(DespinaError):
    """A request carried no valid credentials (401) or reached outside them (403)."""

    status = 401

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status
