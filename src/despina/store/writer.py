"""Applying batches to a run: the store-side rules of ingestion and the chunked series writes.

A :class:`RunWriter` belongs to one run in one process. It keeps each touched series' state (the
open chunk and the aggregates) in memory between flushes, so a flush writes each touched chunk row
and aggregate row once, in one short transaction. If another process wrote to the same run
meanwhile (``runs.revision`` moved), the cached state is dropped and re-read.

Rules (wire-protocol.md §5.3–§5.5): a path keeps its first type (the stored one, or the one a
batch logged first: ``Batch.first_types``); committed steps strictly increase
per series, except that a file series keeps a file at any step it does not hold yet (as Neptune
does; its last value stays the one at its last step); a forked run's own points come after the
fork step; timestamps never decrease;
a point identical to a stored one is a duplicate (warning, ignored); previews come after the last
committed step and are replaced by later previews or committed points. A rejected item is
dropped; everything else in the batch is applied.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.store import Store
from despina.store.batch import (
    NO_STEP,
    WARNING,
    Assign,
    Batch,
    IngestIssue,
    MetricColumn,
    ModifySet,
    PointAppend,
    PreviewPoint,
)
from despina.store.codec import encode_floats, encode_ints
from despina.store.schema import CHUNK_BITS, SERIES_TYPES
from despina.store.series import (
    FLOAT_AGGREGATES_UPDATE,
    POINT_AGGREGATES_UPDATE,
    FloatPoints,
    read_float_points,
)
from despina.store.wide_batch import CHUNK_POINTS, NEW_SERIES_INSERT, new_series_rows

__all__ = ["CHUNK_POINTS", "MAX_STEP_MICRO", "RunWriter"]

MAX_STEP_MICRO = 10**18
"""Steps must be below 1e12, i.e. below 1e18 micro-steps."""

MAX_PIECES = 128
"""Short rows a float series may have after its last full chunk before they are merged."""
STRING_LIMIT = 64 * 1024
STRING_SERIES_LIMIT = 1024 * 1024
FILE_REF_LIMIT = 4 * 1024
MIN_DATETIME_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_DATETIME_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
MICRO = 1_000_000
MAX_PATH_BYTES = 1024

Int64s = npt.NDArray[np.int64]
Float64s = npt.NDArray[np.float64]


@dataclass(slots=True)
class _FloatSeries:
    """A float series' aggregates and its open region: the points after its last full chunk,
    stored as ``pieces`` rows numbered from ``chunk_no`` (see :meth:`RunWriter._extend_chunks`)."""

    attr_id: int
    count: int
    last_step: int  # -1 before the first point
    last_ts: int
    last_value: float
    fmin: float
    fmax: float
    fsum: float
    fsumsq: float
    fcount: int
    chunk_no: int
    chunk_steps: Int64s
    chunk_values: Float64s
    chunk_ts: Int64s
    has_previews: bool
    pieces: int = 0


@dataclass(slots=True)
class _NewWide:
    """The states of series a wide flush created (``RunWriter._append_new_wide``), made into
    :class:`_FloatSeries` only when a later flush reaches a series: a run that closes after
    that flush (or never logs those keys again) builds none of them."""

    first_id: int  # the series' attribute ids are consecutive from it, in row order
    attributes: list[tuple[Any, ...]]  # their attribute rows (``NEW_SERIES_INSERT``)
    values: Float64s  # one row of values per series
    width: int
    tail_steps: Int64s  # the open points' steps and timestamps: one array shared by all
    tail_ts: Int64s

    def state(self, attr_id: int) -> _FloatSeries:
        row = attr_id - self.first_id
        _, _, _, num, count, last_step, last_ts, fmin, fmax, fsum, fsumsq, _ = self.attributes[row]
        keep = self.width - self.width % CHUNK_POINTS
        return _FloatSeries(
            attr_id=attr_id,
            count=count,
            last_step=last_step,
            last_ts=last_ts,
            last_value=num,
            fmin=fmin,
            fmax=fmax,
            fsum=fsum,
            fsumsq=fsumsq,
            fcount=count,
            chunk_no=self.width // CHUNK_POINTS,
            chunk_steps=self.tail_steps,
            chunk_values=self.values[row, keep:],
            chunk_ts=self.tail_ts,
            has_previews=False,
            pieces=1 if keep < self.width else 0,
        )


@dataclass(slots=True)
class _PointSeries:
    attr_id: int
    count: int
    last_step: int
    last_ts: int


class _Issues:
    """Collects issues, one per (code, path), counting repeats so a bad loop cannot flood."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str | None], tuple[IngestIssue, int]] = {}

    def add(self, code: str, message: str, path: str | None, severity: str = "error") -> None:
        key = (code, path)
        if key in self._by_key:
            issue, n = self._by_key[key]
            self._by_key[key] = (issue, n + 1)
        else:
            self._by_key[key] = (IngestIssue(code, message, path, severity), 1)

    def result(self) -> list[IngestIssue]:
        out = []
        for issue, n in self._by_key.values():
            if n > 1:
                issue = IngestIssue(
                    issue.code,
                    f"{issue.message} (and {n - 1} more like it)",
                    issue.path,
                    issue.severity,
                    n,
                )
            out.append(issue)
        return out


