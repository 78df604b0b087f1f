"""Block summaries of float series, so that wide charts never re-read every point.

A chart of 50 runs × 100,000 steps at 1,000 buckets per line has about 100 points per bucket:
every stored chunk straddles bucket edges, so bucketing from chunks decodes all 5M points of
each metric. Instead, each series is summarised once into blocks of :data:`BLOCK` consecutive
points (first and last point, smallest and largest finite value), kept in a bounded in-memory
cache keyed by the series' attribute id and checked against the series' chunk count, point
count and last step on every use (an append invalidates it).

A chart bucket is then a run of whole blocks: the blocks whose first step falls in the bucket.
Every point belongs to exactly one bucket, the band is the exact min–max of that bucket's
points and the drawn point is a real point; bucket edges are only as regular as the blocks
(±``BLOCK`` points), which is why charts use summaries only when a bucket spans at least
:data:`MIN_BLOCKS_PER_BUCKET` blocks and read the points otherwise.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from despina.errors import ConfigError
from despina.query.points import SeriesSet, attr_chain, effective_links
from despina.store.chart_series import chunk_signature, own_float_points
from despina.store.reads import ProjectReads
from despina.store.series import LineageLink

__all__ = [
    "BLOCK",
    "MIN_BLOCKS_PER_BUCKET",
    "Blocks",
    "SummaryCache",
    "bucket_blocks",
    "lineage_blocks",
    "shared_cache",
]

BLOCK = 16
"""Points per block."""
MIN_BLOCKS_PER_BUCKET = 4
"""Charts use summaries only when a bucket holds at least this many blocks."""
MICRO = 1_000_000
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Blocks:
    """Consecutive blocks of one series, in step order (steps as floats)."""

    first_x: F64
    first_y: F64
    last_x: F64
    last_y: F64
    low: F64
    high: F64

    def __len__(self) -> int:
        return len(self.first_x)

    @property
    def nbytes(self) -> int:
        return 6 * 8 * len(self)

    def take(self, index: slice | npt.NDArray[np.int64]) -> Blocks:
        return Blocks(
            self.first_x[index],
            self.first_y[index],
            self.last_x[index],
            self.last_y[index],
            self.low[index],
            self.high[index],
        )

    @staticmethod
    def concat(parts: list[Blocks]) -> Blocks:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return summarise(np.empty(0), np.empty(0))
        return Blocks(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
        )


_FIELDS = ("first_x", "first_y", "last_x", "last_y", "low", "high")


def summarise(x: F64, y: F64, block: int = BLOCK) -> Blocks:
    """Blocks of ``block`` consecutive points of one series (``x`` sorted)."""
    n = len(x)
    if n == 0:
        e = np.empty(0)
        return Blocks(e, e, e, e, e, e)
    starts = np.arange(0, n, block)
    last = np.minimum(starts + block, n) - 1
    finite = np.where(np.isfinite(y), y, np.nan)
    with np.errstate(invalid="ignore"):
        low = np.fmin.reduceat(finite, starts)
        high = np.fmax.reduceat(finite, starts)
    return Blocks(x[starts], y[starts], x[last], y[last], low, high)


class SummaryCache:
    """Block summaries of float series by (database, attribute id), least recently used first
    out once they pass ``max_bytes``. Safe to share between threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], tuple[tuple[int, int, int], Blocks]] = (
            OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.Lock()

    def blocks(self, reads: ProjectReads, database: str, attr_id: int) -> Blocks:
        """The blocks of the own points of series ``attr_id`` (summarised on first use)."""
        signature = chunk_signature(reads, attr_id)
        key = (database, attr_id)
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] == signature:
                self._entries.move_to_end(key)
                return found[1]
        points = own_float_points(reads, attr_id)
        blocks = summarise(points.steps / MICRO, points.values)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            self._entries[key] = (signature, blocks)
            self._bytes += blocks.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes
        return blocks


_SHARED: SummaryCache | None = None
_SHARED_LOCK = threading.Lock()


def shared_cache() -> SummaryCache:
    """The process's cache, bounded by ``DESPINA_UI_CACHE_MB`` (default 512).

    Raises:
        ConfigError: the variable is not a positive integer.
    """
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            raw = os.environ.get("DESPINA_UI_CACHE_MB", "512")
            if not raw.isdigit() or int(raw) <= 0:
                raise ConfigError(f"DESPINA_UI_CACHE_MB has value {raw!r}; expected MiB > 0")
            _SHARED = SummaryCache(int(raw) * 1024 * 1024)
        return _SHARED


def lineage_blocks(
    reads: ProjectReads, database: str, series: SeriesSet, cache: SummaryCache
) -> list[Blocks]:
    """Per series of ``series``, the blocks of its points through its full lineage.

    An ancestor contributes the blocks at or below the fork step; the one block that straddles
    the fork step is summarised again from its points at or below it.
    """
    memo: dict[int, list[LineageLink]] = {}
    # the query package's lineage helpers still take the connection (they move behind the
    # store contract with the rest of despina.query)
    conn = reads.conn
    out = []
    for i in range(len(series)):
        request = series.request(i)
        parts = []
        for link, attr_id in attr_chain(
            conn, request, effective_links(conn, request, "full", memo)
        ):
            blocks = cache.blocks(reads, database, attr_id)
            if link.upper_step is None:
                parts.append(blocks)
                continue
            upper = link.upper_step / MICRO
            whole = int(np.searchsorted(blocks.last_x, upper, side="right"))
            parts.append(blocks.take(slice(0, whole)))
            if whole < len(blocks) and blocks.first_x[whole] <= upper:
                start = round(float(blocks.first_x[whole]) * MICRO)
                points = own_float_points(reads, attr_id, start, link.upper_step)
                parts.append(summarise(points.steps / MICRO, points.values, block=len(points) or 1))
        out.append(Blocks.concat(parts))
    return out


def bucket_blocks(
    blocks: Blocks, low: float, high: float, buckets: int
) -> tuple[F64, F64, F64, F64, int]:
    """Buckets of one series over ``[low, high]`` from its blocks: per bucket the drawn point
    (the first point for the series' first bucket, else the last) and the finite range; plus
    how many blocks took part."""
    # blocks are in step order: the ones touching the window are one slice
    start = int(np.searchsorted(blocks.last_x, low, side="left"))
    end = int(np.searchsorted(blocks.first_x, high, side="right"))
    part = blocks.take(slice(start, max(start, end)))
    if not len(part):
        e = np.empty(0)
        return e, e, e, e, 0
    width = (high - low) / buckets if high > low else 1.0
    index = np.clip(((part.first_x - low) / width).astype(np.int64), 0, buckets - 1)
    change = np.empty(len(index), dtype=bool)
    change[0] = True
    np.not_equal(index[1:], index[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(index)) - 1
    with np.errstate(invalid="ignore"):
        lows = np.fmin.reduceat(part.low, starts)
        highs = np.fmax.reduceat(part.high, starts)
    x, y = part.last_x[ends].copy(), part.last_y[ends].copy()
    x[0], y[0] = part.first_x[0], part.first_y[0]
    return x, y, lows, highs, len(part)
