"""Attribute values, definitions and ``sys/`` values of runs, for the query service.

Every function takes the connection of the caller's read transaction (``Store.read()``), so a
request reads one snapshot. Lists of run ids, paths and project ids are bound as one parameter
each (any length). ``sys/`` attributes are columns of ``runs`` (and ``projects``), described by
:data:`despina.store.sysattrs.SYS_COLUMNS`; the others are rows of ``attributes``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from despina.store.sql import c_collation
from despina.store.sysattrs import SYS_COLUMNS

__all__ = [
    "AttributeRow",
    "attribute_rows",
    "attribute_types",
    "definition_streams",
    "present_sys",
    "project_definitions",
    "sys_attribute_rows",
    "table_cells",
]

_RUNS_FROM = "runs r JOIN projects p ON p.id = r.project_id"
_LIST = "(SELECT value FROM json_each(?))"


def _json(values: Iterable[Any]) -> str:
    return json.dumps(list(values))


class AttributeRow(NamedTuple):
    """One ``attributes`` row as stored.

    ``num`` is an int or a float (None: no value, or NaN); ``text`` holds strings and JSON;
    the series aggregates (``point_count``, the ``count`` column, to ``fcount``) are None on
    non-series rows.
    """

    run_pk: int
    path: str
    type: str
    num: int | float | None
    text: str | None
    point_count: int | None
    last_step: int | None
    fmin: float | None
    fmax: float | None
    fsum: float | None
    fsumsq: float | None
    fcount: int | None
    attr_id: int


def attribute_rows(
    conn: Any, run_pks: Sequence[int], paths: Sequence[str] | None = None
) -> list[AttributeRow]:
    """The ``attributes`` rows of the runs ``run_pks`` (only ``paths``, when given), in no
    particular order. Series without committed points are included (``count`` 0)."""
    if not run_pks or (paths is not None and not paths):
        return []
    sql, params = _of_runs(
        "a.run_id, a.path, a.type, a.num, a.text, a.count, a.last_step, a.fmin, a.fmax, "
        "a.fsum, a.fsumsq, a.fcount, a.id",
        run_pks,
        paths,
    )
    return [AttributeRow(*row) for row in conn.execute(sql, params)]


def _of_runs(
    columns: str, run_pks: Sequence[int], paths: Sequence[str] | None
) -> tuple[str, list[str]]:
    """The statement selecting ``columns`` of the ``attributes`` rows (``a``) of ``run_pks``
    (only ``paths``, when given), and its parameters."""
    sql = f"SELECT {columns} FROM attributes a WHERE a.run_id IN {_LIST}"
    params = [_json(run_pks)]
    if paths is not None:
        sql += f" AND a.path IN {_LIST}"
        params.append(_json(paths))
    return sql, params


def table_cells(
    conn: Any, run_pks: Sequence[int], paths: Sequence[str] | None = None
) -> list[tuple[int, str, str, Any, str | None, int | None]]:
    """``(run row id, path, type, num, text, count)`` of the attributes of the runs ``run_pks``
    (only ``paths``, when given): what a project table shows, in no particular order."""
    if not run_pks or (paths is not None and not paths):
        return []
    sql, params = _of_runs("a.run_id, a.path, a.type, a.num, a.text, a.count", run_pks, paths)
    # In (run, path) order SQLite reads through the (run_id, path) key, each run's rows side by
    # side, rather than path by path across the table (2-3x faster for a wide table).
    sql += " ORDER BY a.run_id, a.path"
    return list(conn.execute(sql, params).fetchall())


def sys_attribute_rows(
    conn: Any, run_pks: Sequence[int], paths: Sequence[str]
) -> dict[int, tuple[object, ...]]:
    """Per run row id (of those that exist), the values of the ``sys/`` attributes ``paths``
    (keys of ``SYS_COLUMNS``), in that order; ``None`` where a run has no value.

    Datetimes are epoch milliseconds and bools 0/1, as stored.
    """
    if not paths or not run_pks:
        return {}
    select = ", ".join(SYS_COLUMNS[p].sql for p in paths)
    return {
        int(row[0]): tuple(row[1:])
        for row in conn.execute(
            f"SELECT r.id, {select} FROM {_RUNS_FROM} WHERE r.id IN {_LIST}", (_json(run_pks),)
        )
    }


def present_sys(
    conn: Any,
    project_ids: Sequence[int] | None,
    run_pks: Sequence[int] | None,
    *,
    live_only: bool = True,
) -> set[str]:
    """The ``sys/`` attributes that have a value on at least one of the runs (``run_pks``, else
    every run of the projects: with ``live_only``, only runs that are neither models nor
    trashed). One statement of ``EXISTS``: each column stops at its first hit."""
    if run_pks is not None:
        if not run_pks:
            return set()
        scope, param = f"r.id IN {_LIST}", _json(run_pks)
    elif project_ids:
        live = " AND r.kind = 'run' AND r.trashed = 0" if live_only else ""
        scope, param = f"r.project_id IN {_LIST}{live}", _json(project_ids)
    else:
        return set()
    columns = list(SYS_COLUMNS.values())
    select = ", ".join(
        f"EXISTS (SELECT 1 FROM {_RUNS_FROM} WHERE {scope} AND ({c.sql}) IS NOT NULL)"
        for c in columns
    )
    row = conn.execute(f"SELECT {select}", [param] * len(columns)).fetchone()
    return {c.path for c, flag in zip(columns, row, strict=True) if flag}


def attribute_types(conn: Any, project_id: int, names: Iterable[str]) -> dict[str, set[str]]:
    """Per name, the types it has on any run of the project (series only with committed
    points); names no run has are absent. ``sys/`` attributes are not looked up here."""
    names = list(dict.fromkeys(names))
    if not names:
        return {}
    out: dict[str, set[str]] = {}
    for path, type_ in conn.execute(
        "SELECT DISTINCT a.path, a.type FROM attributes a JOIN runs r ON r.id = a.run_id "
        f"WHERE a.path IN {_LIST} AND r.project_id = ? AND (a.count IS NULL OR a.count > 0)",
        (_json(names), project_id),
    ):
        out.setdefault(str(path), set()).add(str(type_))
    return out


def project_definitions(
    conn: Any, project_id: int, *, with_empty_series: bool = False
) -> set[tuple[str, str]]:
    """Distinct ``(path, type)`` of the ``attributes`` rows of every run of the project (models
    and trashed runs included); series without committed points only ``with_empty_series``."""
    empty = "" if with_empty_series else " AND (a.count IS NULL OR a.count != 0)"
    return {
        (str(path), str(type_))
        for path, type_ in conn.execute(
            "SELECT DISTINCT a.path, a.type FROM attributes a JOIN runs r "
            f"ON r.id = a.run_id WHERE r.project_id = ?{empty}",
            (project_id,),
        )
    }


def definition_streams(
    conn: Any,
    *,
    project_ids: Sequence[int] | None,
    run_pks: Sequence[int] | None,
    exact_names: Sequence[str] | None,
    after: tuple[str, str] | None,
    ordered: bool,
) -> list[Iterable[tuple[str, str]]]:
    """Distinct ``(path, type)`` of the ``attributes`` rows of the runs ``run_pks`` (else of the
    live runs of the projects: neither models nor trashed), with names in ``exact_names`` if
    given, after ``after`` if given; series only with committed points.

    One stream for the whole read; ``ordered`` sorts it by ``(path, type)`` in code-point order
    (as Python sorts ``str``), so that a caller can merge it with others and stop at a page's
    end. Empty when neither runs nor projects are given.
    """
    if run_pks is not None:
        scope, params = f"a.run_id IN {_LIST}", [_json(run_pks)]
    elif project_ids:
        scope = (
            f"a.run_id IN (SELECT id FROM runs WHERE project_id IN {_LIST} "
            "AND kind = 'run' AND trashed = 0)"
        )
        params = [_json(project_ids)]
    else:
        return []
    collate = c_collation(conn)
    names_sql = ""
    if exact_names is not None:
        names_sql = f"a.path IN {_LIST} AND "
        params.insert(0, _json(exact_names))
    keyset = ""
    if after is not None:
        keyset = f" AND (a.path{collate}, a.type{collate}) > (?, ?)"
        params += [after[0], after[1]]
    order = " ORDER BY 1, 2" if ordered else ""
    cursor = conn.execute(
        f"SELECT DISTINCT a.path{collate}, a.type{collate} FROM attributes a WHERE {names_sql}"
        f"{scope} AND (a.count IS NULL OR a.count > 0){keyset}{order}",
        params,
    )
    return [((str(p), str(t)) for p, t in cursor)]
