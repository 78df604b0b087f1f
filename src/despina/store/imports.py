"""Writing imported runs: a whole run, as another tracker recorded it, in one transaction.

An import is not logging: it carries the run's recorded ``sys/`` values (owner, creation and
modification times, failed, trashed, …), its short id, and its points with the timestamps they
were logged at, which need not increase. It therefore writes the store directly rather than
through :class:`~despina.store.writer.RunWriter`, but keeps the same layout and invariants, so an
imported run cannot be told apart from a logged one and logging into it later works:

* types are fixed per path; series steps strictly increase, are below 1e12 and come after the
  fork step of a forked run (checked here; the caller sorts and filters);
* float points go into chunks of ``CHUNK_POINTS`` from chunk 0, other points into ``points``;
* series aggregates cover the full lineage: a fork starts from its parent's aggregates up to the
  fork step (as :func:`~despina.store.runs.create_run` gives it) and folds its own points in;
* each experiment has one head at every commit.

Everything of one run is written in one ``BEGIN IMMEDIATE`` transaction: a reader sees the run
complete or not at all, and an interrupted import can simply be repeated.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.config import parse_project
from despina.store.admin import delete_runs
from despina.store.batch import WARNING, Assign, IngestIssue, MetricColumn
from despina.store.codec import encode_floats, encode_ints
from despina.store.runs import RunSpec, _check_spec, _inherit
from despina.store.schema import CHUNK_BITS
from despina.store.sqlite import Store
from despina.store.sysattrs import SYS_STRING_SETS
from despina.store.writer import CHUNK_POINTS, MAX_STEP_MICRO

__all__ = [
    "RUN_COLUMNS",
    "ImportOutcome",
    "ImportedRun",
    "PointSeries",
    "import_run",
    "project_key",
    "reserve_run_numbers",
    "stored_run_ids",
]

Int64s = npt.NDArray[np.int64]
Float64s = npt.NDArray[np.float64]

RUN_COLUMNS: dict[str, tuple[str, str]] = {
    "sys/owner": ("owner", "string"),
    "sys/description": ("description", "string"),
    "sys/family": ("family", "string"),
    "sys/diagnostics/run_uuid": ("uuid", "string"),
    "sys/modification_time": ("modification_ms", "datetime"),
    "sys/ping_time": ("ping_ms", "datetime"),
    "sys/failed": ("failed", "bool"),
    "sys/trashed": ("trashed", "bool"),
    "sys/archived": ("archived", "bool"),
    "sys/size": ("size_bytes", "int"),
}
"""``sys/`` values an import may set, by path: the ``runs`` column and the attribute type.
(``sys/creation_time`` is :attr:`ImportedRun.creation_ms`.)"""


@dataclass(slots=True)
class PointSeries:
    """Points of a string, histogram or file series: steps (micro) strictly increasing,
    values as stored (text; JSON for histograms and files)."""

    path: str
    type: str
    steps: Int64s
    timestamps: Int64s
    values: list[str]


@dataclass(slots=True)
class ImportedRun:
    """Everything of one run to import. Steps are micro-steps, times epoch ms."""

    project: str
    run_id: str
    creation_ms: int
    experiment_name: str | None = None
    marked_heads: frozenset[str] = frozenset()
    """Run ids of the experiment that the source marked as its head (empty: the newest run)."""
    short_no: int | None = None
    """The wanted number of ``sys/id`` (``<project key>-<n>``); a new one if taken or None."""
    fork_run_id: str | None = None
    fork_step: int | None = None
    recorded_fork: tuple[str, float | None] | None = None
    """The source's ``sys/forking/parent`` and ``sys/forking/step``, stored as plain values when
    the run ends up a root (its parent is not in the store)."""
    run_columns: dict[str, Any] = field(default_factory=dict)
    """Recorded values of :data:`RUN_COLUMNS` by ``runs`` column name."""
    values: list[Assign] = field(default_factory=list)
    """Single values; ``sys/`` paths (read-only values of the source) are allowed."""
    metrics: dict[str, MetricColumn] = field(default_factory=dict)
    series: list[PointSeries] = field(default_factory=list)
    blobs: list[tuple[str, str, int, str]] = field(default_factory=list)
    """Stored contents referenced by file values: (storage key, sha256, size, mime type)."""


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What happened to one run: ``created`` False means it existed and was left alone."""

    created: bool
    pk: int
    sys_id: str
    forked: bool
    issues: list[IngestIssue]


