"""Metric buckets (spec/query-api.md §13.1), computed from the chunks of float series.

All series share one x range: the smallest and largest step of any of their points. With
``B`` buckets requested, bucket 0 is ``(-inf, range_from]``, bucket ``B`` is ``(range_to', +inf)``
and the ones between have width ``(range_to - range_from) / (B - 1)``; a bucket holds the
points with ``from < x <= to``. Each bucket reports its first and last *finite* point and, as
an extension, its smallest and largest finite value.

Chunk statistics keep reads small: a chunk that lies inside one bucket, between two other
chunks of the same bucket, cannot hold that bucket's first or last point, so only its stored
``vmin``/``vmax`` are used and its blobs are not read. When the chunks around it hold no finite
point of that bucket, the skipped chunks are read after all (a second pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.query.bucket_points import Chunks, Points, Raw, gather, read_chunks, thresholds
from despina.query.points import (
    LineageMode,
    SeriesSet,
    attr_chain,
    effective_links,
    read_previews,
)
from despina.store.series import LineageLink
from despina.store.sql.bucket_reads import chunk_stats

__all__ = ["BucketSet", "compute_buckets"]

MICRO = 1_000_000
_UNBOUNDED = 2**62

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BucketSet:
    """Buckets of several series, concatenated in series order: series ``i`` owns rows
    ``offsets[i]:offsets[i + 1]``, sorted by bucket. Missing first/last/min/max are NaN."""

    offsets: I64
    index: I64
    from_x: F64
    to_x: F64
    first_x: F64
    first_y: F64
    last_x: F64
    last_y: F64
    y_min: F64
    y_max: F64
    x_range: tuple[float, float] | None
    edges: tuple[F64, F64] = (np.empty(0), np.empty(0))
    """``from`` and ``to`` of every bucket index (``index`` values point into them)."""


def _chunk_metadata(conn: Any, chains: list[list[tuple[LineageLink, int]]]) -> Chunks:
    """Statistics of every chunk of every chain, in one query (no blob is read)."""
    series, attr_ids, uppers = [], [], []
    for i, chain in enumerate(chains):
        for link, attr_id in chain:
            series.append(i)
            attr_ids.append(attr_id)
            uppers.append(_UNBOUNDED if link.upper_step is None else link.upper_step)
    stats = chunk_stats(conn, attr_ids)
    if not len(stats.entry):
        e = np.empty(0, np.int64)
        return Chunks(e, e, e, e, e, np.empty(0), np.empty(0))
    entry = stats.entry
    upper = np.asarray(uppers, np.int64)[entry]
    keep = stats.step_first <= upper
    return Chunks(
        np.asarray(series, np.int64)[entry][keep],
        stats.chunk_id[keep],
        stats.step_first[keep],
        stats.step_last[keep],
        upper[keep],
        stats.vmin[keep],
        stats.vmax[keep],
    )


def compute_buckets(
    conn: Any,
    series: SeriesSet,
    *,
    bucket_count: int,
    mode: LineageMode,
    previews: bool,
    include_min_max: bool,
) -> BucketSet:
    """Bucket every series of ``series`` on their common x range (``bucket_count`` = B)."""
    memo: dict[int, list[LineageLink]] = {}
    chains = []
    for i in range(len(series)):
        req = series.request(i)
        chains.append(attr_chain(conn, req, effective_links(conn, req, mode, memo)))
    chunks = _chunk_metadata(conn, chains)
    straddles = chunks.step_last > chunks.upper
    extra = _preview_points(conn, chains) if previews else None
    read = read_chunks(conn, chunks.ids[straddles])
    x_range = _x_range(chunks, straddles, read, extra)
    if x_range is None:
        return _empty(len(series))
    to_edges = _to_edges(x_range, bucket_count)
    b_first = _bucket_of(chunks.step_first / MICRO, to_edges)
    last_steps = chunks.step_last.copy()
    for k in np.flatnonzero(straddles):  # the last step at or below the fork bound
        steps = read[int(chunks.ids[k])].steps()
        below = steps[steps <= chunks.upper[k]]
        last_steps[k] = below[-1] if len(below) else chunks.step_first[k]
    b_last = _bucket_of(last_steps / MICRO, to_edges)
    same_series_prev = np.r_[False, chunks.series[1:] == chunks.series[:-1]]
    same_series_next = np.r_[chunks.series[:-1] == chunks.series[1:], False]
    prev_last = np.r_[-1, b_last[:-1]]
    next_first = np.r_[b_first[1:], -1]
    interior = (
        (b_first == b_last)
        & ~straddles
        & same_series_prev
        & same_series_next
        & (prev_last == b_first)
        & (next_first == b_first)
    )
    for _ in range(2):
        wanted = chunks.ids[~interior]
        missing = np.array([c for c in wanted.tolist() if c not in read], np.int64)
        read.update(read_chunks(conn, missing))
        result, unsure = _bucketise(
            len(series),
            chunks,
            interior,
            read,
            extra,
            to_edges,
            x_range,
            b_first,
            include_min_max,
        )
        if not unsure.any():
            break
        interior &= ~unsure
    return result


def _preview_points(conn: Any, chains: list[list[tuple[LineageLink, int]]]) -> tuple[I64, I64, F64]:
    """``(series, step, value)`` of the preview points of every chain (within fork bounds)."""
    rows = read_previews(conn, [a for chain in chains for _, a in chain])
    series, steps, values = [], [], []
    for i, chain in enumerate(chains):
        for link, attr_id in chain:
            found = rows.get(attr_id)
            if found is None:
                continue
            for step, value in zip(found[0], found[2], strict=True):
                if link.upper_step is None or step <= link.upper_step:
                    series.append(i)
                    steps.append(step)
                    values.append(value)
    return np.array(series, np.int64), np.array(steps, np.int64), np.array(values, np.float64)


def _x_range(
    chunks: Chunks,
    straddles: npt.NDArray[np.bool_],
    read: dict[int, Raw],
    extra: tuple[I64, I64, F64] | None,
) -> tuple[float, float] | None:
    lows: list[int] = []
    highs: list[int] = []
    if len(chunks.ids):
        lows.append(int(chunks.step_first.min()))
        whole = chunks.step_last[~straddles]
        if len(whole):
            highs.append(int(whole.max()))
        for k in np.flatnonzero(straddles):
            steps = read[int(chunks.ids[k])].steps()
            below = steps[steps <= chunks.upper[k]]
            if len(below):
                highs.append(int(below[-1]))
    if extra is not None and len(extra[1]):
        lows.append(int(extra[1].min()))
        highs.append(int(extra[1].max()))
    if not lows or not highs:
        return None
    return min(lows) / MICRO, max(highs) / MICRO


def _to_edges(x_range: tuple[float, float], bucket_count: int) -> F64 | None:
    """Upper edges of buckets ``0 .. B-1`` (bucket B is open); ``None`` for the single-bucket
    case of a range of one step."""
    lo, hi = x_range
    if lo == hi:
        return None
    width = (hi - lo) / (bucket_count - 1)
    return np.array([lo + width * i for i in range(bucket_count)], dtype=np.float64)


def _bucket_of(x: F64, to_edges: F64 | None) -> I64:
    if to_edges is None:
        return np.zeros(len(x), dtype=np.int64)
    return np.searchsorted(to_edges, x, side="left").astype(np.int64)


def _edge_table(to_edges: F64 | None, x_range: tuple[float, float]) -> tuple[F64, F64]:
    """``from`` and ``to`` of every bucket index, with exactly the expressions of §13.1."""
    if to_edges is None:
        return np.array([x_range[0]]), np.array([np.inf])
    lo, hi = x_range
    count = len(to_edges)
    width = (hi - lo) / (count - 1)
    from_x = [-np.inf] + [lo + width * (i - 1) for i in range(1, count + 1)]
    to_x = [lo + width * i for i in range(count)] + [np.inf]
    return np.array(from_x, np.float64), np.array(to_x, np.float64)


def _bucketise(
    n_series: int,
    chunks: Chunks,
    interior: npt.NDArray[np.bool_],
    read: dict[int, Raw],
    extra: tuple[I64, I64, F64] | None,
    to_edges: F64 | None,
    x_range: tuple[float, float],
    b_first: I64,
    include_min_max: bool,
) -> tuple[BucketSet, npt.NDArray[np.bool_]]:
    """Buckets from the read chunks plus the statistics of the skipped ones; also which
    skipped chunks must be read because the chunks around them had no finite point there.

    Each series' points are in step order, so the buckets are contiguous runs of points: the
    run boundaries come from searching the bucket edges in the series' steps.
    """
    limits = None if to_edges is None else thresholds(to_edges)
    pts = gather(n_series, chunks, interior, read, extra, limits is not None)
    n_b = 1 if to_edges is None else len(to_edges) + 1
    total = len(pts.values)
    offsets = pts.offsets
    ends = np.empty((n_series, n_b), np.int64)
    ends[:, -1] = offsets[1:]
    if limits is not None and pts.runs is not None:
        ends[:, :-1] = pts.runs.ends(limits, offsets)
    elif to_edges is not None:
        if pts.steps is None:  # huge steps: fall back to materialised steps
            pts = gather(n_series, chunks, interior, read, extra, False)
        steps = pts.steps
        assert steps is not None
        for s in range(n_series):
            begin, stop = int(offsets[s]), int(offsets[s + 1])
            if limits is not None:
                ends[s, :-1] = begin + np.searchsorted(steps[begin:stop], limits, "right")
            else:
                x = steps[begin:stop] / MICRO
                ends[s, :-1] = begin + np.searchsorted(x, to_edges, side="right")
    starts = np.empty_like(ends)
    starts[:, 0] = offsets[:-1]
    starts[:, 1:] = ends[:, :-1]
    present = ends > starts
    present[chunks.series[interior], b_first[interior]] = True
    finite = np.isfinite(pts.values)
    flat = np.flatnonzero(present)
    s_of = flat // n_b
    b_of = flat % n_b
    lo, hi = starts.ravel()[flat], ends.ravel()[flat]
    if finite.all():  # the common case: a bucket's first and last points are finite
        first_i, last_i = lo, np.where(hi > lo, hi - 1, -1)
    else:
        index = np.arange(total, dtype=np.int64)
        following = np.minimum.accumulate(np.where(finite, index, total)[::-1])[::-1]
        preceding = np.maximum.accumulate(np.where(finite, index, -1))
        following = np.append(following, total)
        preceding = np.append(preceding, -1)
        first_i = following[np.minimum(lo, total)]
        last_i = preceding[np.where(hi > lo, hi - 1, total)]
    has_first = first_i < hi
    has_last = (last_i >= lo) & (hi > lo)
    size = len(flat)
    first_x, first_y, last_x, last_y = (np.full(size, np.nan) for _ in range(4))
    picked = first_i[has_first]
    first_x[has_first] = pts.step_at(picked, s_of[has_first]) / MICRO
    first_y[has_first] = pts.values[picked]
    picked = last_i[has_last]
    last_x[has_last] = pts.step_at(picked, s_of[has_last]) / MICRO
    last_y[has_last] = pts.values[picked]
    y_min, y_max = np.full(size, np.nan), np.full(size, np.nan)
    if include_min_max:
        _min_max(pts, finite, lo, hi, y_min, y_max)
        inner = np.flatnonzero(interior & np.isfinite(chunks.vmin))
        if len(inner):
            at = np.searchsorted(flat, chunks.series[inner] * n_b + b_first[inner])
            np.fmin.at(y_min, at, chunks.vmin[inner])
            np.fmax.at(y_max, at, chunks.vmax[inner])
    unsure = _unsure(chunks, interior, b_first, pts, finite, starts, ends)
    from_table, to_table = _edge_table(to_edges, x_range)
    series_offsets = np.zeros(n_series + 1, np.int64)
    np.cumsum(present.sum(axis=1), out=series_offsets[1:])
    bucket_set = BucketSet(
        series_offsets,
        b_of.astype(np.int64),
        from_table[b_of],
        to_table[b_of],
        first_x,
        first_y,
        last_x,
        last_y,
        y_min,
        y_max,
        x_range,
        (from_table, to_table),
    )
    return bucket_set, unsure


def _min_max(
    pts: Points, finite: npt.NDArray[np.bool_], lo: I64, hi: I64, y_min: F64, y_max: F64
) -> None:
    """Smallest and largest finite value of every bucket with read points."""
    filled = hi > lo
    if not filled.any():
        return
    values = np.where(finite, pts.values, np.nan)
    seg = lo[filled]
    y_min[filled] = np.fmin.reduceat(values, seg)
    y_max[filled] = np.fmax.reduceat(values, seg)


def _unsure(
    chunks: Chunks,
    interior: npt.NDArray[np.bool_],
    b_first: I64,
    pts: Points,
    finite: npt.NDArray[np.bool_],
    starts: I64,
    ends: I64,
) -> npt.NDArray[np.bool_]:
    """Skipped chunks whose bucket's neighbouring read chunks hold no finite point there."""
    unsure = np.zeros(len(interior), dtype=bool)
    if not interior.any():
        return unsure

    def finite_in(k: int, series: int, bucket: int) -> bool:
        at = pts.chunk_points(k)
        at = at[(at >= starts[series, bucket]) & (at < ends[series, bucket])]
        return bool(finite[at].any())

    k, n = 0, len(interior)
    while k < n:
        if not interior[k]:
            k += 1
            continue
        end = k
        while end + 1 < n and interior[end + 1] and b_first[end + 1] == b_first[k]:
            end += 1
        b, s = int(b_first[k]), int(chunks.series[k])
        if np.isfinite(chunks.vmin[k : end + 1]).any() and not (
            finite_in(k - 1, s, b) and finite_in(end + 1, s, b)
        ):
            unsure[k : end + 1] = True
        k = end + 1
    return unsure


def _empty(n_series: int) -> BucketSet:
    e = np.empty(0)
    return BucketSet(
        np.zeros(n_series + 1, np.int64), np.empty(0, np.int64), e, e, e, e, e, e, e, e, None
    )
