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
import sqlite3
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.config import parse_project
from despina.store import Store
from despina.store.admin import delete_runs
from despina.store.batch import WARNING, Assign, IngestIssue, MetricColumn
from despina.store.codec import _ARITH, encode_floats, encode_ints
from despina.store.runs import RunSpec, _check_spec, _inherit
from despina.store.schema import CHUNK_BITS
from despina.store.series import FLOAT_AGGREGATES_UPDATE, POINT_AGGREGATES_UPDATE
from despina.store.sql.attribute_packs import write_pack
from despina.store.sysattrs import SYS_STRING_SETS
from despina.store.writer import CHUNK_POINTS, MAX_STEP_MICRO

__all__ = [
    "RECORDED_PARENT",
    "RECORDED_STEP",
    "RUN_COLUMNS",
    "FloatBlock",
    "ImportOutcome",
    "ImportedRun",
    "PointSeries",
    "existing_project_key",
    "import_run",
    "project_key",
    "reserve_run_numbers",
    "stored_run_ids",
    "stored_sys_id",
]

Int64s = npt.NDArray[np.int64]
Float64s = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
_Finite = tuple[Float64s, Float64s, Float64s, Bools | None]

RECORDED_PARENT = "sys/forking/recorded_parent"
"""Where a run imported as a root keeps the fork parent its source recorded. Not
``sys/forking/parent``: that one is computed from the stored lineage (NULL for a root), and an
attribute row of the same name would give queries two columns for one name."""

RECORDED_STEP = "sys/forking/recorded_step"
"""The recorded fork step of a run imported as a root (see :data:`RECORDED_PARENT`)."""

_ARITH_HEAD = struct.Struct("<Bqq")
"""A chunk of steps or timestamps in arithmetic progression: codec byte, first value, delta."""

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


