"""DataFrames of the query API (spec/query-api.md §9), built with NumPy.

Each builder produces exactly the frame ``neptune_query.internal.output_format`` builds from
the same data (index, columns, names, dtypes, order) without ``pivot_table``: points are placed
by computing each one's row (label, step) and column, then scattered into preallocated arrays.
Differences between pandas 2 and 3 (§14) follow from pandas' own inference, except the
datetime unit, which is chosen explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from despina.query.attrs import sorted_unique
from despina.query.buckets import BucketSet
from despina.query.exceptions import ConflictingAttributeTypes
from despina.query.service import Column, TableData
from despina.query.types import File, Histogram

__all__ = [
    "DATETIME_UNIT",
    "PANDAS_MAJOR",
    "LongPoints",
    "buckets_frame",
    "empty_table",
    "files_frame",
    "metrics_frame",
    "series_cell",
    "series_frame",
    "table_frame",
]

PANDAS_MAJOR = int(pd.__version__.split(".", 1)[0])
DATETIME_UNIT = "us" if PANDAS_MAJOR >= 3 else "ns"
"""Unit of datetime columns: microseconds under pandas 3, nanoseconds under pandas 2 (§14)."""
STR_DTYPE: Any = str if PANDAS_MAJOR >= 3 else object
"""Dtype of label and name indexes: ``str`` under pandas 3, ``object`` under pandas 2."""

I64 = npt.NDArray[np.int64]


def to_datetimes(ms: npt.NDArray[Any]) -> pd.DatetimeIndex:
    """Epoch milliseconds (float with NaN for missing, or int) as UTC datetimes."""
    stamps = pd.to_datetime(ms, unit="ms", origin="unix", utc=True)
    return stamps.as_unit(DATETIME_UNIT)  # type: ignore[arg-type]


# -- tables (§9.1) ----------------------------------------------------------------------------


def empty_table(label: str, global_: bool = False) -> pd.DataFrame:
    """The frame of a table without rows."""
    index = (
        pd.MultiIndex.from_tuples([], names=["project", label])
        if global_
        else pd.Index([], name=label)
    )
    return pd.DataFrame(index=index, columns=pd.Index([], name="attribute"))


def _file(
    value: dict[str, Any], project: str, label: str, kind: str, path: str, step: float | None
) -> File:
    return File(
        project_identifier=project,
        experiment_name=label if kind == "experiment" else None,
        run_id=label if kind == "run" else None,
        attribute_path=path,
        step=step,
        path=value["path"],
        size_bytes=value["size_bytes"],
        mime_type=value["mime_type"],
    )


def _histogram(value: dict[str, Any]) -> Histogram:
    return Histogram(type=value["type"], edges=value["edges"], values=value["values"])


def _table_column(column: Column, n: int, data: TableData, kind: str) -> Any:
    """The cells of one column over ``n`` rows, typed as pandas infers them from dicts."""
    rows, values, type_ = column.rows, column.values, column.type
    full = len(rows) == n
    if type_ in ("float", "float_series"):
        out = np.full(n, np.nan)
        out[rows] = values
        return out
    if type_ == "int":
        if full:
            out_i = np.empty(n, np.int64)
            out_i[rows] = values
            return out_i
        out = np.full(n, np.nan)
        out[rows] = values
        return out
    if type_ == "datetime":
        ms = np.full(n, np.nan)
        ms[rows] = values
        return to_datetimes(ms)
    if type_ == "bool" and full:
        out_b = np.empty(n, bool)
        out_b[rows] = values
        return out_b
    cells = np.full(n, np.nan, dtype=object)
    if type_ == "bool":
        cells[rows] = [bool(v) for v in values]
    elif type_ in ("string", "string_series"):
        cells[rows] = values
        return pd.Series(cells).array if PANDAS_MAJOR >= 3 else cells
    elif type_ == "string_set":
        cells[rows] = [set(v) for v in values]
    elif type_ in ("file", "file_series"):
        steps = column.steps
        cells[rows] = [
            _file(
                v,
                data.containers[r].project,
                data.containers[r].label,
                kind,
                column.path,
                None if steps is None else float(steps[i]),
            )
            for i, (r, v) in enumerate(zip(rows.tolist(), values, strict=True))
        ]
    elif type_ == "histogram_series":
        cells[rows] = [_histogram(v) for v in values]
    return cells


def table_frame(
    data: TableData,
    *,
    kind: str,
    type_suffix: bool,
    global_: bool = False,
) -> pd.DataFrame:
    """A runs/experiments table: one row per container, one column per (path, type)."""
    label = kind
    if not data.containers:
        return empty_table(label, global_)
    n = len(data.containers)
    names = [f"{c.path}:{c.type}" if type_suffix else c.path for c in data.columns]
    if not type_suffix:
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        clashes = sorted(name for name, count in seen.items() if count > 1)
        if clashes:
            raise ConflictingAttributeTypes(clashes)
    labels = [c.label for c in data.containers]
    if global_:
        index: pd.Index = pd.MultiIndex.from_arrays(
            [[c.project for c in data.containers], labels], names=["project", label]
        )
    else:
        index = pd.Index(labels, name=label)
    columns = {
        name: _table_column(column, n, data, kind)
        for name, column in zip(names, data.columns, strict=True)
    }
    ordered = sorted(columns)
    if not ordered:
        frame = pd.DataFrame(index=index)
        frame.columns = pd.Index([], name="attribute", dtype=STR_DTYPE)
        return frame
    frame = pd.DataFrame({name: columns[name] for name in ordered}, index=index)
    frame.columns = pd.Index(ordered, name="attribute")
    return frame


# -- metrics and series (§9.2, §9.3) ----------------------------------------------------------


@dataclass(frozen=True)
class LongPoints:
    """Points of several series. Series ``i`` is labelled ``labels[label_code[i]]``, goes to the
    column ``names[name_code[i]]`` and owns entries ``offsets[i]:offsets[i + 1]`` of ``steps``
    and of each array in ``values``, sorted by step. ``values`` maps sub-column names
    (``value``, ``absolute_time`` in epoch ms, ``is_preview``, ``preview_completion``) to
    arrays."""

    label_code: I64
    labels: Sequence[str]
    name_code: I64
    names: Sequence[str]
    offsets: I64
    steps: npt.NDArray[np.float64]
    values: dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class _Grid:
    row_label: I64  # per row: index into ``labels``
    row_step: npt.NDArray[np.float64]
    point_row: I64  # per point, after reordering by ``order``
    point_col: I64
    order: I64  # point permutation
    labels: list[str]
    names: list[str]


def _ranks(codes: I64, names: Sequence[str]) -> tuple[I64, list[str]]:
    """Codes renumbered by the sorted order of the names they use, and those names."""
    used = np.zeros(len(names), dtype=bool)
    used[codes] = True
    ordered = sorted(np.flatnonzero(used).tolist(), key=lambda c: names[c])
    rank = np.zeros(len(names), np.int64)
    rank[np.array(ordered, np.int64)] = np.arange(len(ordered))
    return rank[codes], [names[c] for c in ordered]


def _grid(points: LongPoints) -> _Grid:
    """Rows (label, step) sorted, and where every point lands."""
    sizes = np.diff(points.offsets)
    keep = np.flatnonzero(sizes > 0)
    s_label, labels = _ranks(points.label_code[keep], points.labels)
    s_col, names = _ranks(points.name_code[keep], points.names)
    s_order = np.argsort(s_label, kind="stable")
    series = keep[s_order]
    s_label, s_col = s_label[s_order], s_col[s_order]
    s_sizes = sizes[series]
    starts = points.offsets[series]
    total = int(s_sizes.sum())
    s_offsets = np.zeros(len(series) + 1, np.int64)
    np.cumsum(s_sizes, out=s_offsets[1:])
    order = np.repeat(starts - s_offsets[:-1], s_sizes) + np.arange(total, dtype=np.int64)
    steps = points.steps[order]
    point_col = np.repeat(s_col, s_sizes)
    point_row = np.empty(total, np.int64)
    row_steps: list[npt.NDArray[np.float64]] = []
    row_label: list[I64] = []
    label_bounds = np.searchsorted(s_label, np.arange(len(labels) + 1))
    row_base = 0
    for li in range(len(labels)):
        s_lo, s_hi = int(label_bounds[li]), int(label_bounds[li + 1])
        p_lo, p_hi = int(s_offsets[s_lo]), int(s_offsets[s_hi])
        block = steps[p_lo:p_hi]
        lengths = s_sizes[s_lo:s_hi]
        length = int(lengths[0])
        shared = bool((lengths == length).all())
        if shared and s_hi - s_lo > 1:
            grid = block.reshape(s_hi - s_lo, length)
            shared = bool((grid == grid[0]).all())
        if shared:
            unique = block[:length]
            point_row[p_lo:p_hi] = row_base + np.tile(np.arange(length), s_hi - s_lo)
        else:
            unique = sorted_unique(block)
            point_row[p_lo:p_hi] = row_base + np.searchsorted(unique, block)
        row_steps.append(unique)
        row_label.append(np.full(len(unique), li, np.int64))
        row_base += len(unique)
    return _Grid(
        np.concatenate(row_label) if row_label else np.empty(0, np.int64),
        np.concatenate(row_steps) if row_steps else np.empty(0),
        point_row,
        point_col,
        order,
        labels,
        names,
    )


def _row_index(grid: _Grid, label: str) -> pd.MultiIndex:
    steps = grid.row_step
    if len(steps) and bool((np.diff(steps) > 0).all()):
        level, codes = steps, np.arange(len(steps))
    else:
        level = sorted_unique(steps)
        codes = np.searchsorted(level, steps)
    levels: list[Any] = [pd.Index(grid.labels, dtype=STR_DTYPE), pd.Index(level)]
    code_lists: list[Any] = [grid.row_label, codes]
    return pd.MultiIndex(
        levels=levels,
        codes=code_lists,
        names=[label, "step"],
        verify_integrity=False,
    )


def _empty_long(label: str, extras: Sequence[str]) -> pd.DataFrame:
    index = pd.MultiIndex.from_arrays(
        [pd.Index([], dtype=STR_DTYPE), pd.Index([], dtype=float)], names=[label, "step"]
    )
    if extras:
        columns: pd.Index = pd.MultiIndex(
            levels=[pd.Index([], dtype=STR_DTYPE), pd.Index(["value", *extras], dtype=STR_DTYPE)],
            codes=[[], []],
        )
    else:
        columns = pd.Index([], dtype=STR_DTYPE)
    return pd.DataFrame(index=index, columns=columns)


def _scatter(
    grid: _Grid,
    values: npt.NDArray[Any],
    fill: Any,
    dtype: Any,
) -> npt.NDArray[Any]:
    out = np.full((len(grid.names), len(grid.row_step)), fill, dtype=dtype)
    out[grid.point_col, grid.point_row] = values[grid.order]
    return out


def metrics_frame(points: LongPoints, *, label: str, extras: Sequence[str]) -> pd.DataFrame:
    """The ``fetch_metrics`` frame (§8.4); ``extras`` are the sub-columns after ``value``
    (``absolute_time``, ``is_preview``, ``preview_completion``), empty for a flat frame."""
    grid = _grid(points)
    if not len(grid.row_step):
        return _empty_long(label, extras)
    index = _row_index(grid, label)
    value = _scatter(grid, points.values["value"], np.nan, np.float64)
    if not extras:
        frame = pd.DataFrame(value.T, index=index, columns=pd.Index(grid.names))
        return frame
    subs: dict[str, npt.NDArray[Any]] = {}
    if "absolute_time" in extras:
        subs["absolute_time"] = _scatter(
            grid, points.values["absolute_time"].astype(np.float64), np.nan, float
        )
    if "is_preview" in extras:
        covered = np.zeros((len(grid.names), len(grid.row_step)), dtype=bool)
        covered[grid.point_col, grid.point_row] = True
        flags = _scatter(grid, points.values["is_preview"], False, bool)
        subs["preview_completion"] = _scatter(
            grid, points.values["preview_completion"], np.nan, np.float64
        )
    data: dict[int, Any] = {}
    keys: list[tuple[str, str]] = []
    for c, name in enumerate(grid.names):
        for sub in ["value", *extras]:
            if sub == "value":
                cells: Any = value[c]
            elif sub == "absolute_time":
                cells = to_datetimes(subs["absolute_time"][c])
            elif sub == "is_preview":
                if covered[c].all():
                    cells = flags[c]
                else:
                    cells = np.full(len(grid.row_step), np.nan, dtype=object)
                    cells[covered[c]] = flags[c][covered[c]]
            else:
                cells = subs["preview_completion"][c]
            data[len(keys)] = cells
            keys.append((name, sub))
    frame = pd.DataFrame(data, index=index)
    frame.columns = pd.MultiIndex.from_tuples(keys)
    return frame


def series_frame(points: LongPoints, *, label: str, include_time: bool) -> pd.DataFrame:
    """The ``fetch_series`` frame (§8.5): object cells, ``str`` columns when every value of
    the frame is a string (pandas 3 inference)."""
    grid = _grid(points)
    extras = ["absolute_time"] if include_time else []
    if not len(grid.row_step):
        return _empty_long(label, extras)
    index = _row_index(grid, label)
    cells = _scatter(grid, points.values["value"], np.nan, object)
    all_strings = all(isinstance(v, str) for v in points.values["value"])

    def column(c: int) -> Any:
        if all_strings:
            return pd.Series(cells[c]).array
        return pd.Series(cells[c], index=index, dtype=object, copy=False)

    if not include_time:
        frame = pd.DataFrame({i: column(i) for i in range(len(grid.names))}, index=index)
        frame.columns = pd.Index(grid.names)
        return frame
    stamps = _scatter(grid, points.values["absolute_time"].astype(np.float64), np.nan, float)
    data: dict[int, Any] = {}
    keys: list[tuple[str, str]] = []
    for c, name in enumerate(grid.names):
        data[len(keys)] = column(c)
        keys.append((name, "value"))
        data[len(keys)] = to_datetimes(stamps[c])
        keys.append((name, "absolute_time"))
    frame = pd.DataFrame(data, index=index)
    frame.columns = pd.MultiIndex.from_tuples(keys)
    return frame


def series_cell(
    type_: str, text: str, *, project: str, label: str, kind: str, path: str, step: float
) -> Any:
    """A stored string, histogram or file series value as its frame cell."""
    if type_ == "string_series":
        return text
    value = json.loads(text)
    if type_ == "histogram_series":
        return _histogram(value)
    return _file(value, project, label, kind, path, step)


# -- files (§9.4) -----------------------------------------------------------------------------


def files_frame(results: Sequence[tuple[File, str | None]], *, label: str) -> pd.DataFrame:
    """The ``download_files`` frame: (label, step) rows, attribute columns, path cells."""
    if not results:
        return pd.DataFrame(
            index=pd.MultiIndex.from_tuples([], names=[label, "step"]),
            columns=pd.Index([], name="attribute"),
        )
    rows = [
        {label: f.container_identifier, "attribute": f.attribute_path, "step": f.step, "path": p}
        for f, p in results
    ]
    frame = pd.DataFrame(rows)
    frame = frame.pivot(index=[label, "step"], columns="attribute", values="path")
    frame = frame.sort_index()
    return frame[sorted(frame.columns)]


# -- buckets (§13.2) --------------------------------------------------------------------------


def buckets_frame(
    buckets: BucketSet,
    labels: Sequence[str],
    names: Sequence[str],
    *,
    label: str,
    include_min_max: bool = False,
) -> pd.DataFrame:
    """The ``fetch_metric_buckets`` frame: interval rows, (label, metric, x|y) columns.

    The first bucket of each series shows its first point, the others their last point; the
    open first row is then closed on both sides (merged with the second row when adjacent).
    With ``include_min_max`` each series also gets ``min`` and ``max`` sub-columns.
    """
    subs = ["x", "y", "min", "max"] if include_min_max else ["x", "y"]
    names_3 = [label, "metric", "bucket"]
    if not len(labels):
        frame = pd.DataFrame(index=pd.Index([], dtype=object))
        frame.columns = pd.MultiIndex.from_product([subs, [], []]).reorder_levels([1, 2, 0])
        frame.columns.names = names_3
        return frame
    order = sorted(range(len(labels)), key=lambda i: (labels[i], names[i]))
    from_table, to_table = buckets.edges
    used = np.zeros(len(from_table), dtype=bool)
    used[buckets.index] = True
    present = np.flatnonzero(used)
    row_of = np.cumsum(used) - 1
    n_rows, width = len(present), len(subs)
    matrix = np.full((n_rows, len(order) * width), np.nan)
    for slot, s in enumerate(order):
        lo, hi = int(buckets.offsets[s]), int(buckets.offsets[s + 1])
        if lo == hi:
            continue
        rows = row_of[buckets.index[lo:hi]]
        base = slot * width
        matrix[rows, base] = buckets.last_x[lo:hi]
        matrix[rows, base + 1] = buckets.last_y[lo:hi]
        matrix[rows[0], base] = buckets.first_x[lo]
        matrix[rows[0], base + 1] = buckets.first_y[lo]
        if include_min_max:
            matrix[rows, base + 2] = buckets.y_min[lo:hi]
            matrix[rows, base + 3] = buckets.y_max[lo:hi]
    keep = ~np.isnan(matrix).all(axis=1)
    matrix = matrix[keep]
    intervals = [
        pd.Interval(float(from_table[b]), float(to_table[b]), closed="right")
        for b in present[keep].tolist()
    ]
    columns = pd.MultiIndex.from_tuples(
        [(labels[s], names[s], sub) for s in order for sub in subs], names=names_3
    )
    return _collapse(matrix, intervals, columns, include_min_max)


def _collapse(
    matrix: npt.NDArray[np.float64],
    intervals: list[pd.Interval],
    columns: pd.MultiIndex,
    include_min_max: bool,
) -> pd.DataFrame:
    """Close the open first bucket (§13.2 step 4), as the reference does."""
    if len(intervals) == 0:
        return pd.DataFrame(matrix, index=pd.Index([], dtype=object), columns=columns)
    if len(intervals) == 1:
        only = intervals[0]
        finite_left, finite_right = np.isfinite(only.left), np.isfinite(only.right)
        if finite_right and not finite_left:
            intervals = [pd.Interval(only.right, only.right, closed="both")]
        elif finite_left and not finite_right:
            intervals = [pd.Interval(only.left, only.left, closed="both")]
        return pd.DataFrame(matrix, index=pd.Index(intervals, dtype=object), columns=columns)
    first, second = intervals[0], intervals[1]
    if first.right >= second.left - second.length * 0.5:
        merged = np.where(np.isnan(matrix[0]), matrix[1], matrix[0])
        if include_min_max:
            pair = matrix[0:2].reshape(2, -1, 4)
            merged = merged.reshape(-1, 4)
            merged[:, 2] = np.fmin(pair[0, :, 2], pair[1, :, 2])
            merged[:, 3] = np.fmax(pair[0, :, 3], pair[1, :, 3])
            merged = merged.reshape(-1)
        interval = pd.Interval(first.right, second.right, closed="both")
        rest = intervals[2:]
        matrix = np.vstack([merged[None, :], matrix[2:]])
        index = pd.Index([interval]) if not rest else pd.Index([interval, *rest], dtype=object)
    else:
        interval = pd.Interval(first.right, first.right + second.length, closed="both")
        index = pd.Index([interval, *intervals[1:]], dtype=object)
    return pd.DataFrame(matrix, index=index, columns=columns)
