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

import sqlite3
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from despina.query.points import (
    LineageMode,
    SeriesSet,
    attr_chain,
    effective_links,
    read_previews,
)
from despina.store.codec import decode_floats, decode_ints
from despina.store.series import LineageLink, chunk_rowid_range

__all__ = ["BucketSet", "compute_buckets"]

MICRO = 1_000_000
_UNBOUNDED = 2**62
_BATCH = 900

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


@dataclass
class _Chunks:
    """Chunk metadata of all series, in series then step order."""

    series: I64
    ids: I64
    step_first: I64
    step_last: I64
    upper: I64
    vmin: F64
    vmax: F64


def _chunk_metadata(
    conn: sqlite3.Connection, chains: list[list[tuple[LineageLink, int]]]
) -> _Chunks:
    rows: list[tuple[int, int, int, int, int, float, float]] = []
    for i, chain in enumerate(chains):
        for link, attr_id in chain:
            lo, hi = chunk_rowid_range(attr_id)
            upper = _UNBOUNDED if link.upper_step is None else link.upper_step
            rows.extend(
                (
                    i,
                    cid,
                    first,
                    last,
                    upper,
                    np.nan if vmin is None else vmin,
                    np.nan if vmax is None else vmax,
                )
                for cid, first, last, vmin, vmax in conn.execute(
                    "SELECT id, step_first, step_last, vmin, vmax FROM chunks "
                    "WHERE id BETWEEN ? AND ? AND step_first <= ? ORDER BY id",
                    (lo, hi, upper),
                )
            )
    if not rows:
        e = np.empty(0, np.int64)
        return _Chunks(e, e, e, e, e, np.empty(0), np.empty(0))
    cols = list(zip(*rows, strict=True))
    return _Chunks(
        *(np.array(c, np.int64) for c in cols[:5]),
        np.array(cols[5], np.float64),
        np.array(cols[6], np.float64),
    )


def _read_chunks(conn: sqlite3.Connection, ids: I64) -> dict[int, tuple[I64, F64]]:
    out: dict[int, tuple[I64, F64]] = {}
    id_list = ids.tolist()
    for start in range(0, len(id_list), _BATCH):
        batch = id_list[start : start + _BATCH]
        marks = ",".join("?" * len(batch))
        for cid, n, steps, vals in conn.execute(
            f"SELECT id, n, steps, vals FROM chunks WHERE id IN ({marks})", batch
        ):
            out[cid] = (decode_ints(steps, n), decode_floats(vals, n))
    return out


