"""Reading series points: own chunks of one attribute, and whole lineages of forked runs.

A forked run stores only its own points plus (parent, fork step). Reading "with lineage" walks
run → parent → grandparent, taking from each ancestor its points up to the fork step of the
child below it. Everything here works on an open connection so callers choose the snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from despina.store.codec import decode_floats, decode_ints
from despina.store.schema import CHUNK_BITS

__all__ = [
    "FLOAT_AGGREGATES_UPDATE",
    "POINT_AGGREGATES_UPDATE",
    "FloatPoints",
    "LineageLink",
    "chunk_rowid_range",
    "float_aggregates",
    "lineage",
    "read_float_lineage",
    "read_float_points",
    "read_float_tail",
    "read_points_lineage",
]

MAX_STEP = 2**62
"""Larger than any stored micro-step (steps are below 1e12 * 1e6)."""


@dataclass(frozen=True, slots=True)
class FloatPoints:
    """Committed float-series points in step order (steps in micro-steps, timestamps in ms)."""

    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.steps)

    @staticmethod
    def empty() -> FloatPoints:
        return FloatPoints(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))

    @staticmethod
    def concat(parts: list[FloatPoints]) -> FloatPoints:
        parts = [p for p in parts if len(p)]
        if not parts:
            return FloatPoints.empty()
        if len(parts) == 1:
            return parts[0]
        return FloatPoints(
            np.concatenate([p.steps for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.timestamps for p in parts]),
        )


@dataclass(frozen=True, slots=True)
class LineageLink:
    """One run of a lineage and the highest step it contributes (None: all its points)."""

    run_pk: int
    experiment_name: str | None
    upper_step: int | None


def chunk_rowid_range(attr_id: int) -> tuple[int, int]:
    """The first and last chunk row id an attribute can own."""
    first = attr_id << CHUNK_BITS
    return first, first + (1 << CHUNK_BITS) - 1


def lineage(conn: sqlite3.Connection, run_pk: int) -> list[LineageLink]:
    """The run and its ancestors, the run first; each ancestor bounded by its child's fork step."""
    links: list[LineageLink] = []
    upper: int | None = None
    current: int | None = run_pk
    seen: set[int] = set()
    while current is not None and current not in seen:
        seen.add(current)
        row = conn.execute(
            "SELECT parent_id, fork_step, experiment_name FROM runs WHERE id = ?", (current,)
        ).fetchone()
        if row is None:
            break
        links.append(LineageLink(current, row[2], upper))
        current, upper = row[0], row[1]
    return links


def read_float_points(
    conn: sqlite3.Connection,
    attr_id: int,
    step_min: int | None = None,
    step_max: int | None = None,
) -> FloatPoints:
    """Own committed points of one float series with ``step_min <= step <= step_max``.

    Chunks whose step range misses the window are skipped without reading their blobs.
    """
    return FloatPoints.concat(list(_chunks(conn, attr_id, step_min, step_max, newest_first=False)))


def _chunks(
    conn: sqlite3.Connection,
    attr_id: int,
    step_min: int | None,
    step_max: int | None,
    *,
    newest_first: bool,
) -> Generator[FloatPoints, None, None]:
    """The points of each chunk of a series that overlaps the step window, cut to the window."""
    lo_id, hi_id = chunk_rowid_range(attr_id)
    lo = -1 if step_min is None else step_min
    hi = MAX_STEP if step_max is None else step_max
    cursor = conn.execute(
        "SELECT n, steps, vals, ts, step_first, step_last FROM chunks "
        "WHERE id BETWEEN ? AND ? AND step_last >= ? AND step_first <= ? "
        f"ORDER BY id {'DESC' if newest_first else 'ASC'}",
        (lo_id, hi_id, lo, hi),
    )
    try:
        for n, steps_blob, vals_blob, ts_blob, first, last in cursor:
            steps = decode_ints(steps_blob, n)
            values = decode_floats(vals_blob, n)
            stamps = decode_ints(ts_blob, n)
            if first < lo or last > hi:
                keep = (steps >= lo) & (steps <= hi)
                steps, values, stamps = steps[keep], values[keep], stamps[keep]
            yield FloatPoints(steps, values, stamps)
    finally:
        cursor.close()


