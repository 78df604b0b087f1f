"""Run search and run lookups for the query service and ``despina.init_project``.

Every function takes the connection of the caller's read transaction (``Store.read()``). A
``where`` argument is a compiled NQL filter (``despina.nql.compile_query``: SQL over the
aliases ``r`` for runs and ``p`` for projects, and its parameters). Sorting keys are ``sys/``
columns (:data:`despina.store.sysattrs.SYS_COLUMNS`) or an attribute's value; runs without the
key come last in both directions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from despina.store.schema import ATTRIBUTE_TYPES
from despina.store.sysattrs import SYS_COLUMNS

__all__ = [
    "ContainerRow",
    "RunKeyRow",
    "blob_entry",
    "object_pks",
    "runs_by_keys",
    "runs_by_pks",
    "search_containers",
    "search_run_page",
]

Where = tuple[str, Sequence[Any]]
"""A compiled NQL filter: SQL over ``r``/``p`` and its parameters."""

_RUNS_FROM = "runs r JOIN projects p ON p.id = r.project_id"
_LIST = "(SELECT value FROM json_each(?))"
_NUMERIC = frozenset({"float", "int", "bool", "datetime", "float_series"})


def _json(values: Sequence[Any]) -> str:
    return json.dumps(list(values))


def _types_sql(types: Sequence[str]) -> str:
    for name in types:
        if name not in ATTRIBUTE_TYPES:  # inlined: only our own fixed names may pass
            raise ValueError(f"not an attribute type: {name!r}")
    return ", ".join(f"'{name}'" for name in types)


class RunKeyRow(NamedTuple):
    """A run as the retrieval endpoints name it: row id, ``sys/custom_run_id``, ``sys/id``,
    uuid, experiment name (None: none), project id and short number."""

    pk: int
    run_id: str
    sys_id: str
    uuid: str
    experiment_name: str | None
    project_id: int
    short_no: int


_KEY_COLUMNS = (
    f"r.id, r.run_id, {SYS_COLUMNS['sys/id'].sql}, r.uuid, r.experiment_name, r.project_id, "
    "r.short_no"
)


def runs_by_keys(
    conn: Any, project_id: int, key: Literal["short_no", "run_id"], values: Sequence[int | str]
) -> list[RunKeyRow]:
    """The runs (not models) of the project whose ``short_no`` (the number of ``sys/id``) or
    ``run_id`` (``sys/custom_run_id``) is among ``values``; unknown values are left out."""
    if key not in ("short_no", "run_id"):
        raise ValueError(f"runs are looked up by short_no or run_id, not {key!r}")
    if not values:
        return []
    return [
        RunKeyRow(*row)
        for row in conn.execute(
            f"SELECT {_KEY_COLUMNS} FROM {_RUNS_FROM} WHERE r.project_id = ? "
            f"AND r.kind = 'run' AND r.{key} IN {_LIST}",
            (project_id, _json(values)),
        )
    ]


def runs_by_pks(conn: Any, pks: Sequence[int]) -> list[RunKeyRow]:
    """The runs (or models) with these row ids; unknown ids are left out."""
    if not pks:
        return []
    return [
        RunKeyRow(*row)
        for row in conn.execute(
            f"SELECT {_KEY_COLUMNS} FROM {_RUNS_FROM} WHERE r.id IN {_LIST}", (_json(pks),)
        )
    ]


# -- search: the batch API (many projects, one page) -------------------------------------------

_SERIES_AGGREGATES = {
    "last": "a.num",
    "min": "a.fmin",
    "max": "a.fmax",
    "average": "(a.fsum / NULLIF(a.fcount, 0))",
    "variance": (
        "max(0.0, a.fsumsq / NULLIF(a.fcount, 0) "
        "- (a.fsum / NULLIF(a.fcount, 0)) * (a.fsum / NULLIF(a.fcount, 0)))"
    ),
}


def _page_sort(name: str, wire_type: str | None, aggregation: str) -> tuple[str, str, list[Any]]:
    """(join, key expression, join parameters) ordering runs by a wire-typed attribute."""
    column = SYS_COLUMNS.get(name)
    if column is not None:
        return "", column.sql, []
    key = "a.num"
    if wire_type in ("float", "int"):
        types: tuple[str, ...] = ("float", "int")
    elif wire_type in ("bool", "datetime"):
        types = (wire_type,)
    elif wire_type == "floatSeries":
        types = ("float_series",)
        key = _SERIES_AGGREGATES.get(aggregation, "a.num")
    elif wire_type == "stringSeries":
        types, key = ("string_series",), "a.text"
    elif wire_type == "stringSet":
        types, key = ("string_set",), "a.text"
    elif wire_type in (None, "string"):
        types, key = ("string",), "a.text"
    else:
        return "", "NULL", []
    join = (
        "LEFT JOIN attributes a ON a.run_id = r.id AND a.path = ? "
        f"AND a.type IN ({_types_sql(types)})"
    )
    return join, key, [name]


def search_run_page(
    conn: Any,
    project_ids: Sequence[int],
    where: Where | None,
    *,
    leaders_only: bool,
    sort_name: str,
    sort_type: str | None,
    aggregation: str,
    descending: bool,
    offset: int,
    limit: int,
) -> tuple[int, list[int]]:
    """``(matching count, run row ids of the page)`` among the live runs of the projects
    (neither models nor trashed; only experiment heads with ``leaders_only``).

    The page is ordered by the attribute ``sort_name`` of wire type ``sort_type``
    (``float``/``int``/``bool``/``datetime``/``string``/``stringSet``/``stringSeries``/
    ``floatSeries``, whose ``aggregation`` is ``last``/``min``/``max``/``average``/``variance``)
    or by the ``sys/`` column of that name; runs without it come last in both directions, ties
    by creation order then row id.
    """
    if not project_ids:
        return 0, []
    clauses = [f"r.project_id IN {_LIST}", "r.kind = 'run'", "r.trashed = 0"]
    params: list[Any] = [_json(project_ids)]
    if leaders_only:
        clauses.append("r.is_head = 1")
    if where is not None:
        clauses.append(f"({where[0]})")
        params.extend(where[1])
    condition = " AND ".join(clauses)
    (total,) = conn.execute(
        f"SELECT count(*) FROM {_RUNS_FROM} WHERE {condition}", params
    ).fetchone()
    total = int(total)
    if total == 0 or limit <= 0 or offset >= total:
        return total, []
    join, key, join_params = _page_sort(sort_name, sort_type, aggregation)
    direction = "DESC" if descending else "ASC"
    rows = conn.execute(
        f"SELECT r.id FROM {_RUNS_FROM} {join} WHERE {condition} "
        f"ORDER BY ({key}) IS NULL, ({key}) {direction}, r.creation_ms, r.id LIMIT ? OFFSET ?",
        [*join_params, *params, limit, offset],
    )
    return total, [int(row[0]) for row in rows]


# -- search: one project, every match ----------------------------------------------------------


class ContainerRow(NamedTuple):
    """A matched run: row id, label (experiment name or ``sys/custom_run_id``), experiment name,
    parent row id and fork step (micro-steps; None on roots), creation time (epoch ms) and the
    value it was sorted by (None: absent)."""

    pk: int
    label: str
    experiment_name: str | None
    parent_pk: int | None
    fork_step: int | None
    creation_ms: int
    sort_key: Any


def search_containers(
    conn: Any,
    project_id: int,
    *,
    experiments: bool,
    where: Where | None,
    sort_name: str,
    sort_type: str | None,
    descending: bool,
    limit: int | None = None,
) -> list[ContainerRow]:
    """The project's live runs (neither models nor trashed) matching ``where``: experiment
    heads labelled by experiment name (``experiments``), else every run labelled by
    ``sys/custom_run_id``.

    Sorted by the ``sys/`` column ``sort_name`` or the value of the attribute ``sort_name`` of
    type ``sort_type`` (``None``: string; series by their last value, only with committed
    points); runs without it come last in both directions, ties in creation order then row id.
    """
    clauses = ["r.project_id = ?", "r.kind = 'run'", "r.trashed = 0"]
    params: list[Any] = [project_id]
    if experiments:
        clauses.append("r.is_head = 1 AND r.experiment_name IS NOT NULL")
    if where is not None:
        clauses.append(f"({where[0]})")
        params.extend(where[1])
    sys_column = SYS_COLUMNS.get(sort_name)
    key_params: list[Any] = []
    if sys_column is not None:
        key = sys_column.sql
    else:
        type_ = sort_type or "string"
        column = "a.num" if type_ in _NUMERIC else "a.text"
        key = (
            f"(SELECT {column} FROM attributes a WHERE a.run_id = r.id AND a.path = ? "
            f"AND a.type = {_types_sql([type_])} AND (a.count IS NULL OR a.count > 0))"
        )
        key_params = [sort_name]
    order = "DESC" if descending else "ASC"
    label = "r.experiment_name" if experiments else "r.run_id"
    # a subquery: PostgreSQL orders by an output column only when it is named alone
    sql = (
        "SELECT * FROM (SELECT r.id AS id, "
        f"{label}, r.experiment_name, r.parent_id, r.fork_step, r.creation_ms AS creation_ms, "
        f"{key} AS k FROM {_RUNS_FROM} WHERE {' AND '.join(clauses)}) AS found "
        f"ORDER BY k IS NULL, k {order}, creation_ms, id"
    )
    all_params = [*key_params, *params]
    if limit is not None:
        sql += " LIMIT ?"
        all_params.append(limit)
    return [ContainerRow(*row) for row in conn.execute(sql, all_params)]


# -- despina.init_project ----------------------------------------------------------------------


def object_pks(
    conn: Any,
    project_id: int,
    *,
    kind: Literal["run", "model", "model_version"],
    trashed: bool | None,
    model_id: str | None,
    where: Where | None,
    sort_by: str,
    ascending: bool,
    limit: int | None,
) -> list[int]:
    """Row ids of the project's objects of ``kind`` matching ``where``, in order.

    ``trashed``: only trashed objects (``True``), only others (``False``) or both (``None``);
    ``model_id``: only versions of that model (its ``sys/id``). Sorted by the ``sys/`` column
    ``sort_by`` or by the value of the attribute ``sort_by`` (numbers before text ascending,
    after it descending; objects without it last), ties by row id in the same direction.
    """
    clauses = ["r.project_id = ?", "r.kind = ?"]
    params: list[Any] = [project_id, kind]
    if trashed is not None:
        clauses.append("r.trashed = ?")
        params.append(1 if trashed else 0)
    if model_id is not None:
        clauses.append(
            "r.model_pk = (SELECT m.id FROM runs m WHERE m.object_id = ? "
            "AND m.project_id = r.project_id AND m.kind = 'model')"
        )
        params.append(model_id)
    if where is not None:
        clauses.append(f"({where[0]})")
        params.extend(where[1])
    direction = "ASC" if ascending else "DESC"
    if sort_by in SYS_COLUMNS:
        order = f"{SYS_COLUMNS[sort_by].sql} {direction}, r.id {direction}"
        order_params: list[Any] = []
    else:
        # numbers and text apart: PostgreSQL cannot compare the two (SQLite puts numbers first)
        num = "(SELECT a.num FROM attributes a WHERE a.run_id = r.id AND a.path = ?)"
        text = "(SELECT a.text FROM attributes a WHERE a.run_id = r.id AND a.path = ?)"
        order = (
            f"{num} IS NULL AND {text} IS NULL, {num} IS NULL {direction}, {num} {direction}, "
            f"{text} {direction}, r.id {direction}"
        )
        order_params = [sort_by] * 5
    sql = f"SELECT r.id FROM {_RUNS_FROM} WHERE {' AND '.join(clauses)} ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT ?"
        order_params.append(int(limit))
    return [int(pk) for (pk,) in conn.execute(sql, [*params, *order_params])]


def blob_entry(conn: Any, project_id: int, storage_key: str) -> tuple[str, int] | None:
    """``(sha256, size in bytes)`` of the file stored under ``storage_key`` in the project;
    None when there is none."""
    row = conn.execute(
        "SELECT sha256, size FROM blobs WHERE project_id = ? AND path = ?",
        (project_id, storage_key),
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))