class _Memo:
    """Per-flush memo of work on arrays that many series share.

    A training loop that logs many metrics per call gives every series the very same steps and
    timestamps arrays; checking, concatenating and encoding them once per flush instead of once
    per series is what keeps wide logging cheap. Inputs are kept alive so ids stay unique.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[object, ...], Any] = {}
        self._alive: list[object] = []

    def ordered(self, steps: Int64s, stamps: Int64s) -> bool:
        key = ("ordered", id(steps), id(stamps))
        found = self._cache.get(key)
        if found is None:
            found = len(steps) < 2 or (
                bool((np.diff(steps) > 0).all()) and bool((np.diff(stamps) >= 0).all())
            )
            self._cache[key] = found
            self._alive.append((steps, stamps))
        return bool(found)

    def concat(self, head: Int64s, tail: Int64s) -> Int64s:
        if len(head) == 0:
            return tail
        key = ("concat", id(head), id(tail))
        found = self._cache.get(key)
        if found is None:
            found = np.concatenate([head, tail])
            self._cache[key] = found
            self._alive.append((head, tail))
        return found

    def piece(self, values: Int64s, start: int, end: int) -> Int64s:
        if start == 0 and end == len(values):
            return values
        key = ("piece", id(values), start, end)
        found = self._cache.get(key)
        if found is None:
            found = values[start:end]
            self._cache[key] = found
            self._alive.append(values)
        return found

    def encoded(self, values: Int64s) -> bytes:
        key = ("encoded", id(values))
        found = self._cache.get(key)
        if found is None:
            found = encode_ints(values)
            self._cache[key] = found
            self._alive.append(values)
        return found


def _finite_range(values: Float64s) -> tuple[float, float, bool] | None:
    """Smallest and largest finite value and whether every value is finite; None if none is."""
    lo, hi = float(values.min()), float(values.max())  # NaN propagates into both
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi, True
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max()), False) if len(finite) else None


@dataclass(slots=True)
class _Stats:
    """A column's new points in figures: finite range (as :func:`_finite_range`), sums."""

    span: tuple[float, float, bool] | None
    fsum: float
    fsumsq: float
    fcount: int


class _ColumnStats:
    """The figures of a batch's columns of one length as arrays (row ``i``: the ``i``-th
    column); :meth:`get` makes a column's :class:`_Stats` when the series-by-series path asks
    (the wide path reads the arrays: no thousand objects for a thousand new series)."""

    __slots__ = ("counts", "highs", "lows", "rows", "squares", "sums", "width")

    def __init__(
        self,
        rows: dict[str, int],
        width: int = 0,
        figures: tuple[Float64s, Float64s, Float64s, Float64s, Int64s] | None = None,
    ) -> None:
        self.rows = rows
        self.width = width
        if figures is None:
            figures = (_NO_FLOATS, _NO_FLOATS, _NO_FLOATS, _NO_FLOATS, _NO_INTS)
        self.lows, self.highs, self.sums, self.squares, self.counts = figures

    def get(self, path: str) -> _Stats | None:
        row = self.rows.get(path)
        if row is None:
            return None
        count = int(self.counts[row])
        low, high = float(self.lows[row]), float(self.highs[row])
        span = (low, high, count == self.width) if count else None
        return _Stats(span, float(self.sums[row]), float(self.squares[row]), count)


_NO_FLOATS = np.empty(0)
_NO_INTS = np.empty(0, np.int64)


def _column_stats(
    metrics: dict[str, MetricColumn],
) -> tuple[_ColumnStats, npt.NDArray[np.float64] | None]:
    """Per-column figures of a wide batch with a few whole-matrix operations, and the matrix
    of its values (one row per column, in order; ``None`` when the columns differ in length).

    Columns of one length (the usual training loop: every key at every step) are stacked into
    one matrix; per-series NumPy calls cost microseconds each, a thousand series per flush.
    """
    if len(metrics) < 8:
        return _ColumnStats({}), None
    columns = [np.asarray(c.values, dtype=np.float64) for c in metrics.values()]
    width = len(columns[0])
    if width == 0 or any(len(c) != width for c in columns):
        return _ColumnStats({}), None
    # (not np.stack: it makes a 2-D view of each column first, ~1 us each)
    matrix = np.concatenate(columns).reshape(len(columns), width)
    with np.errstate(over="ignore", invalid="ignore"):
        lows, highs = matrix.min(axis=1), matrix.max(axis=1)  # NaN propagates into both
        sums = matrix.sum(axis=1)
        squares = np.einsum("ij,ij->i", matrix, matrix)
    counts = np.full(len(columns), width)
    odd = np.flatnonzero(~(np.isfinite(lows) & np.isfinite(highs)))
    for row in odd.tolist():  # a series with NaN or inf: its finite values only
        finite = matrix[row][np.isfinite(matrix[row])]
        counts[row] = len(finite)
        with np.errstate(over="ignore"):
            sums[row], squares[row] = finite.sum(), np.dot(finite, finite)
        lows[row], highs[row] = (finite.min(), finite.max()) if len(finite) else (0.0, 0.0)
    rows = dict(zip(metrics, range(len(columns)), strict=True))
    return _ColumnStats(rows, width, (lows, highs, sums, squares, counts)), matrix


def _nan_to_none(value: float) -> float | None:
    return None if value != value else value


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _step_text(micro: int) -> str:
    return f"{micro / MICRO:g}"


_EMPTY = FloatPoints.empty()  # never written to: open regions are replaced, not grown in place


