"""The runs table of the web UI: one page of runs at a time, sorted by any column.

The query service's ``Snapshot.search`` answers whole result sets; a table of 100,000 runs must
not load them all, so this module asks the store for a count and one page
(``despina.store.runs_table``, with the same filter compiler and ``sys/`` columns), then reads
the page's cells through ``Snapshot.table``. Trashed runs are left out unless asked for;
model-registry objects never appear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from despina.query.filters import AttributeFilter
from despina.query.resolve import Selector, restrict_types
from despina.query.service import Container, Snapshot
from despina.store.objects import find_object
from despina.store.runs_table import SORTABLE_TYPES, RunRow, find_runs, runs_page
from despina.store.series_columns import parse_series_column, series_aggregates

__all__ = [
    "DEFAULT_SORT",
    "MAX_PAGE",
    "SORTABLE_TYPES",
    "Cell",
    "RunsPage",
    "RunsRequest",
    "exact_selector",
    "find_containers",
    "find_object_container",
    "read_cells",
    "read_page",
]

MAX_PAGE = 500
"""The most rows one page may ask for."""

DEFAULT_SORT = "sys/creation_time"

ViewKind = Literal["experiment", "run"]


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


def _container(snap: Snapshot, row: RunRow) -> Container:
    return Container(
        row.pk,
        row.label,
        snap.project,
        row.experiment_name,
        row.parent_pk,
        row.fork_step,
        row.creation_ms,
        row.sort_key,
    )


def read_page(snap: Snapshot, request: RunsRequest, columns: Sequence[str]) -> RunsPage:
    """The total and one page of runs for ``request``, with the cells of ``columns``.

    Raises:
        NqlError: the filter does not parse or resolve (with its position).
        InvalidQuery: the sort column cannot be sorted.
    """
    found = runs_page(
        snap,
        kind=request.kind,
        nql=request.nql,
        sort=request.sort,
        direction=request.direction,
        offset=request.offset,
        limit=request.limit,
        trashed=request.trashed,
    )
    containers = [_container(snap, row) for row in found.rows]
    page = RunsPage(
        request,
        found.total,
        found.sort_type,
        containers,
        [row.trashed for row in found.rows],
        [row.run_id for row in found.rows],
    )
    page.cells = read_cells(snap, containers, columns)
    return page


def read_cells(
    snap: Snapshot, containers: list[Container], columns: Sequence[str]
) -> list[dict[str, Cell]]:
    """Per container, the cells of ``columns`` it has (a column of two types: the first).

    A column ``min(path)``, ``max(path)`` or ``mean(path)`` is that aggregate of the float
    series ``path`` (a ``float`` cell), from the aggregates the store keeps.
    """
    cells: list[dict[str, Cell]] = [{} for _ in containers]
    if not containers or not columns:
        return cells
    plain = []
    for name in columns:
        spec = parse_series_column(name)
        if spec is None:
            plain.append(name)
            continue
        values = series_aggregates(snap, [c.pk for c in containers], spec[1], spec[0])
        for row, container in enumerate(containers):
            if container.pk in values:
                cells[row][name] = Cell("float", values[container.pk])
    if not plain:
        return cells
    table = snap.table(containers, exact_selector(plain))
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
    return [_container(snap, row) for row in find_runs(snap, run_ids)]


def find_object_container(snap: Snapshot, object_id: str) -> Container | None:
    """The model or model version with ``sys/id`` ``object_id``, read like a run."""
    row = find_object(snap, object_id)
    return None if row is None else _container(snap, row)
