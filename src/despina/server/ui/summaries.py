"""Block summaries of float series, so that wide charts never re-read every point.

A chart of 50 runs × 100,000 steps at 1,000 buckets per line has about 100 points per bucket:
every stored chunk straddles bucket edges, so bucketing from chunks decodes all 5M points of
each metric. Instead, each series is summarised once into blocks of :data:`BLOCK` consecutive
points (first and last point, smallest and largest finite value), kept in a bounded in-memory
cache keyed by the series' attribute id and checked against the series' chunk count, point
count and last step on every use (an append invalidates it). The summaries are also kept in the
store (``store/chart_summaries.py``, written in the background after a summary is made), so the
first chart view after a server start reads one short row per series instead of every point.

Blocks carry the first and last timestamp too: a series' own timestamps never decrease (the
writer enforces it), so the absolute- and relative-time axes bucket the same blocks by time.

A chart bucket is then a run of whole blocks: the blocks whose first step falls in the bucket.
Every point belongs to exactly one bucket, the band is the exact min–max of that bucket's
points and the drawn point is a real point; bucket edges are only as regular as the blocks
(±``BLOCK`` points), which is why charts use summaries only when a bucket spans at least
:data:`MIN_BLOCKS_PER_BUCKET` blocks and read the points otherwise.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.errors import ConfigError
from despina.query.points import SeriesSet, attr_chain, effective_links
from despina.store.chart_series import chunk_signature, own_float_points
from despina.store.chart_summaries import StoredSummary, read_summaries, write_summaries
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
    "wait_persisted",
]

BLOCK = 16
"""Points per block."""
MIN_BLOCKS_PER_BUCKET = 4
"""Charts use summaries only when a bucket holds at least this many blocks."""
MICRO = 1_000_000
F64 = npt.NDArray[np.float64]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Blocks:
    """Consecutive blocks of one series, in step order (steps as floats; ``first_t`` and
    ``last_t`` the first and last point's timestamps in epoch ms). ``first_x``/``last_x`` are
    the x of the blocks on the chart's axis: steps, or times after :meth:`on_time`."""

    first_x: F64
    first_y: F64
    last_x: F64
    last_y: F64
    low: F64
    high: F64
    first_t: F64
    last_t: F64

    def __len__(self) -> int:
        return len(self.first_x)

    @property
    def nbytes(self) -> int:
        return 8 * 8 * len(self)

    def take(self, index: slice | npt.NDArray[np.int64]) -> Blocks:
        return Blocks(*(getattr(self, f)[index] for f in _FIELDS))

    def on_time(self, offset: float = 0.0) -> Blocks:
        """The blocks with x = their timestamps minus ``offset`` (ms)."""
        return Blocks(
            self.first_t - offset,
            self.first_y,
            self.last_t - offset,
            self.last_y,
            self.low,
            self.high,
            self.first_t,
            self.last_t,
        )

    def monotonic(self) -> bool:
        """Whether x never decreases from block to block (bucketing needs it)."""
        return bool(
            len(self) < 2
            or (
                np.all(self.first_x[1:] >= self.last_x[:-1]) and np.all(self.last_x >= self.first_x)
            )
        )

    @staticmethod
    def concat(parts: list[Blocks]) -> Blocks:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return summarise(np.empty(0), np.empty(0), np.empty(0))
        return Blocks(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
        )


_FIELDS = ("first_x", "first_y", "last_x", "last_y", "low", "high", "first_t", "last_t")


def summarise(x: F64, y: F64, t: npt.NDArray[np.int64] | F64, block: int = BLOCK) -> Blocks:
    """Blocks of ``block`` consecutive points of one series (``x`` sorted, ``t`` the points'
    timestamps)."""
    n = len(x)
    if n == 0:
        e = np.empty(0)
        return Blocks(e, e, e, e, e, e, e, e)
    starts = np.arange(0, n, block)
    last = np.minimum(starts + block, n) - 1
    finite = np.where(np.isfinite(y), y, np.nan)
    with np.errstate(invalid="ignore"):
        low = np.fmin.reduceat(finite, starts)
        high = np.fmax.reduceat(finite, starts)
    t = np.asarray(t, dtype=np.float64)
    return Blocks(x[starts], y[starts], x[last], y[last], low, high, t[starts], t[last])


def _to_stored(attr_id: int, signature: tuple[int, int, int], blocks: Blocks) -> StoredSummary:
    return StoredSummary(
        attr_id,
        signature,
        np.rint(blocks.first_x * MICRO).astype(np.int64),
        np.rint(blocks.last_x * MICRO).astype(np.int64),
        blocks.first_t.astype(np.int64),
        blocks.last_t.astype(np.int64),
        blocks.first_y,
        blocks.last_y,
        blocks.low,
        blocks.high,
    )


def _from_stored(found: StoredSummary) -> Blocks:
    return Blocks(
        found.first_step / MICRO,
        found.first_y,
        found.last_step / MICRO,
        found.last_y,
        found.low,
        found.high,
        found.first_ts.astype(np.float64),
        found.last_ts.astype(np.float64),
    )


class SummaryCache:
    """Block summaries of float series by (store, attribute id), least recently used first
    out once they pass ``max_bytes``. Safe to share between threads.

    A summary missing here is read from the store's ``chart_summaries`` (if its signature still
    matches the series' chunks), else made from the series' points and queued for the store.
    """

    def __init__(self, max_bytes: int, *, persist: bool = True) -> None:
        self.max_bytes = max_bytes
        self.persist = persist
        self._entries: OrderedDict[tuple[str, int], tuple[tuple[int, int, int], Blocks]] = (
            OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.Lock()
        self.made = 0
        """How many summaries were made from points (not found here nor in the store)."""
        self.loaded = 0
        """How many summaries were read from the store."""
        self.extended = 0
        """How many summaries were extended with a series' new points only."""

    def blocks(self, reads: ProjectReads, database: str, attr_id: int) -> Blocks:
        """The blocks of the own points of series ``attr_id`` (summarised on first use)."""
        return self.blocks_of(reads, database, [attr_id], None)[attr_id]

    def blocks_of(
        self, reads: ProjectReads, database: str, attr_ids: Sequence[int], store: Any
    ) -> dict[int, Blocks]:
        """The blocks of the own points of each series of ``attr_ids``: from memory, else the
        store, else the points (then queued to be kept in ``store``, when given).

        A summary of fewer points (a running run's, from before its last appends) is extended:
        its whole blocks are kept and only the points after them are read.
        """
        out: dict[int, Blocks] = {}
        older: dict[int, tuple[tuple[int, int, int], Blocks]] = {}
        signatures = {a: chunk_signature(reads, a) for a in dict.fromkeys(attr_ids)}
        with self._lock:
            for attr_id, signature in signatures.items():
                found = self._entries.get((database, attr_id))
                if found is None:
                    continue
                if found[0] == signature:
                    self._entries.move_to_end((database, attr_id))
                    out[attr_id] = found[1]
                else:
                    older[attr_id] = found
        missing = [a for a in signatures if a not in out]
        if not missing:
            return out
        stored = read_summaries(reads, missing) if self.persist else {}
        made: list[StoredSummary] = []
        for attr_id in missing:
            signature = signatures[attr_id]
            row = stored.get(attr_id)
            if row is not None and row.signature == signature:
                blocks = _from_stored(row)
                self.loaded += 1
            else:
                if row is not None and (
                    attr_id not in older or older[attr_id][0][1] < row.signature[1]
                ):
                    older[attr_id] = (row.signature, _from_stored(row))
                extended = None
                if attr_id in older:
                    extended = _extend(reads, attr_id, *older[attr_id], signature)
                if extended is not None:
                    blocks = extended
                    self.extended += 1
                else:
                    points = own_float_points(reads, attr_id)
                    blocks = summarise(points.steps / MICRO, points.values, points.timestamps)
                    self.made += 1
                if len(blocks) and signature[0] > 0:
                    made.append(_to_stored(attr_id, signature, blocks))
            out[attr_id] = blocks
            self._put((database, attr_id), signature, blocks)
        if made and store is not None and self.persist:
            _persister().put(store, made)
        return out

    def _put(self, key: tuple[str, int], signature: tuple[int, int, int], blocks: Blocks) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            self._entries[key] = (signature, blocks)
            self._bytes += blocks.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        """Forget every summary held in memory (what a server restart does)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def _extend(
    reads: ProjectReads,
    attr_id: int,
    old_signature: tuple[int, int, int],
    old: Blocks,
    signature: tuple[int, int, int],
) -> Blocks | None:
    """``old`` (the blocks of an earlier state of the series) brought up to ``signature`` by
    summarising only the points after its whole blocks; None when it cannot be (fewer points,
    or the counts do not add up: the series is not ``old`` plus appends)."""
    _, old_points, old_last = old_signature
    _, points, last = signature
    if old_points <= 0 or points < old_points or last < old_last:
        return None
    if points == old_points:  # pieces merged into chunks: the same points
        return old if last == old_last else None
    keep = min(old_points // BLOCK, len(old))
    if keep == 0:
        return None
    kept = old.take(slice(0, keep))
    after = round(float(kept.last_x[-1]) * MICRO) + 1
    new = own_float_points(reads, attr_id, after, None)
    if keep * BLOCK + len(new) != points:
        return None
    return Blocks.concat([kept, summarise(new.steps / MICRO, new.values, new.timestamps)])


class _Persister:
    """One background thread that writes new summaries to their store, a few series per write
    transaction so that loggers never wait long for the store's write lock. A summary that
    cannot be written (store busy or closed) is dropped: it is made again on a later view."""

    BATCH = 16

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Any, list[StoredSummary]]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="despina-chart-summaries")
        self._thread.daemon = True
        self._thread.start()

    def put(self, store: Any, summaries: list[StoredSummary]) -> None:
        self._queue.put((store, summaries))

    def join(self) -> None:
        self._queue.join()

    def _run(self) -> None:
        while True:
            store, summaries = self._queue.get()
            try:
                for at in range(0, len(summaries), self.BATCH):
                    with store.write() as conn:
                        write_summaries(conn, summaries[at : at + self.BATCH])
            except Exception as exc:  # a cache: never let it take the server down
                _log.debug("chart summaries not kept in the store: %s", exc)
            finally:
                self._queue.task_done()


_PERSISTER: _Persister | None = None
_PERSISTER_LOCK = threading.Lock()


def _persister() -> _Persister:
    global _PERSISTER
    with _PERSISTER_LOCK:
        if _PERSISTER is None:
            _PERSISTER = _Persister()
        return _PERSISTER


def wait_persisted() -> None:
    """Wait until every summary queued so far is written to its store (tests, benchmarks)."""
    with _PERSISTER_LOCK:
        persister = _PERSISTER
    if persister is not None:
        persister.join()


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
    reads: ProjectReads,
    database: str,
    series: SeriesSet,
    cache: SummaryCache,
    store: Any = None,
) -> list[Blocks]:
    """Per series of ``series``, the blocks of its points through its full lineage (new
    summaries are kept in ``store`` when given).

    An ancestor contributes the blocks at or below the fork step; the one block that straddles
    the fork step is summarised again from its points at or below it.
    """
    memo: dict[int, list[LineageLink]] = {}
    # the query package's lineage helpers still take the connection (they move behind the
    # store contract with the rest of despina.query)
    conn = reads.conn
    chains = []
    for i in range(len(series)):
        request = series.request(i)
        chains.append(list(attr_chain(conn, request, effective_links(conn, request, "full", memo))))
    wanted = [attr_id for chain in chains for _, attr_id in chain]
    found = cache.blocks_of(reads, database, wanted, store)
    out = []
    for chain in chains:
        parts = []
        for link, attr_id in chain:
            blocks = found[attr_id]
            if link.upper_step is None:
                parts.append(blocks)
                continue
            upper = link.upper_step / MICRO
            whole = int(np.searchsorted(blocks.last_x, upper, side="right"))
            parts.append(blocks.take(slice(0, whole)))
            if whole < len(blocks) and blocks.first_x[whole] <= upper:
                start = round(float(blocks.first_x[whole]) * MICRO)
                points = own_float_points(reads, attr_id, start, link.upper_step)
                parts.append(
                    summarise(
                        points.steps / MICRO,
                        points.values,
                        points.timestamps,
                        block=len(points) or 1,
                    )
                )
        out.append(Blocks.concat(parts))
    return out


def bucket_blocks(
    blocks: Blocks, low: float, high: float, buckets: int
) -> tuple[F64, F64, F64, F64, int]:
    """Buckets of one series over ``[low, high]`` from its blocks: per bucket the drawn point
    (the series' first point for the bucket that holds it, else the bucket's last) and the
    finite range; plus
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
    if start == 0:  # the series' first bucket is drawn from its first point
        x[0], y[0] = part.first_x[0], part.first_y[0]
    return x, y, lows, highs, len(part)
