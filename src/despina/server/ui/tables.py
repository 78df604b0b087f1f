"""The runs table of the web UI: one page of runs at a time, sorted by any column.

The query service's ``Snapshot.search`` answers whole result sets; a table of 100,000 runs must
not load them all, so this module asks the store for a count and one page (``LIMIT``/``OFFSET``)
with the same filter compiler and ``sys/`` columns, then reads the page's cells through
``Snapshot.table``. Trashed runs are left out unless asked for; model-registry objects never
appear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from despina.errors import InvalidQuery
from despina.nql import compile_query
from despina.query.filters import AttributeFilter
from despina.query.resolve import Selector, restrict_types
from despina.query.service import Container, Snapshot
from despina.store.sysattrs import SYS_COLUMNS, SYS_STRING_SETS

__all__ = [
    "DEFAULT_SORT",
    "MAX_PAGE",
    "Cell",
    "RunsPage",
    "RunsRequest",
    "exact_selector",
    "find_containers",
    "read_page",
]

MAX_PAGE = 500
"""The most rows one page may ask for."""

DEFAULT_SORT = "sys/creation_time"

ViewKind = Literal["experiment", "run"]
_NUMERIC = frozenset({"float", "int", "bool", "datetime", "float_series"})
_TEXT = frozenset({"string", "string_series", "string_set"})
SORTABLE_TYPES = _NUMERIC | _TEXT
"""Types a column can be sorted by (files and histograms cannot)."""


@dataclass(frozen=True, slots=True)
class RunsRequest:
    """What one page of the table shows: the view, a filter, the sort and the window."""

    kind: ViewKind = "experiment"
    nql: str = ""
    sort: str = DEFAULT_SORT
    direction: Literal["asc", "desc"] = "desc"
    offset: int = 0
    limit: int = 50
    trashed: bool = False


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: the attribute's type and its value (see ``Column`` of the service)."""

    type: str
    value: Any
    step: float | None = None


@dataclass
class RunsPage:
    """One page of the table: the matching total, and per row its container and cells."""

    request: RunsRequest
    total: int
    sort_type: str | None
    rows: list[Container]
    trashed: list[bool]
    run_ids: list[str]
    cells: list[dict[str, Cell]] = field(default_factory=list)


def exact_selector(names: Sequence[str], types: Sequence[str] | None = None) -> Selector:
    """A selector of exactly ``names`` (of ``types``, default all)."""
    return restrict_types(AttributeFilter(name=list(names)), types)


def _sort_type(snap: Snapshot, path: str) -> str | None:
    """The type a column sorts by: its sys type, else the most common sortable stored type."""
    column = SYS_COLUMNS.get(path)
    if column is not None:
        return column.type
    if path in SYS_STRING_SETS:
        return "string_set"
    rows = snap.conn.execute(
        "SELECT a.type, count(*) AS n FROM attributes a JOIN runs r ON r.id = a.run_id "
        "WHERE a.path = ? AND r.project_id = ? GROUP BY a.type ORDER BY n DESC",
        (path, snap.project_id),
    ).fetchall()
    for type_, _ in rows:
        if type_ in SORTABLE_TYPES:
            return str(type_)
    if rows:
        raise InvalidQuery(
            f"column {path!r} has type {rows[0][0]}, which cannot be sorted; sort by a number, "
            "string, date, tag set or series column"
        )
    return None


def _sort_sql(path: str, type_: str | None) -> tuple[str, list[Any]]:
    column = SYS_COLUMNS.get(path)
    if column is not None:
        return column.sql, []
    if type_ is None:
        return "NULL", []
    value = "a.num" if type_ in _NUMERIC else "a.text"
    return (
        f"(SELECT {value} FROM attributes a WHERE a.run_id = r.id AND a.path = ? AND a.type = ? "
        "AND (a.count IS NULL OR a.count > 0))",
        [path, type_],
    )


def read_page(snap: Snapshot, request: RunsRequest, columns: Sequence[str]) -> RunsPage:
    """The total and one page of runs for ``request``, with the cells of ``columns``.

    Raises:
        NqlError: the filter does not parse or resolve (with its position).
        InvalidQuery: the sort column cannot be sorted.
    """
    where = ["r.project_id = ?", "r.kind = 'run'"]
    params: list[Any] = [snap.project_id]
    if not request.trashed:
        where.append("r.trashed = 0")
    if request.kind == "experiment":
        where.append("r.is_head = 1 AND r.experiment_name IS NOT NULL")
    if request.nql.strip():
        fragment, nql_params = compile_query(request.nql, now_ms=snap.now_ms)
        where.append(f"({fragment})")
        params.extend(nql_params)
    sql_where = " AND ".join(where)
    source = "FROM runs r JOIN projects p ON p.id = r.project_id"
    total = int(
        snap.conn.execute(f"SELECT count(*) {source} WHERE {sql_where}", params).fetchone()[0]
    )
    sort_type = _sort_type(snap, request.sort)
    key, key_params = _sort_sql(request.sort, sort_type)
    order = "DESC" if request.direction == "desc" else "ASC"
    label = "r.experiment_name" if request.kind == "experiment" else "r.run_id"
    sql = (
        f"SELECT r.id, {label}, r.experiment_name, r.parent_id, r.fork_step, r.creation_ms, "
        f"r.trashed, r.run_id, {key} AS k {source} WHERE {sql_where} "
        f"ORDER BY k IS NULL, k {order}, r.creation_ms {order}, r.id {order} LIMIT ? OFFSET ?"
    )
    rows = snap.conn.execute(sql, [*key_params, *params, request.limit, request.offset]).fetchall()
    containers = [
        Container(pk, str(label_), snap.project, exp, parent, fork, created, k)
        for pk, label_, exp, parent, fork, created, _, _, k in rows
    ]
    page = RunsPage(
        request,
        total,
        sort_type,
        containers,
        [bool(row[6]) for row in rows],
        [str(row[7]) for row in rows],
    )
    page.cells = read_cells(snap, containers, columns)
    return page


def read_cells(
    snap: Snapshot, containers: list[Container], columns: Sequence[str]
) -> list[dict[str, Cell]]:
    """Per container, the cells of ``columns`` it has (a column of two types: the first)."""
    cells: list[dict[str, Cell]] = [{} for _ in containers]
    if not containers or not columns:
        return cells
    table = snap.table(containers, exact_selector(columns))
    for column in table.columns:
        for i, (row, value) in enumerate(zip(column.rows.tolist(), column.values, strict=True)):
            if column.path in cells[row]:
                continue
            step = None
            if column.steps is not None and math.isfinite(float(column.steps[i])):
                step = float(column.steps[i])
            cells[row][column.path] = Cell(column.type, _plain(value), step)
    return cells


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def find_containers(snap: Snapshot, run_ids: Sequence[str]) -> list[Container]:
    """The runs with these ``sys/custom_run_id`` values (trashed ones too), in the given order;
    unknown ids are left out."""
    found: dict[str, Container] = {}
    ids = list(dict.fromkeys(run_ids))
    for start in range(0, len(ids), 900):
        batch = ids[start : start + 900]
        marks = ",".join("?" * len(batch))
        for pk, run_id, exp, parent, fork, created in snap.conn.execute(
            "SELECT id, run_id, experiment_name, parent_id, fork_step, creation_ms FROM runs "
            f"WHERE project_id = ? AND kind = 'run' AND run_id IN ({marks})",
            [snap.project_id, *batch],
        ):
            found[run_id] = Container(pk, run_id, snap.project, exp, parent, fork, created)
    return [found[i] for i in ids if i in found]
