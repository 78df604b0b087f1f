"""Series columns of the runs table beyond their last value: ``min(path)``, ``max(path)`` and
``mean(path)`` of a float series, from the aggregates the store keeps per series (over its full
lineage, finite values only), so no point is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from despina.store.reads import ProjectReads

__all__ = ["AGGREGATES", "aggregate_sql", "parse_series_column", "series_aggregates"]

AGGREGATES = ("min", "max", "mean")
"""What a series column may show besides its last value."""

_SPEC = re.compile(r"^(min|max|mean)\((.+)\)$")

_SQL = {
    "min": "a.fmin",
    "max": "a.fmax",
    "mean": "CASE WHEN a.fcount > 0 THEN a.fsum / a.fcount END",
}


def parse_series_column(column: str) -> tuple[str, str] | None:
    """``("min", "train/loss")`` for ``"min(train/loss)"``; None for a plain attribute path."""
    found = _SPEC.match(column)
    return None if found is None else (found.group(1), found.group(2))


def aggregate_sql(aggregate: str) -> str:
    """The SQL value of ``aggregate`` over a float series' attribute row ``a``."""
    return _SQL[aggregate]


def series_aggregates(
    reads: ProjectReads, run_pks: Sequence[int], path: str, aggregate: str
) -> dict[int, float]:
    """Per run row id of ``run_pks``, ``aggregate`` of its float series ``path``; runs without
    the series, or without a finite value in it, are absent."""
    found: dict[int, float] = {}
    pks = sorted(set(int(p) for p in run_pks))
    value = aggregate_sql(aggregate)
    for start in range(0, len(pks), 900):
        batch = pks[start : start + 900]
        marks = ",".join("?" * len(batch))
        for run_pk, result in reads.conn.execute(
            f"SELECT a.run_id, {value} FROM attributes a WHERE a.run_id IN ({marks}) "
            "AND a.path = ? AND a.type = 'float_series'",
            [*batch, path],
        ):
            if result is not None:
                found[int(run_pk)] = float(result)
    return found