class RunWriter:
    """Writes batches into one run of the store."""

    def __init__(self, store: Store, run_pk: int) -> None:
        self.store = store
        self.run_pk = run_pk
        self._revision = -1
        self._fork_step: int | None = None
        self._project_id = 0
        self._attrs: dict[str, tuple[int, str]] = {}
        self._floats: dict[int, _FloatSeries] = {}
        self._new_wide: dict[int, _NewWide] = {}  # series whose state _floats does not hold yet
        self._points: dict[int, _PointSeries] = {}
        self._first_types: dict[str, str] = {}

    # -- entry points ------------------------------------------------------------------------

    def apply(
        self,
        batch: Batch,
        *,
        durable: bool = False,
        guard: Callable[[Any], None] | None = None,
        before_commit: Callable[[Any, list[IngestIssue]], None] | None = None,
    ) -> list[IngestIssue]:
        """Apply ``batch`` in one transaction and return the items that were rejected.

        The transaction holds the run's lock from its start (every writer of the run, in any
        process or server replica, waits for it), so what it reads of the run is what it
        writes over. ``guard(conn)`` runs first under that lock and may raise to write
        nothing; ``before_commit(conn, issues)`` runs last, inside the transaction, to record
        what the batch did atomically with it (e.g. the ingest request's status).
        """
        issues = _Issues()
        now = int(time.time() * 1000)
        self._first_types = batch.first_types
        try:
            with self.store.write(durable=durable) as conn:
                self._sync_cache(conn)
                if guard is not None:
                    guard(conn)
                size = 0
                for op in batch.ops:
                    if isinstance(op, Assign):
                        size += self._assign(conn, op, issues)
                    else:
                        self._modify_set(conn, op, issues)
                size += self._append_metrics(conn, batch.metrics, issues)
                if batch.previews:
                    self._append_previews(conn, batch.previews, issues)
                if batch.points:
                    size += self._append_points(conn, batch.points, issues)
                if batch.blobs:
                    conn.executemany(
                        "INSERT OR REPLACE INTO blobs (project_id, path, sha256, size, mime_type, "
                        "created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                        [(self._project_id, *blob, now) for blob in batch.blobs],
                    )
                    size += sum(blob[2] for blob in batch.blobs)
                ping = batch.ping_ms if batch.ping_ms is not None else now
                conn.execute(
                    "UPDATE runs SET revision = revision + 1, modification_ms = ?, "
                    "ping_ms = MAX(ping_ms, ?), size_bytes = size_bytes + ?, closed = 0 "
                    "WHERE id = ?",
                    (now, ping, size, self.run_pk),
                )
                self._revision += 1
                result = issues.result()
                if before_commit is not None:
                    before_commit(conn, result)
        except BaseException:
            self._forget()  # memory may be ahead of what was rolled back
            raise
        return result

    def ping(self) -> None:
        """Record that the logging process is alive (``sys/ping_time``)."""
        with self.store.write() as conn:
            conn.execute(
                "UPDATE runs SET ping_ms = MAX(ping_ms, ?), closed = 0 WHERE id = ?",
                (int(time.time() * 1000), self.run_pk),
            )

    # -- cache -------------------------------------------------------------------------------

    def _forget(self) -> None:
        self._revision = -1
        self._attrs.clear()
        self._floats.clear()
        self._new_wide.clear()
        self._points.clear()

    def _sync_cache(self, conn: sqlite3.Connection) -> None:
        sql = "SELECT revision, fork_step, project_id FROM runs WHERE id = ?"
        if self.store.dialect == "postgresql":
            # the run's row lock: writers of one run (other processes, other replicas) take
            # turns, writers of other runs never wait; SQLite's BEGIN IMMEDIATE already
            # serializes every writer. NO KEY UPDATE (what the UPDATE of runs below takes
            # anyway) leaves inserts that merely reference the run (forks) free to proceed.
            sql += " FOR NO KEY UPDATE"
        row = conn.execute(sql, (self.run_pk,)).fetchone()
        if row is None:
            raise LookupError(f"run {self.run_pk} vanished from the store")
        if row[0] == self._revision:
            return
        self._forget()
        self._revision = int(row[0])
        self._fork_step = row[1]
        self._project_id = int(row[2])
        self._attrs = {
            path: (attr_id, type_)
            for attr_id, path, type_ in conn.execute(
                "SELECT id, path, type FROM attributes WHERE run_id = ?", (self.run_pk,)
            )
        }

    def _attribute(
        self, conn: sqlite3.Connection, path: str, type_: str, issues: _Issues
    ) -> int | None:
        """The id of ``path`` with ``type_``, creating it; None (and an issue) on a type clash.

        A path keeps its first type: the stored one, or for a new path the type this batch
        logged first (``Batch.first_types``). Nothing stored under the path is touched.
        """
        found = self._attrs.get(path)
        if found is not None:
            if found[1] != type_:
                self._type_conflict(path, found[1], type_, issues)
                return None
            return found[0]
        first = self._first_types.get(path)
        if first is not None and first != type_:
            self._type_conflict(path, first, type_, issues)
            return None
        if not self._writable(path, type_, issues):
            return None
        cursor = conn.execute(
            "INSERT INTO attributes (run_id, path, type, count) VALUES (?, ?, ?, ?)",
            (self.run_pk, path, type_, 0 if type_ in SERIES_TYPES else None),
        )
        attr_id = int(cursor.lastrowid or 0)
        self._attrs[path] = (attr_id, type_)
        return attr_id

    @staticmethod
    def _type_conflict(path: str, first: str, later: str, issues: _Issues) -> None:
        issues.add(
            "FIELD_TYPE_CONFLICTING",
            f"attribute {path!r} is a {first}; a {later} value logged to it later was refused "
            f"(a path keeps its first type: log the {later} under another path)",
            path,
        )

    @staticmethod
    def _writable(path: str, type_: str, issues: _Issues) -> bool:
        """Path rules for a new attribute (existing paths passed them already)."""
        if not path:
            issues.add("FIELD_PATH_EMPTY", "attribute path is empty", path)
            return False
        try:
            size = len(path.encode("utf-8"))
        except UnicodeEncodeError:
            issues.add("FIELD_PATH_INVALID", f"attribute path {path!r} is not valid UTF-8", path)
            return False
        if size > MAX_PATH_BYTES:
            issues.add(
                "FIELD_PATH_EXCEEDS_SIZE_LIMIT",
                f"attribute path {path[:60]!r}… is over {MAX_PATH_BYTES} UTF-8 bytes",
                path,
            )
            return False
        if path.startswith("sys/"):
            issues.add(
                "FIELD_PATH_NON_WRITABLE",
                f"{path!r} is a read-only system attribute (only sys/tags and sys/group_tags "
                "can be changed)",
                path,
            )
            return False
        return True

    # -- single values -----------------------------------------------------------------------

    def _assign(self, conn: sqlite3.Connection, op: Assign, issues: _Issues) -> int:
        if op.path.startswith("sys/"):
            self._writable(op.path, op.type, issues)  # reports FIELD_PATH_NON_WRITABLE
            return 0
        num: object = None
        text: str | None = None
        value = op.value
        if op.type == "float":
            num = _nan_to_none(float(value))
        elif op.type in ("int", "bool"):
            num = int(value)
        elif op.type == "datetime":
            if not MIN_DATETIME_MS <= int(value) <= MAX_DATETIME_MS:
                issues.add(
                    "DATETIME_VALUE_OUT_OF_RANGE",
                    f"datetime for {op.path!r} is outside the years 1-9999",
                    op.path,
                )
                return 0
            num = int(value)
        elif op.type == "string":
            text = str(value)
            if len(text.encode()) > STRING_LIMIT:
                issues.add(
                    "STRING_VALUE_EXCEEDS_SIZE_LIMIT",
                    f"string for {op.path!r} is over 64 KB; log long text as a file",
                    op.path,
                )
                return 0
        elif op.type == "string_set":
            text = json.dumps(sorted(value), ensure_ascii=False)
            if len(text.encode()) > STRING_LIMIT:
                issues.add(
                    "STRING_SET_EXCEEDS_SIZE_LIMIT",
                    f"string set for {op.path!r} is over 64 KB",
                    op.path,
                )
                return 0
        elif op.type == "artifact":
            text = json.dumps(value, ensure_ascii=False)  # {"hash": ..., "files": [...]}
        elif op.type == "file":
            text = json.dumps(value, ensure_ascii=False)
            if len(text.encode()) > FILE_REF_LIMIT:
                issues.add(
                    "FILE_REF_EXCEEDS_SIZE_LIMIT",
                    f"file reference for {op.path!r} has over 4 KB of metadata",
                    op.path,
                )
                return 0
        else:
            issues.add(
                "FIELD_TYPE_UNSUPPORTED", f"cannot assign a {op.type} to {op.path!r}", op.path
            )
            return 0
        attr_id = self._attribute(conn, op.path, op.type, issues)
        if attr_id is None:
            return 0
        conn.execute("UPDATE attributes SET num = ?, text = ? WHERE id = ?", (num, text, attr_id))
        return 8 + (len(text) if text else 0)

    def _modify_set(self, conn: sqlite3.Connection, op: ModifySet, issues: _Issues) -> None:
        attr_id = self._attribute(conn, op.path, "string_set", issues)
        if attr_id is None:
            return
        row = conn.execute("SELECT text FROM attributes WHERE id = ?", (attr_id,)).fetchone()
        current = set(json.loads(row[0])) if row and row[0] else set()
        current.update(op.add)
        current.difference_update(op.remove)
        text = json.dumps(sorted(current), ensure_ascii=False)
        if len(text.encode()) > STRING_LIMIT:
            issues.add(
                "STRING_SET_EXCEEDS_SIZE_LIMIT",
                f"string set {op.path!r} would exceed 64 KB",
                op.path,
            )
            return
        conn.execute("UPDATE attributes SET text = ? WHERE id = ?", (text, attr_id))

    # -- float series ------------------------------------------------------------------------

    def _new_float_series(
        self, conn: sqlite3.Connection, metrics: dict[str, MetricColumn]
    ) -> set[int]:
        """Create the batch's new float series in two statements (not one per series).

        Returns the ids created whose state is known without reading it back (no point, no
        chunk, no preview): a wide first flush then costs no per-series statement. Ids are
        checked against leftover chunk and preview rows (an id reused after a delete).
        """
        new = [
            path
            for path in metrics
            if path not in self._attrs
            and self._first_types.get(path, "float_series") == "float_series"
            and self._writable(path, "float_series", _Issues())  # _attribute reports
        ]
        if len(new) < 2:
            return set()  # one new series: _attribute inserts it as before
        conn.executemany(
            "INSERT INTO attributes (run_id, path, type, count) VALUES (?, ?, 'float_series', 0)",
            [(self.run_pk, path) for path in new],
        )
        ids: list[int] = []
        for attr_id, path in conn.execute(
            "SELECT id, path FROM attributes WHERE run_id = ? AND path IN "
            "(SELECT value FROM json_each(?))",
            (self.run_pk, json.dumps(new)),
        ).fetchall():
            self._attrs[path] = (int(attr_id), "float_series")
            ids.append(int(attr_id))
        if not ids:
            return set()
        return set() if self._leftover_rows(conn, min(ids), max(ids)) else set(ids)

    def _float_series(
        self, conn: sqlite3.Connection, attr_id: int, fresh: set[int] | None = None
    ) -> _FloatSeries:
        state = self._floats.get(attr_id)
        if state is not None:
            return state
        wide = self._new_wide.pop(attr_id, None)
        if wide is not None:
            state = self._floats[attr_id] = wide.state(attr_id)
            return state
        if fresh and attr_id in fresh:
            empty = _EMPTY
            state = _FloatSeries(
                attr_id=attr_id,
                count=0,
                last_step=-1,
                last_ts=-(2**62),
                last_value=math.nan,
                fmin=math.inf,
                fmax=-math.inf,
                fsum=0.0,
                fsumsq=0.0,
                fcount=0,
                chunk_no=0,
                chunk_steps=empty.steps,
                chunk_values=empty.values,
                chunk_ts=empty.timestamps,
                has_previews=False,
            )
            self._floats[attr_id] = state
            return state
        row = conn.execute(
            "SELECT count, last_step, last_ts, num, fmin, fmax, fsum, fsumsq, fcount "
            "FROM attributes WHERE id = ?",
            (attr_id,),
        ).fetchone()
        lo = attr_id << CHUNK_BITS
        # the last rows of the series: its open pieces (short rows) after its last full chunk
        tail = conn.execute(
            "SELECT id, n, ts_last, step_first FROM chunks WHERE id BETWEEN ? AND ? "
            "ORDER BY id DESC LIMIT ?",
            (lo, lo + (1 << CHUNK_BITS) - 1, MAX_PIECES + 1),
        ).fetchall()
        has_previews = (
            conn.execute("SELECT 1 FROM previews WHERE attr_id = ? LIMIT 1", (attr_id,)).fetchone()
            is not None
        )
        last_chunk = tail[0] if tail else None
        pieces = [row for row in itertools.takewhile(lambda r: r[1] < CHUNK_POINTS, tail)]
        if last_chunk is None:
            chunk_no = 0
            open_points = FloatPoints.empty()
        elif not pieces:
            chunk_no = int(last_chunk[0]) - lo + 1
            open_points = FloatPoints.empty()
        else:
            chunk_no = int(pieces[-1][0]) - lo
            open_points = read_float_points(conn, attr_id, int(pieces[-1][3]), None)
        count, last_step, _, num, fmin, fmax, fsum, fsumsq, fcount = row
        state = _FloatSeries(
            attr_id=attr_id,
            count=count or 0,
            last_step=-1 if last_step is None else last_step,
            # timestamps must not decrease among own points; inherited ones do not count
            last_ts=-(2**62) if last_chunk is None else int(last_chunk[2]),
            last_value=_none_to_nan(num),
            fmin=math.inf if fmin is None else fmin,
            fmax=-math.inf if fmax is None else fmax,
            fsum=fsum or 0.0,
            fsumsq=fsumsq or 0.0,
            fcount=fcount or 0,
            chunk_no=chunk_no,
            chunk_steps=open_points.steps.copy(),
            chunk_values=open_points.values.copy(),
            chunk_ts=open_points.timestamps.copy(),
            has_previews=has_previews,
            pieces=len(pieces),
        )
        self._floats[attr_id] = state
        return state

    def _append_metrics(
        self, conn: sqlite3.Connection, metrics: dict[str, MetricColumn], issues: _Issues
    ) -> int:
        chunk_rows: list[tuple[object, ...]] = []
        dropped_pieces: list[tuple[int, int]] = []
        agg_rows: list[tuple[object, ...]] = []
        memo = _Memo()
        stats, matrix = _column_stats(metrics)
        done, stored = self._append_new_wide(conn, metrics, stats, matrix)
        if done:
            metrics = {path: column for path, column in metrics.items() if path not in done}
        fresh = self._new_float_series(conn, metrics)
        for path, column in metrics.items():
            attr_id = self._attribute(conn, path, "float_series", issues)
            if attr_id is None:
                continue
            state = self._floats.get(attr_id) or self._float_series(conn, attr_id, fresh)
            steps = np.asarray(column.steps, dtype=np.int64)
            values = np.asarray(column.values, dtype=np.float64)
            stamps = np.asarray(column.timestamps, dtype=np.int64)
            hint = stats.get(path)
            if not self._in_order(state, steps, stamps, memo):
                hint = None  # points may be dropped: the column's figures no longer apply
                steps, values, stamps = self._filter_points(
                    conn, path, state, steps, values, stamps, issues
                )
            if len(steps) == 0:
                continue
            if state.has_previews:
                conn.execute(
                    "DELETE FROM previews WHERE attr_id = ? AND step <= ?",
                    (attr_id, int(steps[-1])),
                )
                state.has_previews = (
                    conn.execute(
                        "SELECT 1 FROM previews WHERE attr_id = ? LIMIT 1", (attr_id,)
                    ).fetchone()
                    is not None
                )
            rows, span, dropped = self._extend_chunks(state, steps, values, stamps, memo, hint)
            chunk_rows.extend(rows)
            if dropped is not None:
                dropped_pieces.append(dropped)
            agg_rows.append(self._update_aggregates(state, steps, values, stamps, span, hint))
            stored += len(steps)
        if dropped_pieces:
            conn.executemany("DELETE FROM chunks WHERE id BETWEEN ? AND ?", dropped_pieces)
        if chunk_rows:
            conn.executemany(
                "INSERT OR REPLACE INTO chunks (id, n, step_first, step_last, ts_first, ts_last, "
                "vmin, vmax, steps, vals, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                chunk_rows,
            )
            conn.executemany(FLOAT_AGGREGATES_UPDATE, agg_rows)
        return stored * 24

    def _append_new_wide(
        self,
        conn: sqlite3.Connection,
        metrics: dict[str, MetricColumn],
        stats: _ColumnStats,
        matrix: npt.NDArray[np.float64] | None,
    ) -> tuple[set[str], int]:
        """A wide flush's new series in two statements: one attribute insert carrying their
        aggregates and one chunk insert (see ``wide_batch.py``); returns the paths stored this
        way and their points. The rest of the batch takes the series-by-series path.

        Applies to the usual first flush of a training loop: new float series sharing one steps
        and one timestamps array (one ``log_metrics`` call per step with the same keys), every
        point acceptable and every value finite. Embedded store only: the ids are chosen here
        (``max(id)`` + 1 onwards, what SQLite would choose), under the write lock.
        """
        if matrix is None or self.store.dialect != "sqlite":
            return set(), 0
        first = next(iter(metrics.values()))
        steps, stamps = first.steps, first.timestamps
        width = matrix.shape[1]
        unused = _Issues()
        all_finite = (stats.counts == width).tolist()
        picks = [
            row
            for row, (path, column) in enumerate(metrics.items())
            if column.steps is steps
            and column.timestamps is stamps
            and path not in self._attrs
            and all_finite[row]
            and self._first_types.get(path, "float_series") == "float_series"
            and self._writable(path, "float_series", unused)  # the other path reports
        ]
        if len(picks) < 8:
            return set(), 0
        steps = np.asarray(steps, dtype=np.int64)
        stamps = np.asarray(stamps, dtype=np.int64)
        fork = self._fork_step
        if (
            int(steps[0]) < 0  # NO_STEP: filled in point by point
            or int(steps[-1]) >= MAX_STEP_MICRO
            or (fork is not None and int(steps[0]) <= fork)
            or not _Memo().ordered(steps, stamps)
        ):
            return set(), 0
        (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM attributes").fetchone()
        ids = np.arange(int(top) + 1, int(top) + 1 + len(picks), dtype=np.int64)
        if self._leftover_rows(conn, int(ids[0]), int(ids[-1])):
            return set(), 0
        paths = list(metrics)
        picked = [paths[row] for row in picks]
        everything = len(picks) == len(matrix)
        figures = [f if everything else f[picks] for f in (stats.lows, stats.highs)]
        figures += [f if everything else f[picks] for f in (stats.sums, stats.squares)]
        picked_values = matrix if everything else matrix[picks]  # no copy of all
        series = new_series_rows(self.run_pk, picked, ids, picked_values, steps, stamps, figures)
        conn.executemany(NEW_SERIES_INSERT, series.attributes)
        conn.executemany(
            "INSERT INTO chunks (id, n, step_first, step_last, ts_first, ts_last, vmin, vmax, "
            "steps, vals, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            series.chunks,
        )
        # each series' state for the next flush, made when a flush reaches the series; the open
        # points' steps and timestamps are one shared array, as the per-series path leaves them
        # (the next flush's memo relies on it)
        keep = width - width % CHUNK_POINTS
        wide = _NewWide(
            int(ids[0]), series.attributes, series.values, width, steps[keep:], stamps[keep:]
        )
        id_list = ids.tolist()
        self._attrs.update(zip(picked, [(i, "float_series") for i in id_list], strict=True))
        self._new_wide.update(dict.fromkeys(id_list, wide))
        return set(picked), len(picked) * width

    @staticmethod
    def _leftover_rows(conn: sqlite3.Connection, lo: int, hi: int) -> bool:
        """Whether chunk or preview rows of attribute ids ``lo``..``hi`` exist (ids reused
        after a delete)."""
        return bool(
            conn.execute(
                "SELECT 1 FROM chunks WHERE id BETWEEN ? AND ? LIMIT 1",
                (lo << CHUNK_BITS, ((hi + 1) << CHUNK_BITS) - 1),
            ).fetchone()
            or conn.execute(
                "SELECT 1 FROM previews WHERE attr_id BETWEEN ? AND ? LIMIT 1", (lo, hi)
            ).fetchone()
        )

    def _in_order(self, state: _FloatSeries, steps: Int64s, stamps: Int64s, memo: _Memo) -> bool:
        """The common case, checked with a few vector operations: every point is acceptable."""
        first = int(steps[0])
        if first <= state.last_step or int(stamps[0]) < state.last_ts:
            return False
        if self._fork_step is not None and first <= self._fork_step:
            return False
        if int(steps[-1]) >= MAX_STEP_MICRO:
            return False
        return memo.ordered(steps, stamps)

    def _filter_points(
        self,
        conn: sqlite3.Connection,
        path: str,
        state: _FloatSeries,
        steps: Int64s,
        values: Float64s,
        stamps: Int64s,
        issues: _Issues,
    ) -> tuple[Int64s, Float64s, Int64s]:
        """Point by point: assign missing steps, report and drop the points the rules reject."""
        keep: list[int] = []
        last_step, last_ts = state.last_step, state.last_ts
        stored: dict[int, float] | None = None
        fork = self._fork_step
        out_steps = steps.copy()
        for i in range(len(steps)):
            step = int(steps[i])
            value = float(values[i])
            stamp = int(stamps[i])
            if step == NO_STEP:
                step = max(last_step, fork if fork is not None else -1)
                step = step + MICRO if step >= 0 else 0
                out_steps[i] = step
            if step >= MAX_STEP_MICRO:
                issues.add(
                    "SERIES_STEP_TOO_LARGE",
                    f"step {_step_text(step)} of {path!r} is not below 1e12",
                    path,
                )
            elif fork is not None and step <= fork:
                issues.add(
                    "SERIES_STEP_NOT_AFTER_FORK_POINT",
                    f"step {_step_text(step)} of {path!r} is not after the fork step "
                    f"{_step_text(fork)}; a forked run's own points start after it",
                    path,
                )
            elif step <= last_step:
                if stored is None:
                    stored = self._stored_values(conn, state, int(steps.min()), last_step)
                    for j in keep:  # accepted earlier in this batch, not yet written
                        stored[int(out_steps[j])] = float(values[j])
                previous = stored.get(step)
                if previous is not None and (
                    previous == value or (previous != previous and value != value)
                ):
                    issues.add(
                        "SERIES_POINT_DUPLICATE",
                        f"point at step {_step_text(step)} of {path!r} was already stored; ignored",
                        path,
                        WARNING,
                    )
                else:
                    issues.add(
                        "SERIES_STEP_NON_INCREASING",
                        f"step {_step_text(step)} of {path!r} is not after the last step "
                        f"{_step_text(last_step)}; steps of a series must strictly increase",
                        path,
                    )
            elif stamp < last_ts:
                issues.add(
                    "SERIES_TIMESTAMP_DECREASING",
                    f"timestamp of step {_step_text(step)} of {path!r} is older than the "
                    "series' last point",
                    path,
                )
            else:
                keep.append(i)
                last_step, last_ts = step, stamp
                if stored is not None:
                    stored[step] = value
        index = np.asarray(keep, dtype=np.int64)
        return out_steps[index], values[index], stamps[index]

    def _stored_values(
        self, conn: sqlite3.Connection, state: _FloatSeries, lo: int, hi: int
    ) -> dict[int, float]:
        points = read_float_points(conn, state.attr_id, max(lo, 0), hi)
        return dict(zip(points.steps.tolist(), points.values.tolist(), strict=True))

    def _extend_chunks(
        self,
        state: _FloatSeries,
        steps: Int64s,
        values: Float64s,
        stamps: Int64s,
        memo: _Memo,
        hint: _Stats | None = None,
    ) -> tuple[list[tuple[object, ...]], tuple[float, float, bool] | None, tuple[int, int] | None]:
        """Store new points without rewriting stored ones, merging later.

        A flush appends its points as one new short row (a *piece*) after the series' last
        full chunk. When the open points (every piece plus the new ones) reach a full chunk, or
        the pieces reach ``MAX_PIECES``, they are merged: written again as full chunks plus one
        piece for the rest, numbered from the first piece, and the pieces left over are
        deleted. A point is so written about twice (as a piece, then in its full chunk) instead
        of once per flush until its chunk fills, which rewrote ~500 points per series per flush.
        Readers need no change: a series is its rows in id order, whatever their sizes.

        Returns the chunk rows to write (``INSERT OR REPLACE``), the finite range of the rows
        written (it covers every new point) with whether all their values are finite, and the
        id range of pieces to delete (or ``None``).
        """
        n_open = len(state.chunk_steps)
        if hint is not None and n_open == 0 and len(steps) < CHUNK_POINTS:
            # the usual flush of a series with no open points: one new piece, figures known
            return self._one_piece(state, steps, values, stamps, memo, hint)
        all_steps = memo.concat(state.chunk_steps, steps)
        all_ts = memo.concat(state.chunk_ts, stamps)
        all_values = (
            np.concatenate([state.chunk_values, values]) if len(state.chunk_values) else values
        )
        total = len(all_steps)
        base = state.attr_id << CHUNK_BITS
        merge = total >= CHUNK_POINTS or state.pieces >= MAX_PIECES
        rows: list[tuple[object, ...]] = []
        lo = hi = math.nan
        all_finite = True
        start = 0 if merge else n_open
        number = state.chunk_no if merge else state.chunk_no + state.pieces
        while start < total:
            end = min(start + CHUNK_POINTS, total)
            s = memo.piece(all_steps, start, end)
            t = memo.piece(all_ts, start, end)
            v = all_values[start:end]
            if hint is not None and start == 0 and end == total and n_open == 0:
                span = hint.span  # the row holds exactly the new points: figures known
            else:
                span = _finite_range(v)
            if span is None:
                all_finite = False
            else:
                lo = span[0] if lo != lo else min(lo, span[0])
                hi = span[1] if hi != hi else max(hi, span[1])
                all_finite = all_finite and span[2]
            rows.append(
                (
                    base + number,
                    end - start,
                    int(s[0]),
                    int(s[-1]),
                    int(t[0]),
                    int(t[-1]),
                    None if span is None else span[0],
                    None if span is None else span[1],
                    memo.encoded(s),
                    encode_floats(v),
                    memo.encoded(t),
                )
            )
            number += 1
            start = end
        dropped: tuple[int, int] | None = None
        if merge:
            old_end = state.chunk_no + state.pieces  # pieces were numbered up to old_end - 1
            if old_end > number:
                dropped = (base + number, base + old_end - 1)
            keep_from = total - total % CHUNK_POINTS
            state.chunk_no += total // CHUNK_POINTS
            state.pieces = 1 if keep_from < total else 0
        else:
            keep_from = 0
            state.pieces += 1
        state.chunk_steps = memo.piece(all_steps, keep_from, total)
        state.chunk_values = all_values[keep_from:]
        state.chunk_ts = memo.piece(all_ts, keep_from, total)
        return rows, (None if lo != lo else (lo, hi, all_finite)), dropped

    @staticmethod
    def _one_piece(
        state: _FloatSeries,
        steps: Int64s,
        values: Float64s,
        stamps: Int64s,
        memo: _Memo,
        hint: _Stats,
    ) -> tuple[list[tuple[object, ...]], tuple[float, float, bool] | None, None]:
        """:meth:`_extend_chunks` when the series has no open points and the new ones fit in
        one piece: that row, without the general path's slicing."""
        span = hint.span
        row = (
            (state.attr_id << CHUNK_BITS) + state.chunk_no + state.pieces,
            len(steps),
            int(steps[0]),
            int(steps[-1]),
            int(stamps[0]),
            int(stamps[-1]),
            None if span is None else span[0],
            None if span is None else span[1],
            memo.encoded(steps),
            encode_floats(values),
            memo.encoded(stamps),
        )
        state.pieces += 1
        state.chunk_steps, state.chunk_values, state.chunk_ts = steps, values, stamps
        return [row], span, None

    def _update_aggregates(
        self,
        state: _FloatSeries,
        steps: Int64s,
        values: Float64s,
        stamps: Int64s,
        span: tuple[float, float, bool] | None,
        hint: _Stats | None = None,
    ) -> tuple[object, ...]:
        """Fold new points into the aggregates; ``span`` comes from :meth:`_extend_chunks`."""
        if hint is not None:  # the new points' figures, computed for every column at once
            if hint.fcount:
                state.fsum += hint.fsum
                state.fsumsq += hint.fsumsq
                state.fmin = min(state.fmin, hint.span[0])  # type: ignore[index]
                state.fmax = max(state.fmax, hint.span[1])  # type: ignore[index]
                state.fcount += hint.fcount
        elif span is not None:
            finite = values if span[2] else values[np.isfinite(values)]
            with np.errstate(over="ignore"):  # huge values: sums become inf, as they should
                state.fsum += float(finite.sum())
                state.fsumsq += float(np.dot(finite, finite))
            # the span may include older points of the open chunk: harmless for min and max
            state.fmin = min(state.fmin, span[0])
            state.fmax = max(state.fmax, span[1])
            state.fcount += len(finite)
        state.count += len(values)
        state.last_step = int(steps[-1])
        state.last_ts = int(stamps[-1])
        state.last_value = float(values[-1])
        has_finite = state.fcount > 0
        return (
            _nan_to_none(state.last_value),
            state.count,
            state.last_step,
            state.last_ts,
            state.fmin if has_finite else None,
            state.fmax if has_finite else None,
            state.fsum if has_finite else None,
            state.fsumsq if has_finite else None,
            state.fcount,
            state.attr_id,
        )

    def _append_previews(
        self, conn: sqlite3.Connection, previews: list[PreviewPoint], issues: _Issues
    ) -> None:
        rows = []
        for point in previews:
            attr_id = self._attribute(conn, point.path, "float_series", issues)
            if attr_id is None:
                continue
            state = self._float_series(conn, attr_id)
            fork = self._fork_step
            if point.step == NO_STEP:
                point.step = max(state.last_step, -1 if fork is None else fork) + MICRO
            if point.step <= state.last_step:
                issues.add(
                    "SERIES_PREVIEW_STEP_NOT_AFTER_LAST_COMMITTED_STEP",
                    f"preview at step {_step_text(point.step)} of {point.path!r} is not after "
                    f"the last committed step {_step_text(state.last_step)}",
                    point.path,
                )
                continue
            if fork is not None and point.step <= fork:
                issues.add(
                    "SERIES_STEP_NOT_AFTER_FORK_POINT",
                    f"preview at step {_step_text(point.step)} of {point.path!r} is not after "
                    f"the fork step {_step_text(fork)}",
                    point.path,
                )
                continue
            state.has_previews = True
            rows.append(
                (attr_id, point.step, point.timestamp, _nan_to_none(point.value), point.completion)
            )
        conn.executemany(
            "INSERT OR REPLACE INTO previews (attr_id, step, ts, value, completion) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )

    # -- string, histogram and file series ---------------------------------------------------

    def _point_series(self, conn: sqlite3.Connection, attr_id: int) -> _PointSeries:
        state = self._points.get(attr_id)
        if state is None:
            count, last_step = conn.execute(
                "SELECT count, last_step FROM attributes WHERE id = ?", (attr_id,)
            ).fetchone()
            own_last = conn.execute(  # inherited points do not bound own timestamps
                "SELECT ts FROM points WHERE attr_id = ? ORDER BY step DESC LIMIT 1", (attr_id,)
            ).fetchone()
            state = _PointSeries(
                attr_id,
                count or 0,
                -1 if last_step is None else last_step,
                -(2**62) if own_last is None else own_last[0],
            )
            self._points[attr_id] = state
        return state

    def _append_points(
        self, conn: sqlite3.Connection, points: Iterable[PointAppend], issues: _Issues
    ) -> int:
        rows: list[tuple[int, int, int, str]] = []
        touched: dict[int, tuple[_PointSeries, str]] = {}
        backfilled: dict[tuple[int, int], str] = {}  # file-series points below the last step
        size = 0
        fork = self._fork_step
        for point in points:
            if point.type == "string_series" and len(point.value.encode()) >= STRING_SERIES_LIMIT:
                issues.add(
                    "STRING_VALUE_EXCEEDS_SIZE_LIMIT",
                    f"string-series value of {point.path!r} is 1 MiB or more",
                    point.path,
                )
                continue
            attr_id = self._attribute(conn, point.path, point.type, issues)
            if attr_id is None:
                continue
            state = self._point_series(conn, attr_id)
            step = point.step
            if step == NO_STEP:
                step = max(state.last_step, -1 if fork is None else fork)
                step = step + MICRO if step >= 0 else 0
            if step >= MAX_STEP_MICRO:
                issues.add(
                    "SERIES_STEP_TOO_LARGE", f"step of {point.path!r} is not below 1e12", point.path
                )
                continue
            if fork is not None and step <= fork:
                issues.add(
                    "SERIES_STEP_NOT_AFTER_FORK_POINT",
                    f"step {_step_text(step)} of {point.path!r} is not after the fork step "
                    f"{_step_text(fork)}",
                    point.path,
                )
                continue
            if step <= state.last_step:
                stored = conn.execute(
                    "SELECT value FROM points WHERE attr_id = ? AND step = ?", (attr_id, step)
                ).fetchone()
                pending = backfilled.get((attr_id, step))
                if pending is not None:
                    stored = (pending,)
                if stored is not None and stored[0] == point.value:
                    issues.add(
                        "SERIES_POINT_DUPLICATE",
                        f"point at step {_step_text(step)} of {point.path!r} was already stored",
                        point.path,
                        WARNING,
                    )
                elif point.type == "file_series" and stored is None:
                    # Neptune keeps every file of a file series whatever the step order (3, 2, 1
                    # keeps three files); the series' last value stays the one at its last step.
                    if point.timestamp < state.last_ts:
                        issues.add(
                            "SERIES_TIMESTAMP_DECREASING",
                            f"timestamp of step {_step_text(step)} of {point.path!r} is older "
                            "than the series' last point",
                            point.path,
                        )
                        continue
                    state.count += 1
                    state.last_ts = point.timestamp
                    backfilled[(attr_id, step)] = point.value
                    rows.append((attr_id, step, point.timestamp, point.value))
                    if attr_id not in touched:  # the series' last value stays as stored
                        text = conn.execute(
                            "SELECT text FROM attributes WHERE id = ?", (attr_id,)
                        ).fetchone()
                        touched[attr_id] = (state, text[0])
                    size += 16 + len(point.value)
                elif point.type == "file_series":
                    issues.add(
                        "SERIES_STEP_NON_INCREASING",
                        f"file series {point.path!r} already holds a different file at step "
                        f"{_step_text(step)}; log each file at its own step",
                        point.path,
                    )
                else:
                    issues.add(
                        "SERIES_STEP_NON_INCREASING",
                        f"step {_step_text(step)} of {point.path!r} is not after the last step "
                        f"{_step_text(state.last_step)}",
                        point.path,
                    )
                continue
            if point.timestamp < state.last_ts:
                issues.add(
                    "SERIES_TIMESTAMP_DECREASING",
                    f"timestamp of step {_step_text(step)} of {point.path!r} is older than the "
                    "series' last point",
                    point.path,
                )
                continue
            state.count += 1
            state.last_step = step
            state.last_ts = point.timestamp
            rows.append((attr_id, step, point.timestamp, point.value))
            touched[attr_id] = (state, point.value)
            size += 16 + len(point.value)
        conn.executemany("INSERT INTO points (attr_id, step, ts, value) VALUES (?, ?, ?, ?)", rows)
        conn.executemany(
            POINT_AGGREGATES_UPDATE,
            [(last, s.count, s.last_step, s.last_ts, s.attr_id) for s, last in touched.values()],
        )
        return size
