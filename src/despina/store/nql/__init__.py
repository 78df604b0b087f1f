"""NQL compiled to SQL for the store, one dialect per database.

:func:`compile_filter` turns NQL (text, a parsed tree or a resolved tree, see
:mod:`despina.nql`) into one SQL boolean expression over ``runs r`` and ``projects p`` (``p.id =
r.project_id``) for the database a store connection talks to:

* :mod:`~despina.store.nql.compiler`: what both share: the boolean structure, the plan (the
  cheapest required clause drives, the others are probed cheapest first), attribute tests;
* :mod:`~despina.store.nql.sqlite`: the embedded store (``INDEXED BY``, RE2 as an SQL function,
  :mod:`~despina.store.nql.functions`);
* :mod:`~despina.store.nql.postgres`: PostgreSQL (exact numbers over ``numeric`` and doubles,
  code point text order, RE2 run here over the candidate values).

Both give the answers of the reference evaluator (:mod:`despina.nql.reference`), which the
differential tests check on each backend.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from despina.store.nql.functions import REGEXP_FUNCTION, install_functions

if TYPE_CHECKING:
    from despina.nql import ast
    from despina.nql.resolve import Resolved

__all__ = ["REGEXP_FUNCTION", "compile_filter", "compile_sqlite", "install_functions"]


def compile_filter(
    conn: Any,
    query: str | ast.Node | Resolved,
    *,
    now_ms: int,
    project_ids: Sequence[int] | None = None,
) -> tuple[str, list[Any]]:
    """Compile NQL into ``(sql, params)`` for the database of ``conn``, a connection the store
    handed out (``store.read()`` / ``store.connection()``).

    ``sql`` is one boolean expression to use as ``WHERE r.project_id = ? AND (<sql>)`` with
    ``runs r JOIN projects p ON p.id = r.project_id``; ``params`` are its ``?`` values in order.
    ``now_ms`` is the evaluation time (relative datetimes, ``sys/state``). ``project_ids`` are
    the projects the filter will be applied to (``None``: any); on PostgreSQL, regular
    expressions are evaluated while compiling, over these projects' values, so run the result
    in the same read transaction as the compilation.

    Raises:
        NQLSyntaxError: the text does not parse.
        NQLSemanticError: the query does not resolve (see :func:`despina.nql.resolve.resolve`).
    """
    resolved = _resolved(query, now_ms)
    if isinstance(conn, sqlite3.Connection):
        from despina.store.nql.sqlite import SqliteFilterCompiler

        return SqliteFilterCompiler(now_ms).compile(resolved)
    from despina.store.nql.postgres import PostgresFilterCompiler

    return PostgresFilterCompiler(now_ms, conn, project_ids).compile(resolved)


def compile_sqlite(query: str | ast.Node | Resolved, *, now_ms: int) -> tuple[str, list[Any]]:
    """``(sql, params)`` in the embedded store's dialect, without a connection (see
    :func:`compile_filter`; the connection needs :func:`install_functions`, which the embedded
    store applies to each of its connections)."""
    from despina.store.nql.sqlite import SqliteFilterCompiler

    return SqliteFilterCompiler(now_ms).compile(_resolved(query, now_ms))


def _resolved(query: str | ast.Node | Resolved, now_ms: int) -> Resolved:
    from despina.nql import resolve as stage

    resolved = (
        stage.AllOf,
        stage.AnyOf,
        stage.NotOf,
        stage.Const,
        stage.AttrTest,
        stage.SysTest,
        stage.StateTest,
    )
    return query if isinstance(query, resolved) else stage.resolve(query, now_ms=now_ms)