def stored_run_ids(store: Store, project: str) -> set[str]:
    """``sys/custom_run_id`` of every run of ``project`` (empty if the project is absent)."""
    workspace, name = parse_project(project)
    rows = store.connection().execute(
        "SELECT r.run_id FROM runs r JOIN projects p ON p.id = r.project_id "
        "WHERE p.workspace = ? AND p.name = ?",
        (workspace, name),
    )
    return {run_id for (run_id,) in rows}


def project_key(store: Store, project: str, *, preferred: str | None = None) -> str:
    """The key (``sys/id`` prefix) of ``project``, creating the project with ``preferred`` as
    its key when it does not exist yet (another key if that one is taken in the workspace)."""
    workspace, name = parse_project(project)
    conn = store.connection()
    row = conn.execute(
        "SELECT project_key FROM projects WHERE workspace = ? AND name = ?", (workspace, name)
    ).fetchone()
    if row is None:
        store.create_project(project, key=preferred or None, exist_ok=True)
        row = conn.execute(
            "SELECT project_key FROM projects WHERE workspace = ? AND name = ?",
            (workspace, name),
        ).fetchone()
    return str(row[0])


def reserve_run_numbers(store: Store, project: str, highest: int) -> None:
    """Make the project's ``sys/id`` counter continue above ``highest``, so that ids given to
    new runs never take a number an imported run keeps."""
    workspace, name = parse_project(project)
    with store.write() as conn:
        conn.execute(
            "UPDATE projects SET next_run_no = MAX(next_run_no, ?) WHERE workspace = ? "
            "AND name = ?",
            (highest + 1, workspace, name),
        )


def import_run(
    store: Store, run: ImportedRun, *, replace: bool = False, now_ms: int | None = None
) -> ImportOutcome:
    """Write ``run`` in one transaction; a run with the same id is kept unless ``replace``.

    Raises:
        ValueError: the run id or experiment name breaks a creation rule, or a series breaks a
            store invariant (steps not strictly increasing, not after the fork step, too large).
        StoreError: the database could not be written.
    """
    problem = _check_spec(
        RunSpec(
            run.project,
            run.run_id,
            run.experiment_name,
            fork_run_id=run.fork_run_id,
            fork_step=run.fork_step,
        )
    )
    if problem is not None:
        raise ValueError(f"run {run.run_id!r} cannot be imported: {problem}")
    _check_series(run)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    project_id = store.project_id(run.project, create=True)
    with store.write() as conn:
        existing = conn.execute(
            "SELECT r.id, p.project_key || '-' || r.short_no, r.parent_id IS NOT NULL "
            "FROM runs r JOIN projects p ON p.id = r.project_id "
            "WHERE r.project_id = ? AND r.run_id = ?",
            (project_id, run.run_id),
        ).fetchone()
        if existing is not None:
            if not replace:
                return ImportOutcome(
                    False, int(existing[0]), str(existing[1]), bool(existing[2]), []
                )
            delete_runs(conn, [int(existing[0])])
        return _write(conn, project_id, run, now)


# -- checks ----------------------------------------------------------------------------------


def _check_steps(run: ImportedRun, path: str, steps: Int64s) -> None:
    if len(steps) == 0:
        return
    low = -1 if run.fork_step is None else run.fork_step
    if int(steps[0]) <= low or int(steps[-1]) >= MAX_STEP_MICRO:
        raise ValueError(
            f"series {path!r} of run {run.run_id!r}: steps must lie in ({low / 1e6:g}, 1e12)"
        )
    if len(steps) > 1 and not bool((np.diff(steps) > 0).all()):
        raise ValueError(f"series {path!r} of run {run.run_id!r}: steps must strictly increase")


def _check_series(run: ImportedRun) -> None:
    for path, column in run.metrics.items():
        steps = np.asarray(column.steps, dtype=np.int64)
        if not len(steps) == len(column.values) == len(column.timestamps):
            raise ValueError(f"series {path!r} of run {run.run_id!r}: column lengths differ")
        _check_steps(run, path, steps)
    for series in run.series:
        if not len(series.steps) == len(series.timestamps) == len(series.values):
            raise ValueError(f"series {series.path!r} of run {run.run_id!r}: lengths differ")
        _check_steps(run, series.path, series.steps)


