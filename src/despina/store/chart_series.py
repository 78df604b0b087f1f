"""Reads of one float series for the web UI's block summaries (``server/ui/summaries.py``).

The UI keeps a summary of each series in memory and must know when it went stale: the
series' chunk signature (chunk count, point count, last step) changes with every append.
"""

from __future__ import annotations

from despina.store.reads import ProjectReads
from despina.store.series import FloatPoints, chunk_rowid_range, read_float_points

__all__ = ["chunk_signature", "own_float_points"]


def chunk_signature(reads: ProjectReads, attr_id: int) -> tuple[int, int, int]:
    """``(chunks, points, last step)`` of the own points of series ``attr_id``; ``(0, 0, -1)``
    for a series without points. Reads chunk statistics only, never their blobs."""
    lo, hi = chunk_rowid_range(attr_id)
    row = reads.conn.execute(
        "SELECT count(*), coalesce(sum(n), 0), coalesce(max(step_last), -1) FROM chunks "
        "WHERE id BETWEEN ? AND ?",
        (lo, hi),
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def own_float_points(
    reads: ProjectReads,
    attr_id: int,
    step_min: int | None = None,
    step_max: int | None = None,
) -> FloatPoints:
    """The own committed points of float series ``attr_id`` with ``step_min <= step <=
    step_max`` (steps in micro-steps; None: unbounded), in step order."""
    return read_float_points(reads.conn, attr_id, step_min, step_max)
