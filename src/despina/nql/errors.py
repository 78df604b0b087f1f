"""NQL errors: syntax errors from the tokenizer and parser, semantic errors from the resolver.

Both derive from :class:`despina.errors.NqlError` (an ``InvalidQuery``, hence a ``ValueError``)
and render the layout of ``spec/nql.md`` §9::

    NQL syntax error at position 6 (line 1, column 7): expected a value after '>=', found …
    `a` >=
          ^
"""

from __future__ import annotations

from typing import ClassVar

from despina.errors import NqlError

__all__ = ["NQLError", "NQLSemanticError", "NQLSyntaxError", "NqlError"]

NQLError = NqlError
"""The spec's name for the base class (``despina.nql.NQLError``); the same class as ``NqlError``."""


class _PositionedError(NqlError):
    """An NQL error rendered as ``<prefix> at position <p> (line <l>, column <c>): <reason>``."""

    prefix: ClassVar[str] = "NQL error"
    title: ClassVar[str] = "Invalid query"
    """The ``title`` of the HTTP 400 body (``spec/wire-protocol.md``)."""

    @property
    def position(self) -> int:
        """0-based code-point offset of the offending token (the query length at its end)."""
        return self.start

    @property
    def column(self) -> int:
        """1-based column of the offending token (the same as ``col``)."""
        return self.col

    @property
    def reason(self) -> str:
        """What was expected and what was found, without position or caret."""
        return self.description

    def _render(self) -> str:
        lines = self.query.split("\n")
        text_line = lines[self.line - 1] if lines else ""
        # Copy tabs so that the caret lines up under tab-indented queries.
        pad = "".join("\t" if ch == "\t" else " " for ch in text_line[: self.col - 1])
        return (
            f"{self.prefix} at position {self.start} (line {self.line}, column {self.col}): "
            f"{self.description}\n{text_line}\n{pad}^"
        )


class NQLSyntaxError(_PositionedError):
    """The query text does not follow the NQL grammar (raised by the tokenizer and the parser).

    Example::

        NQL syntax error at position 4 (line 1, column 5): unexpected character '!', …
        `a` ! 1
            ^
    """

    prefix = "NQL syntax error"
    title = "Syntax error"


class NQLSemanticError(_PositionedError):
    """The query parses but cannot be evaluated: unknown type, operator not supported for a type,
    literal not coercible, non-finite number, invalid regex, misplaced aggregate.

    Example::

        NQL error at position 4 (line 1, column 5): unknown type 'flaot' (did you mean 'float'?)
        `a`:flaot = 1
            ^
    """

    prefix = "NQL error"
    title = "Invalid query"