# -- writing ---------------------------------------------------------------------------------


def _write(conn: sqlite3.Connection, project_id: int, run: ImportedRun, now: int) -> ImportOutcome:
    issues: list[IngestIssue] = []
    parent: tuple[int, int] | None = None
    if run.fork_run_id is not None:
        row = conn.execute(
            "SELECT id, depth FROM runs WHERE project_id = ? AND run_id = ?",
            (project_id, run.fork_run_id),
        ).fetchone()
        if row is None:
            issues.append(
                IngestIssue(
                    "RUN_FORK_PARENT_NOT_FOUND",
                    f"fork parent {run.fork_run_id!r} is not in the project; run "
                    f"{run.run_id!r} was imported as a root run",
                    None,
                    WARNING,
                )
            )
        else:
            parent = (int(row[0]), int(row[1]))
    short_no = _short_no(conn, project_id, run.short_no)
    cols = run.run_columns
    modification = int(cols.get("modification_ms", now))
    cursor = conn.execute(
        "INSERT INTO runs (project_id, run_id, short_no, uuid, family, experiment_name, is_head, "
        "owner, description, creation_ms, modification_ms, ping_ms, closed, failed, trashed, "
        "archived, parent_id, fork_step, depth) "
        "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
        (
            project_id,
            run.run_id,
            short_no,
            str(cols.get("uuid") or uuid.uuid4()),
            str(cols.get("family") or run.run_id),
            run.experiment_name,
            str(cols.get("owner", "")),
            str(cols.get("description", "")),
            run.creation_ms,
            modification,
            int(cols.get("ping_ms", modification)),
            int(bool(cols.get("failed", False))),
            int(bool(cols.get("trashed", False))),
            int(bool(cols.get("archived", False))),
            None if parent is None else parent[0],
            None if parent is None else run.fork_step,
            0 if parent is None else parent[1] + 1,
        ),
    )
    pk = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO attributes (run_id, path, type, text) VALUES (?, ?, 'string_set', '[]')",
        [(pk, path) for path in SYS_STRING_SETS],
    )
    if parent is not None and run.fork_step is not None:
        _inherit(conn, pk, parent[0], run.fork_step, False)
    attrs = {
        path: (int(attr_id), type_)
        for attr_id, path, type_ in conn.execute(
            "SELECT id, path, type FROM attributes WHERE run_id = ?", (pk,)
        )
    }
    values = list(run.values)
    if parent is None and run.recorded_fork is not None:
        recorded_parent, recorded_step = run.recorded_fork
        values.append(Assign("sys/forking/parent", "string", recorded_parent))
        if recorded_step is not None:
            values.append(Assign("sys/forking/step", "float", recorded_step))
    size = _write_values(conn, pk, attrs, values, issues)
    size += _write_metrics(conn, pk, attrs, run.metrics, issues)
    size += _write_series(conn, pk, attrs, run.series, issues)
    if run.blobs:
        conn.executemany(
            "INSERT OR REPLACE INTO blobs (project_id, path, sha256, size, mime_type, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(project_id, *blob, now) for blob in run.blobs],
        )
        size += sum(blob[2] for blob in run.blobs)
    conn.execute(
        "UPDATE runs SET size_bytes = ? WHERE id = ?", (int(cols.get("size_bytes", size)), pk)
    )
    if run.experiment_name is not None:
        _settle_head(conn, project_id, run.experiment_name, run.marked_heads)
    (key,) = conn.execute("SELECT project_key FROM projects WHERE id = ?", (project_id,)).fetchone()
    return ImportOutcome(True, pk, f"{key}-{short_no}", parent is not None, issues)


