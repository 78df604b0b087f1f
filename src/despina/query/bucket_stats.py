"""Buckets of float series with every statistic the wire protocol reports (query-api.md §13.1).

:mod:`despina.query.buckets` answers ``fetch_metric_buckets`` in-process from chunk statistics
(first, last, min and max only); the server's buckets endpoint also reports finite, NaN and
±inf counts and the sum of every bucket, which need every point, so it buckets points already
read by :func:`despina.query.float_batch.float_series_batch`, a few series at a time
(:func:`bucket_many`). The bucket layout is the same:
with ``n`` buckets on ``[x_from, x_to]``, bucket 0 is ``(-inf, x_from]``, bucket ``n`` is
``(x_to, +inf)`` and those between have width ``(x_to - x_from) / (n - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.query.float_batch import (
    FloatSeries,
    attribute_ids,
    chunk_bounds,
    float_series_batch,
    lineage_parts,
    part_edge,
    part_span,
)
from despina.query.lineage import lineage_links
from despina.store.sql.series_reads import preview_step_span

__all__ = [
    "READ_POINTS",
    "BucketStats",
    "bucket_many",
    "bucket_series",
    "common_x_range",
    "series_extents",
]

READ_POINTS = 1_000_000
"""Points (by chunk counts) of the series :func:`bucket_many` reads at once: a request for a
thousand long series holds a few of them at a time, never all (issue #12, finding 3)."""

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BucketStats:
    """The buckets of one series that hold at least one point, as columns in bucket order.

    ``first_*``, ``last_*``, ``y_min``, ``y_max`` and ``y_sum`` are over the finite points and
    meaningless where ``finite`` is 0.
    """

    index: I64
    from_x: F64
    to_x: F64
    finite: I64
    nan: I64
    pos_inf: I64
    neg_inf: I64
    first_x: F64
    first_y: F64
    last_x: F64
    last_y: F64
    y_min: F64
    y_max: F64
    y_sum: F64

    def __len__(self) -> int:
        return len(self.index)


def common_x_range(
    series: Sequence[FloatSeries | None], x_from: float | None, x_to: float | None
) -> tuple[float, float] | None:
    """The x range shared by all ``series``: the given ends, else the smallest first and the
    largest last step of any point (None when an end is unknown)."""
    if x_from is None or x_to is None:
        all_steps = [s.steps for s in series if s is not None and len(s)]
        if all_steps:
            if x_from is None:
                x_from = min(float(s[0]) for s in all_steps) / 1e6
            if x_to is None:
                x_to = max(float(s[-1]) for s in all_steps) / 1e6
    if x_from is None or x_to is None:
        return None
    return float(x_from), float(x_to)


SeriesWant = tuple[int, str, str, bool]
"""``(run row id, path, lineage mode, include previews)``, as in ``BatchReads``."""


def bucket_many(
    conn: Any,
    wanted: Sequence[SeriesWant],
    lo: int,
    hi: int,
    count: int,
    x_from: float | None,
    x_to: float | None,
) -> Iterator[BucketStats | None]:
    """:func:`bucket_series` of each series in ``wanted`` (points within micro-steps
    ``[lo, hi]``) on their common x range, in order; None for a series that does not exist or
    has no point in range.

    The same answers as reading every series and calling :func:`common_x_range`, without
    holding them together: the range comes from chunk bounds (:func:`series_extents`), then
    the series are read and bucketed a few at a time, about :data:`READ_POINTS` points each.
    """
    plan = _Plan(conn, wanted, lo, hi)
    x_range: tuple[float, float] | None = None
    if x_from is not None and x_to is not None:
        x_range = (float(x_from), float(x_to))
    else:
        extents = [e for e in plan.extents() if e is not None]
        if extents:
            # the first and last steps as common_x_range takes them from the points
            x_from = min(float(e[0]) for e in extents) / 1e6 if x_from is None else x_from
            x_to = max(float(e[1]) for e in extents) / 1e6 if x_to is None else x_to
            x_range = (float(x_from), float(x_to))
    group: list[SeriesWant] = []
    size = 0
    for i, want in enumerate(wanted):
        group.append(want)
        size += plan.points(i)
        if size >= READ_POINTS or i == len(wanted) - 1:
            for points in float_series_batch(conn, group, lo, hi):
                if points is None or not len(points) or x_range is None:
                    yield None
                else:
                    yield bucket_series(points, *x_range, count)
            group, size = [], 0


def series_extents(
    conn: Any, wanted: Sequence[SeriesWant], lo: int, hi: int
) -> list[tuple[int, int] | None]:
    """``(first step, last step)`` of each series' points within ``[lo, hi]`` (lineage and
    previews included): the first and last of the points :func:`float_series_batch` reads, in
    its order; None when it has none.
    Read from chunk bounds: only chunks cut by a bound or a fork step are decoded."""
    return _Plan(conn, wanted, lo, hi).extents()


class _Plan:
    """The lineage, attribute ids and chunk bounds of a batch of series (no points)."""

    def __init__(self, conn: Any, wanted: Sequence[SeriesWant], lo: int, hi: int) -> None:
        self.conn, self.wanted, self.lo = conn, wanted, lo
        modes: dict[str, set[int]] = {}
        for pk, _, mode, _ in wanted:
            modes.setdefault(mode, set()).add(pk)
        links = {mode: lineage_links(conn, pks, mode) for mode, pks in modes.items()}
        pairs = {
            (link.run_pk, path) for pk, path, mode, _ in wanted for link in links[mode].get(pk, [])
        }
        self.ids = attribute_ids(conn, pairs, "float_series")
        bounds = chunk_bounds(conn, sorted(set(self.ids.values())), lo, hi)
        self.hi = hi
        self.parts = [
            lineage_parts(links[mode].get(pk, []), path, self.ids, bounds, hi)
            for pk, path, mode, _ in wanted
        ]

    def points(self, i: int) -> int:
        """At most how many committed points series ``i`` has in range (by chunk counts)."""
        total = 0
        for part in self.parts[i]:
            k0, k1 = part_span(part, self.lo)
            total += sum(part[0][1][k0 : k1 + 1])
        return total

    def extents(self) -> list[tuple[int, int] | None]:
        out: list[tuple[int, int] | None] = []
        for (pk, path, _, with_previews), parts in zip(self.wanted, self.parts, strict=True):
            first: int | None = None
            last: int | None = None
            for part in parts:
                a = part_edge(self.conn, part, self.lo, first=True)
                if a is not None:
                    # as the points are joined: the first part's first, the last part's last
                    first = a if first is None else first
                    last = part_edge(self.conn, part, self.lo, first=False)
            own = self.ids.get((pk, path))
            if with_previews and own is not None:
                # previews past the last committed step follow the committed points
                span = preview_step_span(
                    self.conn, own, self.lo, self.hi, -1 if last is None else last
                )
                if span is not None:
                    first = span[0] if first is None else first
                    last = span[1]
            out.append(None if first is None or last is None else (first, last))
        return out


def bucket_series(points: FloatSeries, x_from: float, x_to: float, n: int) -> BucketStats:
    """The non-empty buckets of one series (points in step order) among ``n`` on the range.

    Raises:
        ZeroDivisionError: ``n`` is 1 and the range is not a single point.
    """
    x = points.steps.astype(np.float64) / 1e6
    y = points.values
    if x_from == x_to:
        keep = x >= x_from
        x, y = x[keep], y[keep]
        index = np.zeros(len(x), np.int64)
        lower = np.array([x_from])
        upper = np.array([math.inf])
    else:
        w = (x_to - x_from) / (n - 1)
        edges = np.array([x_from + w * i for i in range(n)], np.float64)
        search = edges.copy()
        search[-1] = max(search[-1], x_to)
        index = np.searchsorted(search, x, side="left").astype(np.int64)
        lower = np.concatenate([[-math.inf], edges[:-1], [x_to]])
        upper = np.concatenate([[x_from], edges[1:], [math.inf]])
    if not len(x):
        return _empty()
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], len(x)]
    at = index[starts]
    finite = np.isfinite(y)
    at_finite = np.flatnonzero(finite)
    # per bucket, the finite points are at_finite[f_starts:f_ends]
    f_starts = np.asarray(np.searchsorted(at_finite, starts), np.int64)
    f_ends = np.asarray(np.searchsorted(at_finite, ends), np.int64)
    counts = (f_ends - f_starts).astype(np.int64)
    some = counts > 0
    first_x = np.full(len(starts), np.nan)
    first_y = first_x.copy()
    last_x = first_x.copy()
    last_y = first_x.copy()
    y_min = first_x.copy()
    y_max = first_x.copy()
    y_sum = first_x.copy()
    if some.any():
        first = at_finite[f_starts[some]]
        last = at_finite[f_ends[some] - 1]
        first_x[some], first_y[some] = x[first], y[first]
        last_x[some], last_y[some] = x[last], y[last]
        finite_y = y[at_finite]
        cuts = f_starts[some]  # empty buckets own no finite point, so segments stay exact
        y_min[some] = np.minimum.reduceat(finite_y, cuts)
        y_max[some] = np.maximum.reduceat(finite_y, cuts)
        y_sum[some] = [float(finite_y[a:b].sum()) for a, b in zip(cuts, f_ends[some], strict=True)]
    return BucketStats(
        at,
        lower[at],
        upper[at],
        counts,
        np.add.reduceat(np.isnan(y).astype(np.int64), starts),
        np.add.reduceat(np.isposinf(y).astype(np.int64), starts),
        np.add.reduceat(np.isneginf(y).astype(np.int64), starts),
        first_x,
        first_y,
        last_x,
        last_y,
        y_min,
        y_max,
        y_sum,
    )


def _empty() -> BucketStats:
    i, f = np.empty(0, np.int64), np.empty(0, np.float64)
    return BucketStats(i, f, f, i, i, i, i, f, f, f, f, f, f, f)
