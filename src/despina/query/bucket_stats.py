"""Buckets of float series with every statistic the wire protocol reports (query-api.md §13.1).

:mod:`despina.query.buckets` answers ``fetch_metric_buckets`` in-process from chunk statistics
(first, last, min and max only); the server's buckets endpoint also reports finite, NaN and
±inf counts and the sum of every bucket, which need every point, so it buckets points already
read by :func:`despina.query.float_batch.float_series_batch`. The bucket layout is the same:
with ``n`` buckets on ``[x_from, x_to]``, bucket 0 is ``(-inf, x_from]``, bucket ``n`` is
``(x_to, +inf)`` and those between have width ``(x_to - x_from) / (n - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from despina.query.float_batch import FloatSeries

__all__ = ["BucketStats", "bucket_series", "common_x_range"]

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