@dataclass(frozen=True, slots=True)
class FloatBlock:
    """Float series of one run as one set of columns: series ``i`` is ``paths[i]`` with the
    points ``offsets[i]:offsets[i + 1]``; steps (micro) strictly increase within a series."""

    paths: list[str]
    offsets: Int64s
    steps: Int64s
    values: Float64s
    timestamps: Int64s

    @property
    def points(self) -> int:
        return len(self.steps)

    @staticmethod
    def empty() -> FloatBlock:
        return FloatBlock(
            [], np.zeros(1, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
        )

    @staticmethod
    def from_columns(columns: Mapping[str, MetricColumn]) -> FloatBlock:
        """The block of per-path columns (tests, small imports)."""
        items = [(p, c) for p, c in columns.items() if len(c.steps)]
        if not items:
            return FloatBlock.empty()
        lengths = [len(c.steps) for _, c in items]
        return FloatBlock(
            [p for p, _ in items],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.concatenate([np.asarray(c.steps, np.int64) for _, c in items]),
            np.concatenate([np.asarray(c.values, np.float64) for _, c in items]),
            np.concatenate([np.asarray(c.timestamps, np.int64) for _, c in items]),
        )


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
    """The source's ``sys/forking/parent`` and ``sys/forking/step``, kept as
    :data:`RECORDED_PARENT` / :data:`RECORDED_STEP` when the run ends up a root (its parent is
    not in the store)."""
    run_columns: dict[str, Any] = field(default_factory=dict)
    """Recorded values of :data:`RUN_COLUMNS` by ``runs`` column name."""
    values: list[Assign] = field(default_factory=list)
    """Single values; ``sys/`` paths (read-only values of the source) are allowed."""
    floats: FloatBlock = field(default_factory=FloatBlock.empty)
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


def existing_project_key(store: Store, project: str) -> str | None:
    """The key (``sys/id`` prefix) of ``project``; None if the project does not exist (it is
    not created)."""
    workspace, name = parse_project(project)
    row = (
        store.connection()
        .execute(
            "SELECT project_key FROM projects WHERE workspace = ? AND name = ?",
            (workspace, name),
        )
        .fetchone()
    )
    return None if row is None else str(row[0])


def stored_sys_id(store: Store, project: str, run_id: str) -> str | None:
    """The ``sys/id`` (project key and number) the store gave run ``run_id`` of ``project``;
    None if there is no such run."""
    workspace, name = parse_project(project)
    row = (
        store.connection()
        .execute(
            "SELECT p.project_key || '-' || r.short_no FROM runs r JOIN projects p "
            "ON p.id = r.project_id WHERE p.workspace = ? AND p.name = ? AND r.run_id = ?",
            (workspace, name, run_id),
        )
        .fetchone()
    )
    return None if row is None else str(row[0])


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
        if store.dialect == "postgresql":
            # imports and run creations in a project take turns, as every writer does on the
            # embedded store: a run id or a sys/id number taken meanwhile by another process
            # is seen here, instead of ending in a duplicate key
            conn.execute("SELECT id FROM projects WHERE id = ? FOR NO KEY UPDATE", (project_id,))
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
            (old_revision,) = conn.execute(
                "SELECT revision FROM runs WHERE id = ?", (int(existing[0]),)
            ).fetchone()
            delete_runs(conn, [int(existing[0])])
            outcome = _write(conn, project_id, run, now)
            # the replacement may get the old row id and (from its source) the old uuid back: a
            # revision past the old one tells cached reads (query/attrs.py) its rows changed
            conn.execute(
                "UPDATE runs SET revision = ? WHERE id = ?", (int(old_revision) + 1, outcome.pk)
            )
        else:
            outcome = _write(conn, project_id, run, now)
        # an imported run is closed: packed as a closing run is, for a fresh process's first read
        write_pack(conn, outcome.pk)
        return outcome


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
    block = run.floats
    n = len(block.steps)
    if not (
        len(block.values) == len(block.timestamps) == n
        and len(block.offsets) == len(block.paths) + 1
        and int(block.offsets[0]) == 0
        and int(block.offsets[-1]) == n
        and bool((np.diff(block.offsets) > 0).all())
    ):
        raise ValueError(f"float series of run {run.run_id!r}: inconsistent columns")
    if n:
        low = -1 if run.fork_step is None else run.fork_step
        starts, ends = block.offsets[:-1], block.offsets[1:] - 1
        rising = np.diff(block.steps) > 0
        rising[ends[:-1]] = True  # series boundaries
        bad = int(block.steps[starts].min()) <= low or int(block.steps.max()) >= MAX_STEP_MICRO
        if bad or not bool(rising.all()):
            for i, path in enumerate(block.paths):
                _check_steps(run, path, block.steps[starts[i] : ends[i] + 1])
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
        values.append(Assign(RECORDED_PARENT, "string", recorded_parent))
        if recorded_step is not None:
            values.append(Assign(RECORDED_STEP, "float", recorded_step))
    size = _write_values(conn, pk, attrs, values, issues)
    size += _write_floats(conn, pk, attrs, run.floats, issues)
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
        _settle_head(
            conn,
            project_id,
            run.experiment_name,
            run.marked_heads,
            (pk, run.run_id, run.creation_ms),
        )
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
    conn: sqlite3.Connection,
    project_id: int,
    name: str,
    marked: frozenset[str],
    new: tuple[int, str, int],
) -> None:
    """Keep the experiment's head the newest marked run, else its newest run, after adding run
    ``new`` = ``(pk, run id, creation ms)``.

    Only the current head and the new run are compared: with the head right before, the rule
    over all runs picks one of the two, so importing many runs of one experiment stays linear.
    """
    found = conn.execute(
        "SELECT id, run_id, creation_ms FROM runs WHERE project_id = ? AND experiment_name = ? "
        "AND is_head = 1 AND id != ? ORDER BY id DESC LIMIT 1",
        (project_id, name, new[0]),
    ).fetchone()

    def key(run: tuple[int, str, int]) -> tuple[bool, int, int]:
        return (run[1] in marked, run[2], run[0])

    if found is not None and key(tuple(found)) > key(new):
        return
    conn.execute(
        "UPDATE runs SET is_head = 0 WHERE project_id = ? AND experiment_name = ? AND is_head = 1",
        (project_id, name),
    )
    conn.execute("UPDATE runs SET is_head = 1 WHERE id = ?", (new[0],))


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


