"""The compare page's data: runs side by side, one row per attribute path.

Rows are the runs' tags (``sys/tags``, ``sys/group_tags``), their configs (single values) and,
for every float series, its last value and its min and max over finite values (the aggregates
the store keeps per series, read without touching points). Columns are the runs, in the order
asked for. A row ``differs`` when its runs do not all hold the same value (a missing value
differs from any present one); its ``highlight`` marks the cells off the row's most common
value (all of them when no value is the most common alone).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from despina.query.batch import BatchReads
from despina.query.filters import AttributeFilter
from despina.query.resolve import restrict_types
from despina.query.service import Container, QueryService
from despina.server.ui.format import display, json_value
from despina.server.ui.tables import find_containers
from despina.store.sysattrs import SYS_STRING_SETS
from despina.wording import counted

__all__ = ["MAX_COMPARE_RUNS", "compare_data"]

MAX_COMPARE_RUNS = 20
"""Runs shown side by side; past that the first ones are shown, with a message."""

_CONFIG_TYPES = ("float", "int", "string", "bool", "datetime")
_AGGREGATES = ("last", "min", "max")
_NO_VALUE = object()


def _cell(type_: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"value": json_value(type_, value), "text": display(type_, value)}


def _row(
    path: str, kind: str, type_: str, cells: list[dict[str, Any] | None], aggregate: str | None
) -> dict[str, Any]:
    keys = [None if c is None else repr(c["value"]) for c in cells]
    counts = Counter(keys)
    top = counts.most_common(2)
    # the odd cells: those off the row's most common value (every cell on a tie)
    common = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else _NO_VALUE
    return {
        "path": path,
        "kind": kind,
        "type": type_,
        "aggregate": aggregate,
        "label": path if aggregate is None else f"{path} ({aggregate})",
        "cells": cells,
        "differs": len(counts) > 1,
        "highlight": [len(counts) > 1 and k != common for k in keys],
    }


def compare_data(service: QueryService, project: str, run_ids: Sequence[str]) -> dict[str, Any]:
    """Runs ``run_ids`` (``sys/custom_run_id`` values) of ``project`` side by side: the first
    :data:`MAX_COMPARE_RUNS` distinct known ones, unknown ones listed apart."""
    wanted = list(dict.fromkeys(run_ids))
    with service.snapshot(project) as snap:
        found = find_containers(snap, wanted)
        known = {c.label for c in found}
        shown: list[Container] = found[:MAX_COMPARE_RUNS]
        table = snap.table(shown, restrict_types(AttributeFilter(), None))
        # min and max come from the series' stored aggregates (no point is read)
        aggregates = BatchReads(snap.conn).attribute_values(
            [c.pk for c in shown], types={"float_series"}
        )
    position = {c.pk: i for i, c in enumerate(shown)}
    width = len(shown)
    tags: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    lasts: dict[str, list[dict[str, Any] | None]] = {}
    for column in table.columns:
        if column.path in SYS_STRING_SETS:
            kind = "tags"
        elif column.path.startswith("sys/"):
            continue
        elif column.type in _CONFIG_TYPES:
            kind = "config"
        elif column.type == "float_series":
            kind = "metric"
        else:
            continue
        cells: list[dict[str, Any] | None] = [None] * width
        for row, value in zip(column.rows.tolist(), column.values, strict=True):
            value = value.item() if hasattr(value, "item") else value
            if column.type == "string_set":
                value = list(value or [])
            cells[row] = _cell(column.type, value)
        if kind == "metric":
            lasts[column.path] = cells
        else:
            (tags if kind == "tags" else configs).append(
                _row(column.path, kind, column.type, cells, None)
            )
    lows: dict[str, list[dict[str, Any] | None]] = {}
    highs: dict[str, list[dict[str, Any] | None]] = {}
    for pk, values in aggregates.items():
        at = position[pk]
        for attr in values:
            if attr.type != "float_series":
                continue
            lows.setdefault(attr.path, [None] * width)[at] = _cell("float", attr.fmin)
            highs.setdefault(attr.path, [None] * width)[at] = _cell("float", attr.fmax)
    metrics = []
    for path in sorted(set(lasts) | set(lows)):
        for aggregate, source in zip(_AGGREGATES, (lasts, lows, highs), strict=True):
            row_cells = source.get(path, [None] * width)
            metrics.append(_row(path, "metric", "float_series", row_cells, aggregate))
    rows = (
        sorted(tags, key=lambda r: r["path"]) + sorted(configs, key=lambda r: r["path"]) + metrics
    )
    message = None
    if len(found) > MAX_COMPARE_RUNS:
        message = (
            f"{counted(len(found), 'run')} selected: comparing the first {MAX_COMPARE_RUNS}. "
            f"Select at most {MAX_COMPARE_RUNS} runs to compare them all."
        )
    return {
        "project": project,
        "runs": [
            {
                "run_id": c.label,
                "experiment": c.experiment_name,
                "url": f"/p/{project}/run?id={quote(c.label, safe='')}",
            }
            for c in shown
        ],
        "unknown_runs": [r for r in wanted if r not in known],
        "selected": len(found),
        "limit": MAX_COMPARE_RUNS,
        "truncated": len(found) > MAX_COMPARE_RUNS,
        "message": message,
        "rows": rows,
        "differing": sum(1 for r in rows if r["differs"]),
    }
