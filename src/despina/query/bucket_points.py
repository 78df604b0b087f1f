"""The points bucketing reads from float-series chunks, for ``buckets.py``.

A chunk's steps blob is usually an arithmetic progression (``store/codec.py``: first step and
delta); such steps are never expanded here. Bucket edges are located inside a chunk with
integer arithmetic, and only the steps of the points a bucket reports are computed. Chunks
with irregular steps, chunks cut at a fork bound and preview points fall back to explicit
step arrays.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.store.codec import decode_floats, decode_ints
from despina.store.sql.bucket_reads import chunk_blobs

__all__ = ["Chunks", "Points", "Raw", "Runs", "gather", "read_chunks", "thresholds"]

MICRO = 1_000_000

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class Chunks:
    """Chunk metadata of all series, in series then step order (``upper``: the fork bound of
    the chunk's run in the lineage)."""

    series: I64
    ids: I64
    step_first: I64
    step_last: I64
    upper: I64
    vmin: F64
    vmax: F64


@dataclass(frozen=True, slots=True)
class Raw:
    """A read chunk: its values, and its steps either as an arithmetic progression
    (``first``, ``delta``; the codec's common case, never expanded here) or decoded."""

    n: int
    values: F64
    first: int
    delta: int
    blob: bytes

    @property
    def arithmetic(self) -> bool:
        return self.delta >= 0

    def steps(self) -> I64:
        """Every step of the chunk (micro-steps)."""
        if self.arithmetic:
            return self.first + self.delta * np.arange(self.n, dtype=np.int64)
        return decode_ints(self.blob, self.n)


_ARITHMETIC = 1  # codec byte of a first-and-delta steps blob (store/codec.py)
_TWO = struct.Struct("<qq")


def read_chunks(conn: Any, ids: I64) -> dict[int, Raw]:
    """The chunks ``ids`` (those that exist) by id, values decoded, steps kept as a first
    step and delta when their blob says so."""
    out: dict[int, Raw] = {}
    if not len(ids):
        return out
    for cid, n, steps, vals in chunk_blobs(conn, ids.tolist()):
        values = decode_floats(vals, n)
        if steps[0] == _ARITHMETIC:
            first, delta = _TWO.unpack_from(steps, 1)
            out[cid] = Raw(n, values, first, max(delta, 0) if n == 1 else delta, b"")
        else:
            out[cid] = Raw(n, values, 0, -1, steps)
    return out


@dataclass
class Points:
    """The read points of all series in series then step order: values, where each series
    starts, and the steps, either materialised (``steps``) or as the arithmetic runs of the
    read chunks (``runs``). ``chunk`` gives each point's chunk (-1: a preview) when steps are
    materialised; ``runs`` know each chunk's range."""

    values: F64
    offsets: I64
    steps: I64 | None = None
    chunk: I64 | None = None
    runs: Runs | None = None

    def step_at(self, index: I64, series: I64 | None = None) -> I64:
        """Micro-steps of the points at ``index`` (of ``series``, when known: regular series
        are then computed without locating their chunks)."""
        if self.steps is not None:
            return self.steps[index]
        assert self.runs is not None
        found = self.runs.progression
        if series is None or found is None:
            return self.runs.step_at(index)
        regular, first, delta, start = found
        plain = regular[series]
        if not plain.all():
            out = np.empty(len(index), np.int64)
            out[~plain] = self.runs.step_at(index[~plain])
            s = series[plain]
            out[plain] = first[s] + delta[s] * (index[plain] - start[s])
            return out
        return first[series] + delta[series] * (index - start[series])

    def chunk_points(self, k: int) -> I64:
        """Positions of the points of chunk ``k`` (an index into the chunk metadata)."""
        if self.chunk is not None:
            return np.flatnonzero(self.chunk == k)
        assert self.runs is not None
        at = int(np.searchsorted(self.runs.owner, k))
        if at >= len(self.runs.owner) or self.runs.owner[at] != k:
            return np.empty(0, np.int64)
        lo = int(self.runs.start[at])
        return np.arange(lo, lo + int(self.runs.n[at]), dtype=np.int64)


@dataclass
class Runs:
    """Read chunks in order, their steps kept as ``first + delta * i`` (``delta`` -1: the
    steps are in ``explicit``)."""

    owner: I64  # index into the chunk metadata
    series: I64
    start: I64
    n: I64
    first: I64
    delta: I64
    last: I64
    explicit: dict[int, I64]
    progression: tuple[npt.NDArray[np.bool_], I64, I64, I64] | None = None
    """Set by :meth:`ends`: per series, whether its steps are one arithmetic progression, and
    its first step, delta and first point offset."""

    def step_at(self, index: I64) -> I64:
        at = np.searchsorted(self.start, index, side="right") - 1
        out = self.first[at] + np.maximum(self.delta[at], 0) * (index - self.start[at])
        for r in np.unique(at[self.delta[at] < 0]).tolist():
            mine = at == r
            out[mine] = self.explicit[r][index[mine] - self.start[r]]
        return out

    def ends(self, limits: I64, offsets: I64) -> I64:
        """``ends[s, i]``: the end (exclusive) of series ``s``'s points with step <=
        ``limits[i]``.

        A series whose runs continue one arithmetic progression (regular steps: the common
        case) is answered for every limit with one integer division; other series search
        their runs one by one.
        """
        n_series = len(offsets) - 1
        bounds = np.searchsorted(self.series, np.arange(n_series + 1))
        count = np.diff(bounds)
        out = np.repeat(offsets[:-1, None], len(limits), axis=1)
        has = count > 0
        if not has.any():
            return out
        head = bounds[:-1][has]
        continues = np.ones(len(self.series), dtype=bool)
        if len(self.series) > 1:
            continues[1:] = (self.series[1:] != self.series[:-1]) | (
                (self.delta[1:] == self.delta[:-1])
                & (self.delta[1:] > 0)
                & (self.first[1:] == self.last[:-1] + self.delta[:-1])
            )
        broken = np.zeros(n_series, dtype=bool)
        np.logical_or.at(broken, self.series[~continues], True)
        regular = has.copy()
        regular[has] = ~broken[has] & (self.delta[head] >= 0)
        head_all = np.minimum(bounds[:-1], max(len(self.series) - 1, 0))
        self.progression = (
            regular,
            self.first[head_all],
            np.maximum(self.delta[head_all], 1),
            offsets[:-1],
        )
        if regular.any():
            rows = np.flatnonzero(regular)
            first = self.first[bounds[rows]][:, None]
            step = np.maximum(self.delta[bounds[rows]], 1)[:, None]
            total = (offsets[rows + 1] - offsets[rows])[:, None]
            counted = np.clip((limits[None, :] - first) // step + 1, 0, total)
            out[rows] = offsets[rows][:, None] + counted
        for s in np.flatnonzero(has & ~regular).tolist():
            out[s] = self._series_ends(int(bounds[s]), int(bounds[s + 1]), limits, offsets[s + 1])
        return out

    def _series_ends(self, lo: int, hi: int, limits: I64, series_end: int) -> I64:
        j = np.searchsorted(self.last[lo:hi], limits, side="right")
        out = np.append(self.start[lo:hi], series_end)[j]
        inside = np.flatnonzero(j < hi - lo)
        run = j[inside] + lo
        m = limits[inside]
        delta, first, n = self.delta[run], self.first[run], self.n[run]
        counted = np.clip((m - first) // np.maximum(delta, 1) + 1, 0, n)
        for k in np.flatnonzero(delta < 0).tolist():  # explicit steps: search them
            counted[k] = np.searchsorted(self.explicit[int(run[k])], m[k], side="right")
        out[inside] += counted
        return out


def gather(
    n_series: int,
    chunks: Chunks,
    interior: npt.NDArray[np.bool_],
    read: dict[int, Raw],
    extra: tuple[I64, I64, F64] | None,
    arithmetic: bool,
) -> Points:
    """The points of the chunks that are not skipped (and the previews in ``extra``).

    With ``arithmetic`` (and no previews) steps stay implicit in the chunks' runs."""
    owners: list[int] = []
    sizes: list[int] = []
    firsts: list[int] = []
    deltas: list[int] = []
    lasts: list[int] = []
    value_parts: list[F64] = []
    explicit: dict[int, I64] = {}
    for k in np.flatnonzero(~interior).tolist():
        raw = read[int(chunks.ids[k])]
        values = raw.values
        if chunks.step_last[k] > chunks.upper[k] or not raw.arithmetic:
            steps = raw.steps()
            keep = steps <= chunks.upper[k]
            steps, values = steps[keep], values[keep]
            if not len(steps):
                continue
            explicit[len(owners)] = steps
            firsts.append(int(steps[0]))
            deltas.append(-1)
            lasts.append(int(steps[-1]))
        else:
            firsts.append(raw.first)
            deltas.append(raw.delta)
            lasts.append(raw.first + raw.delta * (raw.n - 1))
        owners.append(k)
        sizes.append(len(values))
        value_parts.append(values)
    owner = np.array(owners, np.int64)
    counts = np.array(sizes, np.int64)
    starts = np.zeros(len(owner), np.int64)
    if len(counts):
        np.cumsum(counts[:-1], out=starts[1:])
    values = np.concatenate(value_parts) if value_parts else np.empty(0)
    runs = Runs(
        owner,
        chunks.series[owner],
        starts,
        counts,
        np.array(firsts, np.int64),
        np.array(deltas, np.int64),
        np.array(lasts, np.int64),
        explicit,
    )
    with_previews = extra is not None and len(extra[0]) > 0
    if arithmetic and not with_previews:
        per_series = np.bincount(runs.series, weights=counts, minlength=n_series)
        offsets = np.zeros(n_series + 1, np.int64)
        np.cumsum(per_series.astype(np.int64), out=offsets[1:])
        return Points(values, offsets, runs=runs)
    steps = runs.step_at(np.arange(len(values), dtype=np.int64)) if len(values) else owner
    series = np.repeat(runs.series, counts)
    chunk = np.repeat(owner, counts)
    if extra is not None and with_previews:
        series = np.concatenate([series, extra[0]])
        steps = np.concatenate([steps, extra[1]])
        values = np.concatenate([values, extra[2]])
        chunk = np.concatenate([chunk, np.full(len(extra[0]), -1, np.int64)])
        order = np.lexsort((steps, series))
        series, steps, values, chunk = series[order], steps[order], values[order], chunk[order]
    offsets = np.searchsorted(series, np.arange(n_series + 1)).astype(np.int64)
    return Points(values, offsets, steps=steps, chunk=chunk)


def thresholds(to_edges: F64) -> I64 | None:
    """For each edge ``e``, the largest micro-step ``m`` with ``m / 1e6 <= e`` (so that the
    edge search runs on integers); ``None`` when steps are too large for exact float math."""
    if not len(to_edges) or np.abs(to_edges).max() * MICRO >= 2**52:
        return None
    m = np.floor(to_edges * MICRO).astype(np.int64)
    for _ in range(4):
        m -= (m / MICRO > to_edges).astype(np.int64)
        m += ((m + 1) / MICRO <= to_edges).astype(np.int64)
    return m