def _codec_bytes(column: Int64s, starts: Int64s, ends: Int64s, lengths: Int64s) -> list[bytes]:
    """Each chunk ``column[starts[i]:ends[i]]`` as :func:`~despina.store.codec.encode_ints`
    encodes it, deciding the codec of every chunk with a few vectorized reductions."""
    big = np.iinfo(np.int64)
    deltas = np.empty(len(column), dtype=np.int64)
    if len(column) > 1:
        np.subtract(column[1:], column[:-1], out=deltas[:-1])
    last = ends - 1  # the delta leaving a chunk is not part of it: neutral for each reduction
    deltas[last] = big.max
    dmin = np.minimum.reduceat(deltas, starts)
    deltas[last] = big.min
    dmax = np.maximum.reduceat(deltas, starts)
    del deltas
    out: list[bytes] = []
    firsts = column[starts].tolist()
    for i, (first, lo, hi, n) in enumerate(
        zip(firsts, dmin.tolist(), dmax.tolist(), lengths.tolist(), strict=True)
    ):
        if n == 1 or lo == hi:
            out.append(_ARITH_HEAD.pack(_ARITH, first, 0 if n == 1 else lo))
        else:
            start = int(starts[i])
            out.append(encode_ints(column[start : start + n]))
    return out


def _finite_views(values: Float64s) -> _Finite:
    """``values`` prepared for min, max and sum reductions over finite values only: the values
    with non-finite ones as +inf, -inf and 0 (the values themselves when all are finite), and
    the finite mask (None when all are finite)."""
    finite = np.isfinite(values)
    if bool(finite.all()):
        return values, values, values, None
    return (
        np.where(finite, values, np.inf),
        np.where(finite, values, -np.inf),
        np.where(finite, values, 0.0),
        finite,
    )


