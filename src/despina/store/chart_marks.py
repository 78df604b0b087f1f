"""Which float series hold non-finite values (NaN, ±inf), for the web UI's chart markers.

A series' attribute row counts all its points (``count``) and its finite ones (``fcount``),
over its full lineage; the difference is how many are NaN or infinite. Charts read the points
of those series only, to mark where the non-finite values are.
"""

from __future__ import annotations

from collections.abc import Sequence

from despina.store.reads import ProjectReads

__all__ = ["nonfinite_counts"]


def nonfinite_counts(reads: ProjectReads, attr_ids: Sequence[int]) -> dict[int, int]:
    """Per attribute id of ``attr_ids``, how many of its points are NaN or ±inf; series with
    none are absent from the answer."""
    found: dict[int, int] = {}
    ids = sorted(set(int(a) for a in attr_ids))
    for start in range(0, len(ids), 900):
        batch = ids[start : start + 900]
        marks = ",".join("?" * len(batch))
        for attr_id, missing in reads.conn.execute(
            f"SELECT id, count - coalesce(fcount, 0) FROM attributes WHERE id IN ({marks}) "
            "AND count > coalesce(fcount, 0)",
            batch,
        ):
            found[int(attr_id)] = int(missing)
    return found
