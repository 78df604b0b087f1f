"""The in-memory log buffer and the background thread that flushes it into the store.

Logging calls only append to lists under a lock (a few hundred nanoseconds). The flusher wakes
every ``FLUSH_INTERVAL`` seconds, or sooner when much is buffered, turns what it took into one
columnar :class:`~despina.store.batch.Batch` and applies it in one short transaction. Calls that
logged the same keys in a row (the usual training loop) are converted to floats with a single
NumPy call per group, which is what makes a wide ``log_metrics`` cheap.

A killed process loses at most what was logged since the last flush (≤ ``FLUSH_INTERVAL``). A
flush that fails (for example a disk that is full) keeps its data and is retried, and the
failure is reported through the error callback.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from despina.store.batch import (
    Assign,
    Batch,
    IngestIssue,
    MetricColumn,
    ModifySet,
    PointAppend,
    PreviewPoint,
)
from despina.store.blobs import put_blob
from despina.store.sysattrs import ping_timeout_s
from despina.store.writer import RunWriter

__all__ = ["FLUSH_INTERVAL", "FileRequest", "Flusher", "LagMonitor", "LogBuffer"]

logger = logging.getLogger("despina")

FLUSH_INTERVAL = 0.5
"""Seconds between flushes: the most a killed process can lose."""

FLUSH_EARLY_POINTS = 4_000_000
"""Buffered points that wake the flusher before the interval ends."""

MAX_BUFFERED_POINTS = 20_000_000
"""Buffered points at which logging calls wait for the flusher (memory bound, ~0.5 GB)."""

PING_INTERVAL = 10.0
"""Longest time between liveness pings of an idle run (``sys/ping_time``, ``sys/state``);
shorter when the ping timeout is short (a third of it)."""


@dataclass(slots=True)
class FileRequest:
    """A file to copy into the store and reference from ``path`` (a step for file series)."""

    path: str
    source: Path | bytes
    storage_key: str
    mime_type: str
    step: int | None
    timestamp: int


@dataclass(slots=True)
class _Taken:
    records: list[tuple[tuple[str, ...], tuple[Any, ...], int, int]] = field(default_factory=list)
    previews: list[PreviewPoint] = field(default_factory=list)
    ops: list[Assign | ModifySet] = field(default_factory=list)
    points: list[PointAppend] = field(default_factory=list)
    files: list[FileRequest] = field(default_factory=list)
    sequence: int = 0


class LogBuffer:
    """What logging calls appended and the flusher has not taken yet.

    A lock-free queue: ``deque.append`` and ``popleft`` are atomic, so the logging thread never
    waits on the flusher. Metric calls are queued as ``(keys, values, step, ts)`` tuples, other
    calls as ``(kind, items)``. ``enqueued`` counts queued entries; the flusher reports how many it
    stored, which is what ``wait_for_processing`` waits on.
    """

    def __init__(self) -> None:
        self.queue: deque[tuple[Any, ...]] = deque()
        self.points = 0  # a hint for early flushes and back-pressure, not an exact count
        self.enqueued = 0
        self.first_unstored_at: float | None = None  # monotonic time; for the lag callback
        self._counter = itertools.count(1)
        self.room = threading.Event()

    def add_metrics(
        self, keys: tuple[str, ...], values: tuple[Any, ...], step: int, ts: int
    ) -> int:
        self.queue.append((keys, values, step, ts))
        self.enqueued = next(self._counter)
        self.points += len(keys)
        if self.first_unstored_at is None:
            self.first_unstored_at = time.monotonic()
        if self.points >= MAX_BUFFERED_POINTS:  # the flusher is far behind: let it catch up
            self.room.clear()
            self.room.wait(60)
        return self.points

    def add(self, kind: str, items: list[Any]) -> None:
        """Queue ``ops``, ``previews``, ``points`` or ``files``."""
        self.queue.append((kind, items))
        self.enqueued = next(self._counter)
        if self.first_unstored_at is None:
            self.first_unstored_at = time.monotonic()
        if kind == "points":
            self.points += len(items)

    def take(self, into: _Taken) -> None:
        """Move everything queued so far into ``into``."""
        queue = self.queue
        count = len(queue)
        for _ in range(count):
            entry = queue.popleft()
            if len(entry) == 4:
                into.records.append(entry)
            else:
                getattr(into, entry[0]).extend(entry[1])
        into.sequence += count
        self.points = 0
        self.room.set()


def metric_columns(
    records: list[tuple[tuple[str, ...], tuple[Any, ...], int, int]],
    dropped: Callable[[str], None],
) -> dict[str, MetricColumn]:
    """Turn buffered ``log_metrics`` calls into one column of points per series."""
    parts: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    start = 0
    while start < len(records):
        keys = records[start][0]
        end = start + 1
        while end < len(records) and records[end][0] == keys:
            end += 1
        group = records[start:end]
        steps = np.fromiter((r[2] for r in group), dtype=np.int64, count=len(group))
        stamps = np.fromiter((r[3] for r in group), dtype=np.int64, count=len(group))
        matrix = _as_float_matrix([r[1] for r in group], len(keys))
        if matrix is not None:
            for column, key in enumerate(keys):
                slot = parts.setdefault(key, ([], [], []))
                slot[0].append(steps)
                slot[1].append(matrix[:, column])
                slot[2].append(stamps)
        else:  # some value is not a plain number: convert one by one, dropping the bad ones
            for row_keys, values, step, stamp in group:
                for key, value in zip(row_keys, values, strict=True):
                    number = _to_float(key, value, dropped)
                    if number is None:
                        continue
                    slot = parts.setdefault(key, ([], [], []))
                    slot[0].append(np.array([step], dtype=np.int64))
                    slot[1].append(np.array([number], dtype=np.float64))
                    slot[2].append(np.array([stamp], dtype=np.int64))
        start = end
    return {
        key: MetricColumn(
            np.concatenate(s) if len(s) > 1 else s[0],
            np.concatenate(v) if len(v) > 1 else v[0],
            np.concatenate(t) if len(t) > 1 else t[0],
        )
        for key, (s, v, t) in parts.items()
    }


def _as_float_matrix(rows: list[tuple[Any, ...]], width: int) -> np.ndarray[Any, Any] | None:
    """Rows of plain numbers as one float64 matrix, or ``None`` if any value needs care."""
    try:
        matrix = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        return None
    if matrix.ndim != 2 or matrix.shape[1] != width or matrix.dtype.kind not in "fiub":
        return None
    return matrix.astype(np.float64, copy=False)


def _to_float(key: str, value: Any, dropped: Callable[[str], None]) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        dropped(f"metric {key!r}: cannot convert {value!r:.80} to float; point dropped")
        return None


class Flusher(threading.Thread):
    """Moves the buffer into the store until stopped; pings the run while idle."""

    def __init__(
        self,
        buffer: LogBuffer,
        writer: RunWriter,
        blobs_dir: Path,
        on_issues: Callable[[list[IngestIssue]], None],
        on_failure: Callable[[BaseException], None],
        dropped: Callable[[str], None],
    ) -> None:
        super().__init__(name="despina-flusher", daemon=True)
        self.buffer = buffer
        self.writer = writer
        self.blobs_dir = blobs_dir
        self.on_issues = on_issues
        self.on_failure = on_failure
        self.dropped = dropped
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.progress = threading.Condition()
        self.done_sequence = 0
        self._last_write = time.monotonic()
        self._ping_every = min(PING_INTERVAL, ping_timeout_s() / 3)
        self._pending = _Taken()
        self._issues: list[IngestIssue] = []

    def run(self) -> None:
        while True:
            self.wake.wait(FLUSH_INTERVAL)
            self.wake.clear()
            stopping = self.stopping.is_set()
            try:
                self.flush_once()
            except BaseException as exc:  # keep the thread alive: data stays buffered
                self.on_failure(exc)
                if stopping:
                    return
                time.sleep(FLUSH_INTERVAL)
                continue
            if stopping:
                return

    def flush_once(self) -> None:
        taken = self._pending  # a failed flush's data comes first, then what was queued since
        self.buffer.take(taken)
        batch = self._batch(taken)
        if not batch.is_empty():
            # raises on failure: everything stays in _pending for the retry
            self._issues.extend(self.writer.apply(batch))
            self._last_write = time.monotonic()
        elif time.monotonic() - self._last_write > self._ping_every:
            self.writer.ping()
            self._last_write = time.monotonic()
        self._pending = _Taken(sequence=taken.sequence)
        # everything taken is stored: the lag clock restarts with what arrived meanwhile
        self.buffer.first_unstored_at = time.monotonic() if self.buffer.queue else None
        with self.progress:
            self.done_sequence = taken.sequence
            self.progress.notify_all()
        if self._issues:
            issues, self._issues = self._issues, []
            self.on_issues(issues)

    def _batch(self, taken: _Taken) -> Batch:
        batch = Batch(ops=list(taken.ops), previews=taken.previews, points=taken.points)
        if taken.records:
            batch.metrics = metric_columns(taken.records, self.dropped)
        for request in taken.files:
            try:
                sha, size = put_blob(self.blobs_dir, request.source)
            except OSError as exc:
                self.dropped(f"file for {request.path!r} could not be stored: {exc}; skipped")
                continue
            ref = {"path": request.storage_key, "size_bytes": size, "mime_type": request.mime_type}
            batch.blobs.append((request.storage_key, sha, size, request.mime_type))
            if request.step is None:
                batch.ops.append(Assign(request.path, "file", ref))
            else:
                batch.points.append(
                    PointAppend(
                        request.path,
                        "file_series",
                        request.step,
                        request.timestamp,
                        json.dumps(ref),
                    )
                )
        return batch

    def wait_for(self, sequence: int, timeout: float | None) -> bool:
        """Wait until everything logged up to ``sequence`` is in the store."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.wake.set()
        with self.progress:
            while self.done_sequence < sequence:
                if not self.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.progress.wait(0.05 if remaining is None else min(0.05, remaining))
                self.wake.set()
        return True


class LagMonitor(threading.Thread):
    """Every second, checks whether the oldest data not yet stored is older than ``threshold``
    seconds, and calls ``callback`` once per such episode (a slow or locked store)."""

    def __init__(self, buffer: LogBuffer, threshold: float, callback: Callable[[], None]) -> None:
        super().__init__(name="despina-lag-monitor", daemon=True)
        self.buffer = buffer
        self.threshold = threshold
        self.callback = callback
        self.stopping = threading.Event()

    def run(self) -> None:
        lagging = False
        while not self.stopping.wait(1.0):
            since = self.buffer.first_unstored_at
            behind = since is not None and time.monotonic() - since > self.threshold
            if behind and not lagging:
                try:
                    self.callback()
                except Exception:
                    logger.exception("despina: the async lag callback raised")
            lagging = behind
