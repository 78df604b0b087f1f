"""Turning the rows of one exported run into an :class:`~despina.store.imports.ImportedRun`
(exporter-format.md §7.5, §7.6).

Float-series points are handled as whole numpy columns: the steps are read straight out of the
``decimal128`` buffer, grouped by path with one stable sort (skipped when the rows already come
grouped, as the exporter writes them), and cut into per-series slices. No Python code runs per
point; string, histogram and file points become Python strings because that is how they are
stored.
"""

from __future__ import annotations

import json
import math
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from despina.client.files import storage_key
from despina.importer.columns import decimal_micro, dictionary_codes, fixed_width, validity
from despina.importer.reader import row_value
from despina.importer.report import RunReport
from despina.store.batch import Assign
from despina.store.blobs import BlobStore
from despina.store.imports import RUN_COLUMNS, FloatBlock, ImportedRun, PointSeries
from despina.store.writer import MAX_STEP_MICRO

__all__ = ["CONSUMED_SYS", "RunPlan", "load_run"]

Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]

SINGLE_TYPES = ("float", "int", "string", "bool", "datetime", "string_set")
POINT_TYPES = ("string_series", "histogram_series", "file_series")
FILE_TYPES = ("file", "file_set", "artifact")
KNOWN_TYPES = ("float_series", *POINT_TYPES, *SINGLE_TYPES, *FILE_TYPES)
"""Export types in the order that wins when one path has several types."""

CONSUMED_SYS = frozenset(
    {"sys/custom_run_id", "sys/id", "sys/name", "sys/creation_time", "sys/forking/depth"}
)
"""``sys/`` values despina computes itself from what it is given (with ``sys/forking/*`` and
``sys/experiment/*``)."""

TAG_PATHS = frozenset({"sys/tags", "sys/group_tags"})
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """How one run is created: decided from its header before its data is read."""

    project: str
    run_id: str
    creation_ms: int
    experiment_name: str | None
    marked_heads: frozenset[str]
    short_no: int | None
    fork_run_id: str | None
    fork_step: int | None
    recorded_fork: tuple[str, float | None] | None
    files_root: Path | None
    blobs: BlobStore | None
    """Where file contents are copied (the store's blob store); None (dry run): files are
    only checked."""