def _chunk_rows(
    attr_ids: list[int],
    block: FloatBlock,
    finite: _Finite,
) -> list[tuple[object, ...]]:
    """The ``chunks`` rows of every float series of the block (chunks of ``CHUNK_POINTS``
    from chunk 0, as the writer cuts them)."""
    sizes = np.diff(block.offsets)
    per_series = -(-sizes // CHUNK_POINTS)
    series_of = np.repeat(np.arange(len(sizes)), per_series)
    first_chunk = np.cumsum(per_series) - per_series
    number = np.arange(len(series_of)) - first_chunk[series_of]
    starts = block.offsets[:-1][series_of] + number * CHUNK_POINTS
    ends = np.minimum(starts + CHUNK_POINTS, block.offsets[1:][series_of])
    lengths = ends - starts
    low, high, _, _ = finite
    vmin = np.minimum.reduceat(low, starts)
    vmax = np.maximum.reduceat(high, starts)
    has_finite = np.isfinite(vmin)
    steps = _codec_bytes(block.steps, starts, ends, lengths)
    stamps = _codec_bytes(block.timestamps, starts, ends, lengths)
    values = block.values
    ids = np.asarray(attr_ids, dtype=np.int64)[series_of] << CHUNK_BITS
    return list(
        zip(
            (ids + number).tolist(),
            lengths.tolist(),
            block.steps[starts].tolist(),
            block.steps[ends - 1].tolist(),
            block.timestamps[starts].tolist(),
            block.timestamps[ends - 1].tolist(),
            [v if ok else None for v, ok in zip(vmin.tolist(), has_finite.tolist(), strict=True)],
            [v if ok else None for v, ok in zip(vmax.tolist(), has_finite.tolist(), strict=True)],
            steps,
            [
                encode_floats(values[a:b])
                for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
            ],
            stamps,
            strict=True,
        )
    )


def _aggregates(
    block: FloatBlock, finite: _Finite
) -> list[tuple[float | None, float | None, float, float, int]]:
    """Per series ``(fmin, fmax, fsum, fsumsq, fcount)`` over its finite values."""
    starts = block.offsets[:-1]
    low, high, zeroed, mask = finite
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: sums become inf
        sums = np.add.reduceat(zeroed, starts)
        squares = np.add.reduceat(zeroed * zeroed, starts)
    mins = np.minimum.reduceat(low, starts)
    maxs = np.maximum.reduceat(high, starts)
    if mask is None:
        counts = np.diff(block.offsets)
    else:
        counts = np.add.reduceat(mask.astype(np.int64), starts)
    return [
        (lo if n else None, hi if n else None, total, square, n)
        for lo, hi, total, square, n in zip(
            mins.tolist(),
            maxs.tolist(),
            sums.tolist(),
            squares.tolist(),
            counts.tolist(),
            strict=True,
        )
    ]


def _fold(
    previous: tuple[Any, ...], own: tuple[float | None, float | None, float, float, int]
) -> tuple[float | None, float | None, float | None, float | None, int]:
    """Inherited aggregates ``(fmin, fmax, fsum, fsumsq, fcount)`` plus the run's own."""
    fmin, fmax, fsum, fsumsq, fcount = previous
    lo, hi, total, square, n = own
    if not fcount:
        return (lo, hi, total, square, n) if n else (None, None, None, None, 0)
    if not n:
        return fmin, fmax, fsum, fsumsq, fcount
    assert lo is not None and hi is not None
    return min(fmin, lo), max(fmax, hi), fsum + total, fsumsq + square, fcount + n


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


def _write_floats(
    conn: sqlite3.Connection,
    pk: int,
    attrs: dict[str, tuple[int, str]],
    block: FloatBlock,
    issues: list[IngestIssue],
) -> int:
    if not block.paths:
        return 0
    inherited = {
        path: row
        for path, *row in conn.execute(
            "SELECT path, count, fmin, fmax, fsum, fsumsq, fcount FROM attributes "
            "WHERE run_id = ? AND type = 'float_series'",
            (pk,),
        )
    }
    keep: list[int] = []
    attr_ids: list[int] = []
    for i, path in enumerate(block.paths):
        attr_id = _series_attribute(conn, pk, attrs, path, "float_series", issues)
        if attr_id is not None:
            keep.append(i)
            attr_ids.append(attr_id)
    if len(keep) < len(block.paths):
        block = _subset(block, keep)
    if not keep:
        return 0
    finite = _finite_views(block.values)
    conn.executemany(
        "INSERT INTO chunks (id, n, step_first, step_last, ts_first, ts_last, vmin, vmax, "
        "steps, vals, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _chunk_rows(attr_ids, block, finite),
    )
    lasts = block.offsets[1:] - 1
    updates = []
    for i, (size, own, last, last_step, last_ts) in enumerate(
        zip(
            np.diff(block.offsets).tolist(),
            _aggregates(block, finite),
            block.values[lasts].tolist(),
            block.steps[lasts].tolist(),
            block.timestamps[lasts].tolist(),
            strict=True,
        )
    ):
        found = inherited.get(block.paths[i])
        count = size
        previous: tuple[Any, ...] = (None, None, None, None, 0)
        if found is not None:
            count += found[0] or 0
            previous = tuple(found[1:])
        updates.append(
            (
                None if last != last else last,
                count,
                last_step,
                last_ts,
                *_fold(previous, own),
                attr_ids[i],
            )
        )
    conn.executemany(FLOAT_AGGREGATES_UPDATE, updates)
    return block.points * 24


def _subset(block: FloatBlock, keep: list[int]) -> FloatBlock:
    pieces = [np.arange(block.offsets[i], block.offsets[i + 1]) for i in keep]
    index = np.concatenate(pieces) if pieces else np.empty(0, np.int64)
    lengths = np.diff(block.offsets)[keep]
    return FloatBlock(
        [block.paths[i] for i in keep],
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        block.steps[index],
        block.values[index],
        block.timestamps[index],
    )


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
            POINT_AGGREGATES_UPDATE,
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