def _short_no(conn: sqlite3.Connection, project_id: int, wanted: int | None) -> int:
    if wanted is not None and wanted > 0:
        taken = conn.execute(
            "SELECT 1 FROM runs WHERE project_id = ? AND short_no = ? LIMIT 1",
            (project_id, wanted),
        ).fetchone()
        if taken is None:
            conn.execute(
                "UPDATE projects SET next_run_no = MAX(next_run_no, ?) WHERE id = ?",
                (wanted + 1, project_id),
            )
            return wanted
    (number,) = conn.execute(
        "UPDATE projects SET next_run_no = next_run_no + 1 WHERE id = ? RETURNING next_run_no - 1",
        (project_id,),
    ).fetchone()
    return int(number)


def _settle_head(
    conn: sqlite3.Connection, project_id: int, name: str, marked: frozenset[str]
) -> None:
    """Make the experiment's head the newest marked run, else its newest run."""
    rows = conn.execute(
        "SELECT id, run_id, creation_ms FROM runs WHERE project_id = ? AND experiment_name = ?",
        (project_id, name),
    ).fetchall()
    pool = [r for r in rows if r[1] in marked] or rows
    head = max(pool, key=lambda r: (r[2], r[0]))[0]
    conn.execute(
        "UPDATE runs SET is_head = (id = ?) WHERE project_id = ? AND experiment_name = ? "
        "AND is_head != (id = ?)",
        (head, project_id, name, head),
    )


def _conflict(issues: list[IngestIssue], path: str, found: str, wanted: str) -> None:
    issues.append(
        IngestIssue(
            "FIELD_TYPE_CONFLICTING",
            f"attribute {path!r} is a {found} (inherited or set earlier); its {wanted} value "
            "was skipped",
            path,
        )
    )


def _cell(assign: Assign) -> tuple[object, str | None]:
    """``(num, text)`` of a single value, as the writer stores it."""
    value = assign.value
    if assign.type == "float":
        number = float(value)
        return (None if number != number else number), None
    if assign.type in ("int", "bool", "datetime"):
        return int(value), None
    if assign.type == "string":
        return None, str(value)
    if assign.type == "string_set":
        return None, json.dumps(sorted(value), ensure_ascii=False)
    if assign.type == "file":
        return None, json.dumps(value, ensure_ascii=False)
    raise ValueError(f"cannot import a {assign.type} single value ({assign.path!r})")


def _write_values(
    conn: sqlite3.Connection,
    pk: int,
    attrs: dict[str, tuple[int, str]],
    values: list[Assign],
    issues: list[IngestIssue],
) -> int:
    inserts: dict[str, tuple[object, ...]] = {}
    updates = []
    size = 0
    for assign in values:
        num, text = _cell(assign)
        found = attrs.get(assign.path)
        if found is not None:
            if found[1] != assign.type:
                _conflict(issues, assign.path, found[1], assign.type)
                continue
            updates.append((num, text, found[0]))
        else:
            inserts[assign.path] = (pk, assign.path, assign.type, num, text)
        size += 8 + (len(text) if text else 0)
    conn.executemany("UPDATE attributes SET num = ?, text = ? WHERE id = ?", updates)
    conn.executemany(
        "INSERT INTO attributes (run_id, path, type, num, text) VALUES (?, ?, ?, ?, ?)",
        list(inserts.values()),
    )
    return size


def _finite_range(values: Float64s) -> tuple[float, float] | None:
    lo, hi = float(values.min()), float(values.max())
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if len(finite) else None


def _chunk_rows(
    attr_id: int, steps: Int64s, values: Float64s, stamps: Int64s
) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    base = attr_id << CHUNK_BITS
    for number, start in enumerate(range(0, len(steps), CHUNK_POINTS)):
        end = start + CHUNK_POINTS
        s, v, t = steps[start:end], values[start:end], stamps[start:end]
        span = _finite_range(v)
        rows.append(
            (
                base + number,
                len(s),
                int(s[0]),
                int(s[-1]),
                int(t[0]),
                int(t[-1]),
                None if span is None else span[0],
                None if span is None else span[1],
                encode_ints(s),
                encode_floats(v),
                encode_ints(t),
            )
        )
    return rows