@dataclass(frozen=True, slots=True)
class _Rows:
    """Rows of the run's table: ``start:stop`` when ``index`` is None (the common case, read
    as zero-copy slices), else ``index`` in any order."""

    start: int = 0
    stop: int = 0
    index: Int64s | None = None

    def __len__(self) -> int:
        return self.stop - self.start if self.index is None else len(self.index)

    def take(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """``values`` at these rows (a view for a range)."""
        return values[self.start : self.stop] if self.index is None else values[self.index]

    def array(self) -> Int64s:
        if self.index is None:
            return np.arange(self.start, self.stop, dtype=np.int64)
        return self.index

    def select(self, which: npt.NDArray[Any]) -> _Rows:
        """The rows at a boolean mask or an order of positions."""
        return _Rows(index=self.array()[which])


class _Run:
    """State of one load: the table, its per-row codes and the report."""

    def __init__(self, table: pa.Table, plan: RunPlan, report: RunReport) -> None:
        self.table = table
        self.plan = plan
        self.report = report
        self.paths: dict[str, int] = {}
        self.types: dict[str, int] = {}
        self.path_code = dictionary_codes(table.column("attribute_path"), self.paths)
        self.type_code = dictionary_codes(table.column("attribute_type"), self.types)
        self.path_names = _names(self.paths)
        self.type_names = _names(self.types)
        self.blobs: list[tuple[str, str, int, str]] = []
        self._steps: tuple[Int64s, Bools] | None = None
        self._stamps: tuple[Int64s, Bools] | None = None

    def column(self, name: str) -> pa.ChunkedArray | None:
        """A column of the run; None when it was left out because no row has a value."""
        index = self.table.schema.get_field_index(name)
        return None if index < 0 else self.table.column(index)

    def _absent(self, dtype: str) -> tuple[npt.NDArray[Any], Bools]:
        n = self.table.num_rows
        return np.zeros(n, dtype=dtype), np.zeros(n, dtype=np.bool_)

    def steps(self) -> tuple[Int64s, Bools]:
        """Micro-steps of every row and where they are present (decoded once)."""
        if self._steps is None:
            column = self.column("step")
            self._steps = self._absent("<i8") if column is None else decimal_micro(column)
        return self._steps

    def stamps(self) -> tuple[Int64s, Bools]:
        """Timestamps (epoch ms) of every row and where they are present (decoded once)."""
        if self._stamps is None:
            column = self.column("timestamp")
            self._stamps = self._absent("<i8") if column is None else fixed_width(column, "<i8")
        return self._stamps

    def values(self, name: str, dtype: str) -> tuple[npt.NDArray[Any], Bools]:
        """A fixed-width value column and its validity (all invalid when left out)."""
        column = self.column(name)
        return self._absent(dtype) if column is None else fixed_width(column, dtype)

    def valid(self, name: str) -> Bools:
        column = self.column(name)
        return np.zeros(self.table.num_rows, np.bool_) if column is None else validity(column)

    def take(self, name: str, rows: _Rows) -> list[Any]:
        """Python values of ``rows`` of a column (None for every row of a left-out column)."""
        column = self.column(name)
        if column is None:
            return [None] * len(rows)
        if rows.index is None:
            return column.slice(rows.start, len(rows)).to_pylist()
        index = np.ascontiguousarray(rows.index, dtype=np.int64)
        indices = pa.Array.from_buffers(pa.int64(), len(index), [None, pa.py_buffer(index)])
        return column.take(indices).to_pylist()

    def rows_of(self, type_: str) -> _Rows:
        """The rows of ``type_``, in table order."""
        code = self.types.get(type_)
        if code is None:
            return _Rows()
        mask = self.type_code == code
        count = int(np.count_nonzero(mask))
        if count == 0:
            return _Rows()
        first = int(mask.argmax())
        if bool(mask[first : first + count].all()):
            return _Rows(first, first + count)
        return _Rows(index=np.flatnonzero(mask))

    def report_counts(self, code: str, message: str, codes: Int32s) -> None:
        """One issue per path with the number of rows of ``codes`` at that path."""
        if len(codes) == 0:
            return
        counts = np.bincount(codes, minlength=len(self.path_names))
        for path_code in np.flatnonzero(counts):
            self.report.add(code, message, self.path_names[path_code], int(counts[path_code]))


def _names(registry: dict[str, int]) -> list[str]:
    names = [""] * len(registry)
    for name, code in registry.items():
        names[code] = name
    return names


def load_run(table: pa.Table, plan: RunPlan, report: RunReport) -> ImportedRun:
    """Build the run to write from its rows; skipped items go into ``report``.

    Raises:
        OSError: a file of the run could not be copied into the store.
    """
    state = _Run(table, plan, report)
    run = ImportedRun(
        project=plan.project,
        run_id=plan.run_id,
        creation_ms=plan.creation_ms,
        experiment_name=plan.experiment_name,
        marked_heads=plan.marked_heads,
        short_no=plan.short_no,
        fork_run_id=plan.fork_run_id,
        fork_step=plan.fork_step,
        recorded_fork=plan.recorded_fork,
    )
    _drop_bad_rows(state)
    run.floats = _float_series(state)
    run.series = _point_series(state)
    values, columns = _single_values(state)
    values.extend(_file_values(state))
    run.values = values
    run.run_columns = columns
    run.blobs = state.blobs
    report.points = run.floats.points + sum(len(s.values) for s in run.series)
    report.values = len(values)
    report.files = len(state.blobs)
    return run


# -- rows ------------------------------------------------------------------------------------


def _drop_bad_rows(state: _Run) -> None:
    """Give rows without a path, of unknown types, or at a path that has another type too, the
    type code -1 (skipped) and report them."""
    paths, types = state.path_code, state.type_code
    if len(paths) == 0:
        return
    missing = int(paths.min()) < 0 or int(types.min()) < 0
    valid = (paths >= 0) & (types >= 0) if missing else None
    if valid is not None:
        no_path = paths < 0
        if no_path.any():
            state.report.add(
                "ROW_WITHOUT_PATH",
                "rows without attribute_path were skipped",
                None,
                int(no_path.sum()),
            )
        state.report_counts(
            "ROW_WITHOUT_TYPE",
            "rows without attribute_type were skipped",
            paths[(paths >= 0) & (types < 0)],
        )
    n_types = max(len(state.type_names), 1)
    keys = paths.astype(np.int64) * n_types + types
    counts = np.bincount(
        keys if valid is None else keys[valid], minlength=max(len(state.path_names), 1) * n_types
    ).reshape(-1, n_types)
    rank = {name: i for i, name in enumerate(KNOWN_TYPES)}
    allowed = counts > 0
    for type_code, type_name in enumerate(state.type_names):
        if type_name not in rank:
            for path_code in np.flatnonzero(counts[:, type_code]):
                state.report.add(
                    "TYPE_UNSUPPORTED",
                    f"attribute type {type_name!r} is not one the importer knows; rows skipped",
                    state.path_names[path_code],
                    int(counts[path_code, type_code]),
                )
            allowed[:, type_code] = False
    for path_code in np.flatnonzero(allowed.sum(axis=1) > 1):
        present = [state.type_names[t] for t in np.flatnonzero(allowed[path_code])]
        present.sort(key=rank.__getitem__)
        for other in present[1:]:
            type_code = state.types[other]
            state.report.add(
                "FIELD_TYPE_CONFLICTING",
                f"the path also has type {present[0]}; its {other} rows were skipped",
                state.path_names[path_code],
                int(counts[path_code, type_code]),
            )
            allowed[path_code, type_code] = False
    if valid is None and bool(allowed[counts > 0].all()):
        return  # the common case: every row is loaded
    keep = allowed.ravel()[np.where(keys >= 0, keys, 0)]
    if valid is not None:
        keep &= valid
    if not types.flags.writeable:  # a view of the Arrow buffer
        types = state.type_code = types.copy()
    types[~keep] = -1


# -- series ----------------------------------------------------------------------------------


def _series_rows(state: _Run, type_: str, values_ok: Bools | None) -> tuple[_Rows, Int64s]:
    """Rows of the series points of ``type_`` to load, grouped by path and in step order, and
    their micro-steps; bad and duplicate points are reported and left out."""
    rows = state.rows_of(type_)
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    step_all, step_ok_all = state.steps()
    steps, step_ok = rows.take(step_all), rows.take(step_ok_all)
    ok = None if values_ok is None else rows.take(values_ok)
    fork = state.plan.fork_step
    clean = bool(step_ok.all()) and (ok is None or bool(ok.all()))
    if clean:
        low, high = int(steps.min()), int(steps.max())
        clean = low >= 0 and high < MAX_STEP_MICRO and (fork is None or low > fork)
    if not clean:
        codes = rows.take(state.path_code)
        drop = np.zeros(len(rows), dtype=np.bool_)
        checks: list[tuple[str, str, Bools]] = []
        if ok is not None:
            checks.append(("VALUE_MISSING", "points without a value were skipped", ~ok))
        checks.append(("STEP_MISSING", "points without a step were skipped", ~step_ok))
        checks.append(("STEP_NEGATIVE", "points at a negative step were skipped", steps < 0))
        checks.append(
            (
                "STEP_TOO_LARGE",
                "points at a step of 1e12 or more were skipped",
                steps >= MAX_STEP_MICRO,
            )
        )
        if fork is not None:
            checks.append(
                (
                    "STEP_NOT_AFTER_FORK_POINT",
                    f"points at or before the fork step {fork / 1e6:g} were skipped: a forked "
                    "run inherits those steps from its parent",
                    steps <= fork,
                )
            )
        for code, message, bad in checks:
            bad = bad & ~drop
            if bad.any():
                state.report_counts(code, message, codes[bad])
                drop |= bad
        keep = ~drop
        rows, steps = rows.select(keep), steps[keep]
    codes = rows.take(state.path_code)
    if len(rows) > 1 and not bool((codes[1:] >= codes[:-1]).all()):
        order = np.argsort(codes, kind="stable")
        rows, codes, steps = rows.select(order), codes[order], steps[order]
    if len(rows) > 1 and bool(((steps[1:] <= steps[:-1]) & (codes[1:] == codes[:-1])).any()):
        order = np.lexsort((steps, codes))  # stable: equal steps keep their order of reading
        rows, codes, steps = rows.select(order), codes[order], steps[order]
        duplicate = np.r_[False, (steps[1:] == steps[:-1]) & (codes[1:] == codes[:-1])]
        if duplicate.any():
            state.report_counts(
                "STEP_DUPLICATE",
                "points at a step already seen were skipped (the first row read was kept)",
                codes[duplicate],
            )
            rows, steps = rows.select(~duplicate), steps[~duplicate]
    return rows, steps


def _groups(state: _Run, rows: _Rows) -> list[tuple[str, int, int]]:
    """``(path, start, end)`` of each path's run of consecutive rows."""
    if len(rows) == 0:
        return []
    codes = rows.take(state.path_code)
    cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.r_[0, cuts]
    ends = np.r_[cuts, len(rows)]
    return [
        (state.path_names[codes[s]], int(s), int(e))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def _timestamps(state: _Run, rows: _Rows, type_: str) -> Int64s:
    stamps_all, ok_all = state.stamps()
    stamps, ok = rows.take(stamps_all), rows.take(ok_all)
    if not ok.all():
        if type_ != "file_series":  # 2.x file series carry no time: expected, not reported
            state.report_counts(
                "TIMESTAMP_MISSING",
                "points without a timestamp got the run's creation time",
                rows.take(state.path_code)[~ok],
            )
        stamps = np.where(ok, stamps, state.plan.creation_ms)
    return stamps.astype(np.int64, copy=False)


def _float_series(state: _Run) -> FloatBlock:
    values_all, ok_all = state.values("float_value", "<f8")
    rows, steps = _series_rows(state, "float_series", ok_all)
    if len(rows) == 0:
        return FloatBlock.empty()
    values = rows.take(values_all).astype(np.float64, copy=False)
    stamps = _timestamps(state, rows, "float_series")
    groups = _groups(state, rows)
    offsets = np.array([start for _, start, _ in groups] + [len(rows)], dtype=np.int64)
    return FloatBlock([path for path, _, _ in groups], offsets, steps, values, stamps)


def _point_series(state: _Run) -> list[PointSeries]:
    out: list[PointSeries] = []
    for type_ in POINT_TYPES:
        column = {
            "string_series": "string_value",
            "histogram_series": "histogram_value",
            "file_series": "file_value",
        }[type_]
        rows, steps = _series_rows(state, type_, state.valid(column))
        if len(rows) == 0:
            continue
        stamps = _timestamps(state, rows, type_)
        raw = state.take(column, rows)
        for path, s, e in _groups(state, rows):
            if type_ == "string_series":
                out.append(PointSeries(path, type_, steps[s:e], stamps[s:e], raw[s:e]))
            elif type_ == "histogram_series":
                texts = [_histogram(state, path, value) for value in raw[s:e]]
                out.append(PointSeries(path, type_, steps[s:e], stamps[s:e], texts))
            else:
                out.append(_file_series(state, path, steps[s:e], stamps[s:e], raw[s:e]))
    return out


def _histogram(state: _Run, path: str, value: dict[str, Any]) -> str:
    kind = value.get("type")
    if kind not in ("COUNTING", "DENSITY"):
        state.report.add(
            "HISTOGRAM_TYPE_UNKNOWN",
            f"histogram type {kind!r} is neither COUNTING nor DENSITY; imported as densities",
            path,
        )
        kind = "DENSITY"
    edges = [float(v) for v in value.get("edges") or []]
    values = [math.nan if v is None else float(v) for v in value.get("values") or []]
    return json.dumps({"type": kind, "edges": edges, "values": values})


# -- files -----------------------------------------------------------------------------------


def _resolve(state: _Run, path: str, relative: str | None) -> Path | None:
    """The exported file or directory ``relative`` refers to, or None (reported)."""
    root = state.plan.files_root
    if not relative:
        state.report.add("FILE_PATH_MISSING", "file rows without a path were skipped", path)
        return None
    if root is None:
        state.report.add(
            "FILES_DIRECTORY_MISSING",
            "no files directory was given (--files-path) or found; file values were skipped",
            path,
        )
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        state.report.add(
            "FILE_PATH_OUTSIDE_EXPORT",
            f"file path {relative!r} points outside the export's files directory; skipped",
            path,
        )
        return None
    if not candidate.exists():
        state.report.add(
            "FILE_MISSING",
            f"exported file {str(candidate)!r} does not exist; skipped",
            path,
        )
        return None
    return candidate


def _is_link(state: _Run, path: str, entry: Path) -> bool:
    """Whether ``entry`` (a member of an exported directory) is a symbolic link, reported:
    the import never reads through a link, which could point anywhere outside the export."""
    if not entry.is_symlink():
        return False
    state.report.add(
        "FILE_SYMLINK",
        f"{str(entry)!r} is a symbolic link; files are never read through links "
        "(it could point outside the export); skipped",
        path,
    )
    return True


def _store_file(
    state: _Run, path: str, source: Path, step: int | None, mime: str | None = None
) -> dict[str, Any] | None:
    """Copy ``source`` into the store; the file value to record, or None (reported)."""
    mime = mime or mimetypes.guess_type(source.name)[0] or OCTET_STREAM
    key = storage_key(state.plan.run_id, path, step, source.name)
    try:
        if state.plan.blobs is None:
            size = source.stat().st_size
        else:
            sha, size = state.plan.blobs.put(source)
            state.blobs.append((key, sha, size, mime))
    except OSError as exc:
        state.report.add(
            "FILE_UNREADABLE", f"file {str(source)!r} could not be read ({exc}); skipped", path
        )
        return None
    return {"path": key, "size_bytes": size, "mime_type": mime}


def _file_series(
    state: _Run, path: str, steps: Int64s, stamps: Int64s, raw: list[dict[str, Any] | None]
) -> PointSeries:
    keep: list[int] = []
    texts: list[str] = []
    for i, value in enumerate(raw):
        source = _resolve(state, path, (value or {}).get("path"))
        if source is None:
            continue
        if source.is_dir():
            state.report.add(
                "FILE_IS_DIRECTORY", f"{str(source)!r} is a directory, not a file; skipped", path
            )
            continue
        ref = _store_file(state, path, source, int(steps[i]))
        if ref is not None:
            keep.append(i)
            texts.append(json.dumps(ref))
    index = np.asarray(keep, dtype=np.int64)
    return PointSeries(path, "file_series", steps[index], stamps[index], texts)


def _last_rows(state: _Run, types: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """``(row, path, type)`` of the last row read of each single-value path of ``types``;
    earlier rows of the same path are reported."""
    last: dict[str, tuple[int, str]] = {}
    repeated: dict[str, int] = {}
    for type_ in types:
        for row in state.rows_of(type_).array().tolist():
            path = state.path_names[state.path_code[row]]
            if path in last:
                repeated[path] = repeated.get(path, 0) + 1
            last[path] = (row, type_)
    for path, n in repeated.items():
        state.report.add(
            "VALUE_REPEATED",
            "a single value had several rows; the last row read was kept",
            path,
            n,
        )
    return [(row, path, type_) for path, (row, type_) in last.items()]


def _file_values(state: _Run) -> list[Assign]:
    out: list[Assign] = []
    column = state.column("file_value")
    for row, path, type_ in _last_rows(state, FILE_TYPES):
        value = None if column is None else column[row].as_py()
        source = _resolve(state, path, (value or {}).get("path"))
        if source is None:
            continue
        if type_ == "artifact":
            if source.is_dir():
                source = source / "files_list.json"
                if _is_link(state, path, source):
                    continue
            ref = _store_file(state, path, source, None, "application/json")
            if ref is not None:
                out.append(Assign(path, "file", ref))
            continue
        if not source.is_dir():
            ref = _store_file(state, path, source, None)
            if ref is not None:
                out.append(Assign(path, "file", ref))
            continue
        entries = sorted(source.iterdir())
        members = [p for p in entries if not _is_link(state, f"{path}/{p.name}", p) and p.is_file()]
        if type_ == "file" or not members:
            state.report.add(
                "FILE_IS_DIRECTORY" if members else "FILE_SET_EMPTY",
                f"{str(source)!r} is a directory{'' if members else ' without files'}; skipped",
                path,
            )
            continue
        if len(members) > 1:
            state.report.add(
                "FILE_SET_SPLIT",
                f"the file set holds {len(members)} files; each was imported as "
                f"'{path}/<file name>'",
                path,
            )
        for member in members:
            target = path if len(members) == 1 else f"{path}/{member.name}"
            ref = _store_file(state, target, member, None)
            if ref is not None:
                out.append(Assign(target, "file", ref))
    return out


# -- single values ---------------------------------------------------------------------------


def _single_values(state: _Run) -> tuple[list[Assign], dict[str, Any]]:
    """User values and stored ``sys/`` values, and the recorded ``runs`` columns."""
    values: list[Assign] = []
    columns: dict[str, Any] = {}
    for row, path, type_ in _last_rows(state, SINGLE_TYPES):
        value = row_value(state.table, row, type_)
        if type_ == "string_set":
            value = frozenset(v for v in value or () if v is not None)
        elif value is None:
            state.report.add("VALUE_MISSING", "a row without a value was skipped", path)
            continue
        if not path.startswith("sys/") or path in TAG_PATHS:
            if type_ == "float" and isinstance(value, int):
                value = float(value)
            values.append(Assign(path, type_, value))
            continue
        if path in CONSUMED_SYS or path.startswith(("sys/forking/", "sys/experiment/")):
            continue
        if path == "sys/diagnostics/project_uuid":
            state.report.add(
                "SYS_PROJECT_VALUE", "a project-level value cannot be set per run; skipped", path
            )
            continue
        target = RUN_COLUMNS.get(path)
        if target is None:
            values.append(Assign(path, type_, value))
            continue
        converted = _convert(value, target[1])
        if converted is None:
            state.report.add(
                "SYS_VALUE_TYPE",
                f"a {type_} value cannot stand for this {target[1]} system value; skipped",
                path,
            )
            continue
        columns[target[0]] = converted
    return values, columns


def _convert(value: Any, type_: str) -> Any:
    """``value`` as a ``runs`` column of attribute type ``type_``, or None if it cannot be."""
    if type_ == "string":
        return value if isinstance(value, str) else None
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        return bool(value) if isinstance(value, int) and value in (0, 1) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return round(value)