def read_float_tail(
    conn: sqlite3.Connection,
    attr_id: int,
    limit: int,
    step_min: int | None = None,
    step_max: int | None = None,
) -> FloatPoints:
    """The last ``limit`` own committed points of a float series with ``step_min <= step <=
    step_max``, in step order. Chunks are read newest first and only until ``limit`` points are
    found, so a short tail of a long series touches one or two chunks."""
    parts: list[FloatPoints] = []
    found = 0
    chunks = _chunks(conn, attr_id, step_min, step_max, newest_first=True)
    for part in chunks:
        parts.append(part)
        found += len(part)
        if found >= limit:
            break
    chunks.close()
    parts.reverse()
    points = FloatPoints.concat(parts)
    if len(points) > limit:
        cut = len(points) - limit
        points = FloatPoints(points.steps[cut:], points.values[cut:], points.timestamps[cut:])
    return points


def _attribute_id(conn: sqlite3.Connection, run_pk: int, path: str, type_: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM attributes WHERE run_id = ? AND path = ? AND type = ?",
        (run_pk, path, type_),
    ).fetchone()
    return None if row is None else int(row[0])


def read_float_lineage(
    conn: sqlite3.Connection,
    links: list[LineageLink],
    path: str,
    step_min: int | None = None,
    step_max: int | None = None,
) -> FloatPoints:
    """Points of series ``path`` along ``links`` (from :func:`lineage`), in step order."""
    parts: list[FloatPoints] = []
    for link in links:
        attr_id = _attribute_id(conn, link.run_pk, path, "float_series")
        if attr_id is None:
            continue
        hi = step_max
        if link.upper_step is not None:
            hi = link.upper_step if hi is None else min(hi, link.upper_step)
        if step_min is not None and hi is not None and hi < step_min:
            continue
        parts.append(read_float_points(conn, attr_id, step_min, hi))
    parts.reverse()  # ancestors hold the earlier steps
    return FloatPoints.concat(parts)


def read_points_lineage(
    conn: sqlite3.Connection,
    links: list[LineageLink],
    path: str,
    type_: str,
    step_min: int | None = None,
    step_max: int | None = None,
) -> list[tuple[int, int, str]]:
    """``(step, timestamp, value)`` rows of a string, histogram or file series along a lineage."""
    out: list[tuple[int, int, str]] = []
    for link in reversed(links):
        attr_id = _attribute_id(conn, link.run_pk, path, type_)
        if attr_id is None:
            continue
        hi = MAX_STEP if step_max is None else step_max
        if link.upper_step is not None:
            hi = min(hi, link.upper_step)
        lo = -1 if step_min is None else step_min
        out.extend(
            conn.execute(
                "SELECT step, ts, value FROM points WHERE attr_id = ? AND step BETWEEN ? AND ? "
                "ORDER BY step",
                (attr_id, lo, hi),
            )
        )
    return out


FLOAT_AGGREGATES_UPDATE = (
    "UPDATE attributes SET num = ?, count = ?, last_step = ?, last_ts = ?, fmin = ?, fmax = ?, "
    "fsum = ?, fsumsq = ?, fcount = ? WHERE id = ?"
)
"""Stores a float series' aggregates: the values of :func:`float_aggregates`, then the row id."""

POINT_AGGREGATES_UPDATE = (
    "UPDATE attributes SET text = ?, count = ?, last_step = ?, last_ts = ? WHERE id = ?"
)
"""Stores a string, histogram or file series' last value, count, last step and timestamp."""


def float_aggregates(points: FloatPoints) -> tuple[object, ...]:
    """``(last, count, last_step, last_ts, fmin, fmax, fsum, fsumsq, fcount)`` of the points."""
    if not len(points):
        return (None, 0, None, None, None, None, None, None, 0)
    finite = points.values[np.isfinite(points.values)]
    last = float(points.values[-1])
    has = len(finite) > 0
    return (
        None if last != last else last,
        len(points),
        int(points.steps[-1]),
        int(points.timestamps[-1]),
        float(finite.min()) if has else None,
        float(finite.max()) if has else None,
        _sum(finite) if has else None,
        _sum_of_squares(finite) if has else None,
        len(finite),
    )


def _sum(values: npt.NDArray[np.float64]) -> float:
    with np.errstate(over="ignore"):
        return float(values.sum())


def _sum_of_squares(values: npt.NDArray[np.float64]) -> float:
    with np.errstate(over="ignore"):  # huge values: the sum of squares is inf
        return float(np.dot(values, values))