def _fold(
    previous: tuple[Any, ...] | None, values: Float64s
) -> tuple[float | None, float | None, float | None, float | None, int]:
    """``(fmin, fmax, fsum, fsumsq, fcount)`` of previous aggregates plus ``values``."""
    finite = values[np.isfinite(values)]
    fmin = fmax = fsum = fsumsq = None
    fcount = 0
    if previous is not None and previous[4]:
        fmin, fmax, fsum, fsumsq, fcount = previous
    if len(finite):
        with np.errstate(over="ignore"):  # huge values: sums become inf, as logging gives
            own_sum = float(finite.sum())
            own_sumsq = float(np.dot(finite, finite))
        lo, hi = float(finite.min()), float(finite.max())
        fmin = lo if fmin is None else min(fmin, lo)
        fmax = hi if fmax is None else max(fmax, hi)
        fsum = own_sum if fsum is None else fsum + own_sum
        fsumsq = own_sumsq if fsumsq is None else fsumsq + own_sumsq
        fcount += len(finite)
    return fmin, fmax, fsum, fsumsq, fcount


def _series_attribute(
    conn: sqlite3.Connection,
    pk: int,
    attrs: dict[str, tuple[int, str]],
    path: str,
    type_: str,
    issues: list[IngestIssue],
) -> int | None:
    found = attrs.get(path)
    if found is not None:
        if found[1] != type_:
            _conflict(issues, path, found[1], type_)
            return None
        return found[0]
    cursor = conn.execute(
        "INSERT INTO attributes (run_id, path, type, count) VALUES (?, ?, ?, 0)",
        (pk, path, type_),
    )
    attr_id = int(cursor.lastrowid or 0)
    attrs[path] = (attr_id, type_)
    return attr_id


def _write_metrics(
    conn: sqlite3.Connection,
    pk: int,
    attrs: dict[str, tuple[int, str]],
    metrics: Mapping[str, MetricColumn],
    issues: list[IngestIssue],
) -> int:
    points = 0
    for path, column in metrics.items():
        steps = np.asarray(column.steps, dtype=np.int64)
        if len(steps) == 0:
            continue
        values = np.asarray(column.values, dtype=np.float64)
        stamps = np.asarray(column.timestamps, dtype=np.int64)
        attr_id = _series_attribute(conn, pk, attrs, path, "float_series", issues)
        if attr_id is None:
            continue
        conn.executemany(
            "INSERT INTO chunks (id, n, step_first, step_last, ts_first, ts_last, vmin, vmax, "
            "steps, vals, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _chunk_rows(attr_id, steps, values, stamps),
        )
        count, fmin, fmax, fsum, fsumsq, fcount = conn.execute(
            "SELECT count, fmin, fmax, fsum, fsumsq, fcount FROM attributes WHERE id = ?",
            (attr_id,),
        ).fetchone()
        folded = _fold((fmin, fmax, fsum, fsumsq, fcount), values)
        last = float(values[-1])
        conn.execute(
            "UPDATE attributes SET num = ?, count = ?, last_step = ?, last_ts = ?, fmin = ?, "
            "fmax = ?, fsum = ?, fsumsq = ?, fcount = ? WHERE id = ?",
            (
                None if last != last else last,
                (count or 0) + len(steps),
                int(steps[-1]),
                int(stamps[-1]),
                *folded,
                attr_id,
            ),
        )
        points += len(steps)
    return points * 24


def _write_series(
    conn: sqlite3.Connection,
    pk: int,
    attrs: dict[str, tuple[int, str]],
    series: list[PointSeries],
    issues: list[IngestIssue],
) -> int:
    size = 0
    for item in series:
        if not item.values:
            continue
        attr_id = _series_attribute(conn, pk, attrs, item.path, item.type, issues)
        if attr_id is None:
            continue
        conn.executemany(
            "INSERT INTO points (attr_id, step, ts, value) VALUES (?, ?, ?, ?)",
            zip(
                [attr_id] * len(item.values),
                item.steps.tolist(),
                item.timestamps.tolist(),
                item.values,
                strict=True,
            ),
        )
        (count,) = conn.execute("SELECT count FROM attributes WHERE id = ?", (attr_id,)).fetchone()
        conn.execute(
            "UPDATE attributes SET text = ?, count = ?, last_step = ?, last_ts = ? WHERE id = ?",
            (
                item.values[-1],
                (count or 0) + len(item.values),
                int(item.steps[-1]),
                int(item.timestamps[-1]),
                attr_id,
            ),
        )
        size += 16 * len(item.values) + sum(map(len, item.values))
    return size