def compute_buckets(
    conn: sqlite3.Connection,
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
    read = _read_chunks(conn, chunks.ids[straddles])
    x_range = _x_range(chunks, straddles, read, extra)
    if x_range is None:
        return _empty(len(series))
    to_edges = _to_edges(x_range, bucket_count)
    b_first = _bucket_of(chunks.step_first / MICRO, to_edges)
    last_steps = chunks.step_last.copy()
    for k in np.flatnonzero(straddles):  # the last step at or below the fork bound
        steps = read[int(chunks.ids[k])][0]
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
        read.update(_read_chunks(conn, missing))
        result, unsure = _bucketise(
            series, chunks, interior, read, extra, to_edges, x_range, b_first, include_min_max
        )
        if not unsure.any():
            break
        interior &= ~unsure
    return result


def _preview_points(
    conn: sqlite3.Connection, chains: list[list[tuple[LineageLink, int]]]
) -> tuple[I64, I64, F64]:
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
    chunks: _Chunks,
    straddles: npt.NDArray[np.bool_],
    read: dict[int, tuple[I64, F64]],
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
            steps = read[int(chunks.ids[k])][0]
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


def _bounds(index: I64, to_edges: F64 | None, x_range: tuple[float, float]) -> tuple[F64, F64]:
    if to_edges is None:
        return np.full(len(index), x_range[0]), np.full(len(index), np.inf)
    lo, hi = x_range
    width = (hi - lo) / (len(to_edges) - 1)
    from_x = np.array([-np.inf if i == 0 else lo + width * (i - 1) for i in index.tolist()])
    to_x = np.array([np.inf if i == len(to_edges) else lo + width * i for i in index.tolist()])
    return from_x.astype(np.float64), to_x.astype(np.float64)


def _bucketise(
    series: SeriesSet,
    chunks: _Chunks,
    interior: npt.NDArray[np.bool_],
    read: dict[int, tuple[I64, F64]],
    extra: tuple[I64, I64, F64] | None,
    to_edges: F64 | None,
    x_range: tuple[float, float],
    b_first: I64,
    include_min_max: bool,
) -> tuple[BucketSet, npt.NDArray[np.bool_]]:
    """Buckets from the read chunks plus the statistics of the skipped ones; also which
    skipped chunks must be read because the chunks around them had no finite point there."""
    n_b = (0 if to_edges is None else len(to_edges)) + 1
    part_series, part_steps, part_values, part_chunk = [], [], [], []
    for k in np.flatnonzero(~interior):
        steps, values = read[int(chunks.ids[k])]
        if chunks.step_last[k] > chunks.upper[k]:
            keep = steps <= chunks.upper[k]
            steps, values = steps[keep], values[keep]
        part_series.append(np.full(len(steps), chunks.series[k]))
        part_steps.append(steps)
        part_values.append(values)
        part_chunk.append(np.full(len(steps), k))
    if extra is not None and len(extra[0]):
        part_series.append(extra[0])
        part_steps.append(extra[1])
        part_values.append(extra[2])
        part_chunk.append(np.full(len(extra[0]), -1))
    p_series = np.concatenate(part_series) if part_series else np.empty(0, np.int64)
    p_steps = np.concatenate(part_steps) if part_steps else np.empty(0, np.int64)
    p_values = np.concatenate(part_values) if part_values else np.empty(0)
    p_chunk = np.concatenate(part_chunk) if part_chunk else np.empty(0, np.int64)
    if extra is not None and len(extra[0]):
        order = np.lexsort((p_steps, p_series))
        p_series, p_steps, p_values, p_chunk = (
            p_series[order],
            p_steps[order],
            p_values[order],
            p_chunk[order],
        )
    x = p_steps / MICRO
    bucket = _bucket_of(x, to_edges)
    key = p_series * n_b + bucket
    finite = np.isfinite(p_values)
    present = np.unique(np.concatenate([key, chunks.series[interior] * n_b + b_first[interior]]))
    f_key, f_x, f_y = key[finite], x[finite], p_values[finite]
    starts = np.flatnonzero(np.r_[True, f_key[1:] != f_key[:-1]]) if len(f_key) else f_key
    ends = np.r_[starts[1:], len(f_key)] - 1 if len(f_key) else f_key
    group = f_key[starts]
    at = np.searchsorted(present, group)
    size = len(present)
    first_x, first_y, last_x, last_y = (np.full(size, np.nan) for _ in range(4))
    y_min, y_max = np.full(size, np.nan), np.full(size, np.nan)
    first_x[at], first_y[at] = f_x[starts], f_y[starts]
    last_x[at], last_y[at] = f_x[ends], f_y[ends]
    if include_min_max and len(f_key):
        y_min[at] = np.minimum.reduceat(f_y, starts)
        y_max[at] = np.maximum.reduceat(f_y, starts)
    unsure = _unsure(chunks, interior, b_first, p_chunk[finite], bucket[finite])
    if include_min_max:
        inner = np.flatnonzero(interior & np.isfinite(chunks.vmin))
        if len(inner):
            pos = np.searchsorted(present, chunks.series[inner] * n_b + b_first[inner])
            np.fmin.at(y_min, pos, chunks.vmin[inner])
            np.fmax.at(y_max, pos, chunks.vmax[inner])
    p_of, b_of = present // n_b, present % n_b
    offsets = np.searchsorted(p_of, np.arange(len(series) + 1)).astype(np.int64)
    from_x, to_x = _bounds(b_of, to_edges, x_range)
    return (
        BucketSet(
            offsets, b_of, from_x, to_x, first_x, first_y, last_x, last_y, y_min, y_max, x_range
        ),
        unsure,
    )


def _unsure(
    chunks: _Chunks,
    interior: npt.NDArray[np.bool_],
    b_first: I64,
    finite_chunk: I64,
    finite_bucket: I64,
) -> npt.NDArray[np.bool_]:
    """Skipped chunks whose bucket's neighbouring read chunks hold no finite point there."""
    unsure = np.zeros(len(interior), dtype=bool)
    if not interior.any():
        return unsure
    seen = set(zip(finite_chunk.tolist(), finite_bucket.tolist(), strict=True))
    k = 0
    n = len(interior)
    while k < n:
        if not interior[k]:
            k += 1
            continue
        end = k
        while end + 1 < n and interior[end + 1] and b_first[end + 1] == b_first[k]:
            end += 1
        b = int(b_first[k])
        has_finite = np.isfinite(chunks.vmin[k : end + 1]).any()
        if has_finite and ((k - 1, b) not in seen or (end + 1, b) not in seen):
            unsure[k : end + 1] = True
        k = end + 1
    return unsure


def _empty(n_series: int) -> BucketSet:
    e = np.empty(0)
    return BucketSet(
        np.zeros(n_series + 1, np.int64), np.empty(0, np.int64), e, e, e, e, e, e, e, e, None
    )
