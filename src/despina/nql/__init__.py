"""NQL, the Neptune Query Language (``spec/nql.md``): parse, render, resolve and compile to SQL.

The pipeline has one module per stage: :mod:`~despina.nql.tokens` → :mod:`~despina.nql.parser`
(:mod:`~despina.nql.ast`) → :mod:`~despina.nql.resolve` → the store's compiler to SQL
(:mod:`despina.store.nql`, one dialect per database; :mod:`~despina.nql.compile` keeps the names
older code imports);
:mod:`~despina.nql.reference` evaluates resolved queries in Python for tests. (The resolver's
entry point is ``despina.nql.resolve.resolve``: the package exports no ``resolve`` so that the
name keeps meaning the module.)

>>> from despina.nql import parse, render
>>> render(parse('`sys/name`:string = "exp" AND f1:float >= 0.85'))
'(`sys/name`:string == "exp") AND (`f1`:float >= 0.85)'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from despina.nql.ast import render
from despina.nql.errors import NQLError, NqlError, NQLSemanticError, NQLSyntaxError
from despina.nql.parser import parse
from despina.nql.reference import evaluate

__all__ = [
    "NQLError",
    "NQLSemanticError",
    "NQLSyntaxError",
    "NqlError",
    "compile_query",
    "evaluate",
    "install_functions",
    "parse",
    "render",
]

if TYPE_CHECKING:
    from despina.nql.compile import compile_query, install_functions


def __getattr__(name: str) -> Any:
    # the compiler belongs to the store, which imports this package: load it on first use
    if name in ("compile_query", "install_functions"):
        from despina.nql import compile

        return getattr(compile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
