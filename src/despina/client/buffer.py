"""The in-memory log buffer and the background thread that flushes it into the store.

Logging calls only append to lists under a lock (a few hundred nanoseconds). The flusher wakes
every ``FLUSH_INTERVAL`` seconds, or sooner when much is buffered, turns what it took into one
columnar :class:`~despina.store.batch.Batch` and applies it in one short transaction. Calls that
logged the same keys in a row (the usual training loop) are converted to floats with a single
NumPy call per group, which is what makes a wide ``log_metrics`` cheap.

A killed process loses at most what was logged since the last flush (≤ ``FLUSH_INTERVAL``). A
flush that fails (for example a disk that is full, or a store locked by another process) keeps
its data and is retried; the failure is reported through the error callback once per episode.
Memory stays bounded meanwhile: the buffer counts what was accepted and not yet stored (the
queue and the flusher's retained data alike) and, past ``MAX_BUFFERED_BYTES``, logging calls
wait for the store, reported once per episode through the warning callback. A file whose copy
into the store fails is kept (its path, or its bytes) and retried with the next flush; only a
source that can no longer be read is dropped, with a warning.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from despina.errors import StoreError
from despina.store.batch import (
    Assign,
    Batch,
    IngestIssue,
    MetricColumn,
    ModifySet,
    PointAppend,
    PreviewPoint,
)
from despina.store.blobs import BlobStore
from despina.store.sysattrs import ping_timeout_s
from despina.store.writer import RunWriter

__all__ = [
    "FLUSH_INTERVAL",
    "MAX_BUFFERED_BYTES",
    "REMOTE_FLUSH_EARLY_POINTS",
    "FileRequest",
    "FilesNotStored",
    "FlushPump",
    "Flusher",
    "LagMonitor",
    "LogBuffer",
    "MetricValues",
    "row_packer",
]

logger = logging.getLogger("despina")

FLUSH_INTERVAL = 0.5
"""Seconds between flushes: the most a killed process can lose."""

FLUSH_EARLY_POINTS = 4_000_000
"""Buffered points that wake the flusher before the interval ends."""

REMOTE_FLUSH_EARLY_POINTS = 500_000
"""The same for a run logging to a server: smaller batches keep the server (another process,
often another core) writing while the training loop logs the next ones."""

MAX_BUFFERED_BYTES = 512 * 1024 * 1024
"""Estimated memory of data accepted and not yet stored at which logging calls wait for the
store (about 16M metric values). Held across failed flushes: a failing store cannot make the
process grow past it (plus one call per logging thread)."""

CLOSE_RETRY_SECONDS = 60.0
"""How long ``close()`` without a timeout keeps retrying a failing store before it gives up."""

# estimated memory per buffered item (Python objects, not the stored size)
_CALL_BYTES = 120
_VALUE_BYTES = 32
_ITEM_BYTES = 160
_FILE_BYTES = 400

IDLE_POLL_SECONDS = 10.0
"""How long the flusher thread, with no run open, keeps waking every ``FLUSH_INTERVAL``."""

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
    stored: tuple[str, int] | None = None
    """``(sha256, size)`` once the content is in the store (a retry does not copy it again)."""


class FilesNotStored(OSError):
    """Some files could not be copied into the store; they are kept and retried.

    ``signature`` is the underlying error alone: more files failing the same way is the same
    episode, not a new failure to report.
    """

    def __init__(self, message: str, signature: str) -> None:
        super().__init__(message)
        self.signature = signature


MetricValues = bytes | tuple[Any, ...]
"""One ``log_metrics`` call's values: packed as float64 (:func:`row_packer`) when every value
converts, else the values as given (converted, or dropped, one by one when flushed)."""


@dataclass(slots=True)
class _Taken:
    records: list[tuple[tuple[str, ...], MetricValues, int, int]] = field(default_factory=list)
    previews: list[PreviewPoint] = field(default_factory=list)
    ops: list[Assign | ModifySet] = field(default_factory=list)
    points: list[PointAppend] = field(default_factory=list)
    files: list[FileRequest] = field(default_factory=list)
    marks: list[tuple[int, str, list[Any]]] = field(default_factory=list)
    """Every non-metric entry as ``(metric records before it, kind, items)``: the logging order,
    from which a batch's first type per path is worked out (see :func:`first_types`)."""
    sequence: int = 0
    accepted: int = 0
    """``LogBuffer.accepted`` when last taken: what storing everything taken accounts for."""


def _item_type(kind: str, item: Any) -> str:
    if kind == "ops":
        return str(item.type) if isinstance(item, Assign) else "string_set"
    if kind == "files":
        return "file" if item.step is None else "file_series"
    if kind == "points":
        return str(item.type)
    return "float_series"  # previews


def _cost(kind: str, items: list[Any]) -> int:
    """Estimated memory of a queued non-metric entry."""
    if kind == "points":
        return sum(_ITEM_BYTES + len(p.value) for p in items)
    if kind == "files":
        return sum(_file_cost(f) for f in items)
    if kind == "ops":
        return sum(
            _ITEM_BYTES + (len(op.value) if isinstance(getattr(op, "value", None), str) else 0)
            for op in items
        )
    return _ITEM_BYTES * len(items)


def _file_cost(request: FileRequest) -> int:
    return _FILE_BYTES + (len(request.source) if isinstance(request.source, bytes) else 0)


def first_types(taken: _Taken, metric_paths: Any) -> dict[str, str]:
    """The type each path was logged with first, for :attr:`Batch.first_types`.

    Non-metric entries are scanned in order; a metric path that also appears there is looked up
    among the metric records before it (rare: only a path logged with two types gets there).
    """
    first: dict[str, tuple[int, str]] = {}
    for position, kind, items in taken.marks:
        for item in items:
            if item.path not in first:
                first[item.path] = (position, _item_type(kind, item))
    out = {path: type_ for path, (_, type_) in first.items()}
    for path in metric_paths:
        found = first.get(path)
        if found is None or found[1] == "float_series":
            continue
        if any(path in record[0] for record in itertools.islice(taken.records, found[0])):
            out[path] = "float_series"
    return out


class LogBuffer:
    """What logging calls appended and the store has not taken yet.

    A lock-free queue: ``deque.append`` and ``popleft`` are atomic, so the logging thread never
    waits on the flusher while there is room. Metric calls are queued as
    ``(keys, values, step, ts)`` tuples, other calls as ``(kind, items)``. ``enqueued`` counts
    queued entries; the flusher reports how many it stored, which is what
    ``wait_for_processing`` waits on.

    Back-pressure: ``accepted`` (estimated bytes ever queued) minus ``stored`` (what the flusher
    reports stored) is the memory held for the store, whether still queued or retained by the
    flusher across failed attempts. A call that takes it to ``limit`` or more waits until the
    store catches up; the first such call of an episode calls ``on_full``.
    """

    def __init__(
        self,
        limit: int | None = None,
        on_full: Callable[[int, int], None] | None = None,
    ) -> None:
        self.queue: deque[tuple[Any, ...]] = deque()
        self.points = 0  # a hint for early flushes, reset when taken
        self.enqueued = 0
        self.first_unstored_at: float | None = None  # monotonic time; for the lag callback
        self._counter = itertools.count(1)
        self.limit = MAX_BUFFERED_BYTES if limit is None else limit
        self.on_full = on_full
        self.accepted = 0
        self.stored = 0
        self.room = threading.Event()
        self.closed = False
        self.consumer: threading.Thread | None = None  # the flusher: never waits, stops waits
        self.wake_consumer: Callable[[], None] = lambda: None
        self.waited = 0  # logging calls that had to wait (an episode may hold several)
        self._full = False  # in a back-pressure episode (reported once)
        self._local = threading.local()

    @property
    def unstored(self) -> int:
        """Estimated bytes accepted and not yet stored."""
        return self.accepted - self.stored

    def add_metrics(self, keys: tuple[str, ...], values: MetricValues, step: int, ts: int) -> int:
        self.queue.append((keys, values, step, ts))
        self.enqueued = next(self._counter)
        n = len(keys)
        self.points += n
        self.accepted += _CALL_BYTES + _VALUE_BYTES * n
        if self.first_unstored_at is None:
            self.first_unstored_at = time.monotonic()
        if self.accepted - self.stored >= self.limit:
            self._wait_for_room()
        return self.points

    def add(self, kind: str, items: list[Any]) -> None:
        """Queue ``ops``, ``previews``, ``points`` or ``files``."""
        self.queue.append((kind, items))
        self.enqueued = next(self._counter)
        self.accepted += _cost(kind, items)
        if self.first_unstored_at is None:
            self.first_unstored_at = time.monotonic()
        if kind == "points":
            self.points += len(items)
        if self.accepted - self.stored >= self.limit:
            self._wait_for_room()

    def take(self, into: _Taken) -> None:
        """Move everything queued so far into ``into``."""
        accepted = self.accepted  # read first: every entry counted here is already queued
        queue = self.queue
        records = into.records
        count = len(queue)
        for _ in range(count):
            entry = queue.popleft()
            if len(entry) == 4:
                records.append(entry)
            else:
                kind, items = entry
                getattr(into, kind).extend(items)
                into.marks.append((len(records), kind, items))
        into.sequence += count
        into.accepted = accepted
        self.points = 0

    def note_stored(self, stored: int) -> None:
        """The flusher stored everything accepted up to ``stored`` (estimated bytes)."""
        self.stored = max(self.stored, stored)
        if self.accepted - self.stored < self.limit // 2:
            self._full = False  # the episode ends once the backlog is well below the bound
        self.room.set()

    def release(self) -> None:
        """Stop every wait for room (the run is closing)."""
        self.closed = True
        self.room.set()

    def _wait_for_room(self) -> None:
        """Block the logging thread until the store has taken enough (back-pressure)."""
        consumer = self.consumer
        if (
            self.closed
            or consumer is None
            or threading.current_thread() is consumer
            or getattr(self._local, "waiting", False)  # a callback or console write meanwhile
        ):
            return
        self._local.waiting = True
        try:
            self.waited += 1
            if not self._full:
                self._full = True
                if self.on_full is not None:
                    self.on_full(self.accepted - self.stored, self.limit)
            while not self.closed and consumer.is_alive():
                self.room.clear()
                if self.accepted - self.stored < self.limit:
                    return
                self.wake_consumer()  # a full buffer is worth a flush now
                self.room.wait(1.0)
        finally:
            self._local.waiting = False


def metric_columns(
    records: list[tuple[tuple[str, ...], MetricValues, int, int]],
    dropped: Callable[[str], None],
) -> dict[str, MetricColumn]:
    """Turn buffered ``log_metrics`` calls into one column of points per series."""
    parts: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    start = 0
    while start < len(records):
        keys = records[start][0]
        end = start + 1
        # the calls of a loop share one keys tuple (``despina.Run.log_metrics``): ``is`` first
        while end < len(records) and (records[end][0] is keys or records[end][0] == keys):
            end += 1
        group = records[start:end]
        steps = np.fromiter((r[2] for r in group), dtype=np.int64, count=len(group))
        stamps = np.fromiter((r[3] for r in group), dtype=np.int64, count=len(group))
        if start == 0 and end == len(records) and len(keys) >= _WIDE_CALL:
            rows = _packed_columns([r[1] for r in group], len(keys))
            if rows is not None:
                return {
                    key: MetricColumn(steps, row, stamps)
                    for key, row in zip(keys, rows, strict=True)
                }
        matrix = _as_float_matrix([r[1] for r in group], len(keys))
        if matrix is not None and start == 0 and end == len(records):
            # every call logged the same keys (a training loop): one contiguous row per key
            rows = np.ascontiguousarray(matrix.T)
            return {
                key: MetricColumn(steps, row, stamps) for key, row in zip(keys, rows, strict=True)
            }
        if matrix is not None:
            for column, key in enumerate(keys):
                slot = parts.setdefault(key, ([], [], []))
                slot[0].append(steps)
                slot[1].append(matrix[:, column])
                slot[2].append(stamps)
        else:  # some value is not a plain number: convert one by one, dropping the bad ones
            for row_keys, values, step, stamp in group:
                if type(values) is bytes:
                    values = row_packer(len(row_keys)).unpack(values)
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


_WIDE_CALL = 256
"""Calls of at least this many values are written into their key-by-key matrix one call at a
time (:func:`_packed_columns`); narrower ones are joined, then transposed."""


def _packed_columns(rows: list[MetricValues], width: int) -> np.ndarray[Any, Any] | None:
    """Packed calls of ``width`` values as one row per key (each call a column), or ``None`` if
    some call is not packed.

    Written call by call (a strided column each, ~1 us per call): no joined copy of every call
    to transpose (in a fresh process each new 1.6 MB buffer costs ~1 ms of page faults).
    """
    packed = [row for row in rows if isinstance(row, bytes)]
    if len(packed) < len(rows):
        return None
    columns = np.empty((width, len(packed)))
    for at, row in enumerate(packed):
        columns[:, at] = np.frombuffer(row, dtype="<f8")
    return columns


def _as_float_matrix(rows: list[MetricValues], width: int) -> np.ndarray[Any, Any] | None:
    """Rows of plain numbers as one float64 matrix, or ``None`` if any value needs care."""
    packed_rows = [row for row in rows if type(row) is bytes]
    if rows and len(packed_rows) == len(rows):  # the usual case: packed when logged, NaN included
        # joined straight into a bytearray: one copy, writable
        return np.frombuffer(bytearray().join(packed_rows), dtype="<f8").reshape(-1, width)
    if packed_rows:
        packer = row_packer(width)
        rows = [packer.unpack(row) if type(row) is bytes else row for row in rows]
    if rows and all(type(v) is float for v in rows[0]):
        # Python floats (the usual case): packed row by row into float64 bytes, ~2x faster
        # than np.fromiter and ~3x faster than np.array's shape and type discovery. A value
        # that is not a number raises; a NaN may be an odd value read as NaN: either way the
        # matrix is made again the careful way below.
        try:
            packer = row_packer(width)
            packed = bytearray(b"".join([packer.pack(*row) for row in rows]))
            flat = np.frombuffer(packed, dtype="<f8")
        except (struct.error, ValueError, TypeError, OverflowError):
            flat = None
        if flat is not None and not np.isnan(flat).any():
            return flat.reshape(len(rows), width)
    try:
        matrix = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        return None
    if matrix.ndim != 2 or matrix.shape[1] != width or matrix.dtype.kind not in "fiub":
        return None
    return matrix.astype(np.float64, copy=False)


@functools.lru_cache(maxsize=64)
def row_packer(width: int) -> struct.Struct:
    """Packs one ``log_metrics`` call's ``width`` values as little-endian float64 (each value
    converted as ``float()`` converts it, strings aside: those raise)."""
    return struct.Struct(f"<{width}d")


def _unreadable(source: Path | bytes) -> bool:
    """Whether a file's source is gone (retrying cannot help), as opposed to the store failing."""
    return isinstance(source, Path) and not (source.is_file() and os.access(source, os.R_OK))


def _to_float(key: str, value: Any, dropped: Callable[[str], None]) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        dropped(f"metric {key!r}: cannot convert {value!r:.80} to float; point dropped")
        return None


class Flusher:
    """Moves one run's buffer into the store until stopped; pings the run while idle.

    Not a thread of its own: the process-wide :class:`FlushPump` thread calls :meth:`step`
    every ``FLUSH_INTERVAL`` (or sooner when woken), and ``close()`` of a run may run the final
    flush in its own thread (:meth:`finish_inline`). A lock keeps the two from flushing the same
    run at once. Starting and closing a run therefore costs no thread start, no thread join and
    no new SQLite connection (each thread keeps its connection to a store).

    A failed flush keeps everything it took (``_pending``) and is retried every
    ``FLUSH_INTERVAL``; ``on_failure`` hears of the first failure of an episode (and of a
    different error within it), and the recovery is logged. Once stopping, a failing flush is
    retried until ``give_up_at`` (monotonic time) at the latest.
    """

    def __init__(
        self,
        buffer: LogBuffer,
        writer: RunWriter,
        blobs: BlobStore,
        on_issues: Callable[[list[IngestIssue]], None],
        on_failure: Callable[[BaseException], None],
        dropped: Callable[[str], None],
        before_flush: Callable[[bool], None] | None = None,
    ) -> None:
        self.buffer = buffer
        self.writer = writer
        self.blobs = blobs
        self.on_issues = on_issues
        self.on_failure = on_failure
        self.dropped = dropped
        self.before_flush = before_flush
        """Called (with ``final``) before each flush: late data such as source tracking."""
        self.stopping = False
        self.give_up_at: float | None = None
        self.progress = threading.Condition()
        self.done_sequence = 0
        self.failures = 0  # failed attempts in the current episode
        self.due = time.monotonic() + FLUSH_INTERVAL  # next periodic flush (monotonic)
        self.woken = False
        self.finished = False
        self._finished = threading.Event()
        # reentrant: a callback run by a flush (on the flusher thread) may close its own run
        self._flushing = threading.RLock()
        self._last_failure: str | None = None
        self._file_error = ""
        self._last_write = time.monotonic()
        self._ping_every = min(PING_INTERVAL, ping_timeout_s() / 3)
        self._pending = _Taken()
        self._issues: list[IngestIssue] = []
        self._last_writes: Callable[[Any], None] | None = None
        self._wrote_last = False
        self._pump: FlushPump | None = None

    def start(self) -> None:
        """Hand the run to the process-wide pump (starting its thread on first use)."""
        self._pump = FlushPump.get()
        self.buffer.consumer = self._pump.thread
        self.buffer.wake_consumer = self.wake
        self._pump.add(self)

    def wake(self) -> None:
        """Flush as soon as possible (from any thread)."""
        self.woken = True
        if self._pump is not None:
            self._pump.notify()

    def is_alive(self) -> bool:
        """Whether flushing goes on (not stopped and done, nor given up)."""
        return not self.finished

    def join(self, timeout: float | None = None) -> None:
        """Wait until the run's final flush is done (or given up)."""
        self._finished.wait(timeout)

    def stop(self, give_up_at: float, *, wake: bool = True) -> None:
        """Flush what is left, retrying a failing store until ``give_up_at``, then finish.

        ``wake=False``: the caller runs the final flush itself (:meth:`finish_inline`).
        """
        self.give_up_at = give_up_at
        self.stopping = True
        if wake:
            self.wake()

    def step(self) -> None:
        """One flush attempt (the pump's): due again in ``FLUSH_INTERVAL`` unless finished."""
        with self._flushing:
            if self.finished:
                return
            self.woken = False
            self._attempt()

    def finish_inline(self, last_writes: Callable[[Any], None] | None = None) -> bool:
        """The final flush in the calling thread (``close()`` without a timeout).

        ``last_writes(conn)`` (the run's close) runs inside the flush's transaction, which is
        then a durable one: a closing run with data left pays one commit and one fsync, not
        two. Returns whether it ran in a committed flush; not when there was nothing to store
        (or files to retry), nor when the flush failed: the caller then closes the run itself.
        A failure leaves the retries to the pump; the caller then waits with :meth:`join`.
        """
        with self._flushing:
            if self.finished:
                return False
            self._last_writes = last_writes
            self._wrote_last = False
            try:
                self._attempt(inline=True)
            finally:
                self._last_writes = None
            return self._wrote_last

    def on_flusher_thread(self) -> bool:
        """Whether the caller is the thread that flushes (a callback of a flush)."""
        return self._pump is not None and threading.current_thread() is self._pump.thread

    def _attempt(self, *, inline: bool = False) -> None:
        stopping = self.stopping
        now = time.monotonic()
        try:
            if self.before_flush is not None:
                self.before_flush(stopping)
            self.flush_once()
        except BaseException as exc:  # data stays in _pending for the retry
            if inline and not isinstance(exc, Exception):  # Ctrl-C in close(): the caller's
                self.due = now  # the flusher thread takes over at once
                raise
            self._failed(exc)
            if stopping and (self.give_up_at is None or time.monotonic() >= self.give_up_at):
                self._finish()
            else:
                self.due = time.monotonic() + FLUSH_INTERVAL
            return
        if stopping:
            self._finish()
        else:
            self.due = now + FLUSH_INTERVAL

    def _finish(self) -> None:
        self.finished = True
        self._finished.set()
        with self.progress:
            self.progress.notify_all()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        text = getattr(exc, "signature", None) or f"{type(exc).__name__}: {exc}"
        if self.failures == 1 or text != self._last_failure:
            self.on_failure(exc)
        else:
            logger.debug("despina: storing failed again (attempt %d): %s", self.failures, text)
        self._last_failure = text

    def unstored(self) -> bool:
        """Whether anything taken or queued is not in the store yet."""
        pending = self._pending
        return bool(
            self.buffer.queue
            or pending.records
            or pending.ops
            or pending.points
            or pending.previews
            or pending.files
        )

    def flush_once(self) -> None:
        taken = self._pending  # a failed flush's data comes first, then what was queued since
        self.buffer.take(taken)
        batch, kept = self._batch(taken)
        last_writes = None if kept else self._last_writes  # a kept file is written later
        if not batch.is_empty():
            # raises on failure: everything stays in _pending for the retry
            if last_writes is None:
                self._issues.extend(self.writer.apply(batch))
            else:
                self._issues.extend(
                    self.writer.apply(
                        batch, durable=True, before_commit=lambda conn, _: last_writes(conn)
                    )
                )
                self._wrote_last = True
            self._last_write = time.monotonic()
        elif time.monotonic() - self._last_write > self._ping_every:
            self.writer.ping()
            self._last_write = time.monotonic()
        # stored, except the files kept for a retry: they stay first in line
        self._pending = _Taken(sequence=taken.sequence)
        if kept:
            self._pending.files = kept
            self._pending.marks = [(0, "files", kept)]
        self.buffer.note_stored(taken.accepted - sum(_file_cost(f) for f in kept))
        if self._issues:
            issues, self._issues = self._issues, []
            self.on_issues(issues)
        if kept:
            names = ", ".join(repr(f.path) for f in kept[:3])
            raise FilesNotStored(
                f"{len(kept)} file(s) for {names} could not be copied into the store yet "
                f"({self._file_error}); kept and retried",
                self._file_error,
            )
        if self.failures:
            logger.warning(
                "despina: the store took the logged data again after %d failed attempt(s); "
                "nothing kept was lost",
                self.failures,
            )
            self.failures = 0
            self._last_failure = None
        # everything taken is stored: the lag clock restarts with what arrived meanwhile
        self.buffer.first_unstored_at = time.monotonic() if self.buffer.queue else None
        with self.progress:
            self.done_sequence = taken.sequence
            self.progress.notify_all()

    def _batch(self, taken: _Taken) -> tuple[Batch, list[FileRequest]]:
        """The batch of everything taken, and the files that could not be copied (kept)."""
        batch = Batch(ops=list(taken.ops), previews=taken.previews, points=list(taken.points))
        if taken.records:
            batch.metrics = metric_columns(taken.records, self.dropped)
        if taken.marks:
            batch.first_types = first_types(taken, batch.metrics)
        kept: list[FileRequest] = []
        for request in taken.files:
            if request.stored is None:
                try:
                    request.stored = self.blobs.put(request.source)
                except (OSError, StoreError) as exc:
                    if _unreadable(request.source):
                        self.dropped(
                            f"file {str(request.source)!r} for {request.path!r} can no longer "
                            f"be read: {exc}; skipped"
                        )
                    else:  # the store's side failed: keep the file and try again
                        self._file_error = f"{type(exc).__name__}: {exc}"
                        kept.append(request)
                    continue
            sha, size = request.stored
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
        return batch, kept

    def wait_for(self, sequence: int, timeout: float | None) -> bool:
        """Wait until everything logged up to ``sequence`` is in the store."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.on_flusher_thread():  # a callback of a flush: waiting here would wait forever
            self.step()
            return self.done_sequence >= sequence
        self.wake()
        with self.progress:
            while self.done_sequence < sequence:
                if self.finished:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.progress.wait(0.05 if remaining is None else min(0.05, remaining))
                self.wake()
        return True


class FlushPump:
    """The one thread per process that flushes every open run on its schedule.

    A thread per run cost a thread start and join and a new SQLite connection (a few ms) per
    run, which is what a sweep of many short runs pays; this thread and its connections live
    as long as the process. Runs are flushed one after the other: runs of one store share its
    write lock anyway. After ``fork()`` the child starts its own pump.
    """

    _instance: FlushPump | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.flushers: list[Flusher] = []
        self.sleeping_until = 0.0  # when the thread wakes by itself (monotonic)
        self.idle_since: float | None = None
        self.thread = threading.Thread(target=self._run, name="despina-flusher", daemon=True)

    @classmethod
    def get(cls) -> FlushPump:
        """The pump of this process, started on first use."""
        pump = cls._instance
        if pump is not None and pump.pid == os.getpid():
            return pump
        with cls._guard:
            pump = cls._instance
            if pump is None or pump.pid != os.getpid():
                pump = cls()
                pump.thread.start()
                cls._instance = pump
            return pump

    def add(self, flusher: Flusher) -> None:
        with self.cond:
            self.flushers.append(flusher)
            # a run is first due in FLUSH_INTERVAL: the thread need not be woken (a thread
            # switch per run start) unless it sleeps past that
            if self.sleeping_until > flusher.due:
                self.cond.notify()

    def notify(self) -> None:
        with self.cond:
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                self.flushers = [f for f in self.flushers if not f.finished]
                now = time.monotonic()
                ready = [f for f in self.flushers if f.woken or f.due <= now]
                if not ready:
                    if self.flushers:
                        self.idle_since = None
                        until = min(f.due for f in self.flushers)
                    else:
                        # idle: look again every FLUSH_INTERVAL for a while (the next run of a
                        # sweep then needs no wake-up), then sleep until a run arrives
                        self.idle_since = self.idle_since or now
                        idle_long = now - self.idle_since > IDLE_POLL_SECONDS
                        until = now + (3600.0 if idle_long else FLUSH_INTERVAL)
                    self.sleeping_until = until
                    self.cond.wait(max(until - now, 0.001))
                    continue
                self.sleeping_until = 0.0
            for flusher in ready:
                try:
                    flusher.step()
                except BaseException:  # never lose the thread that flushes every run
                    logger.exception("despina: flushing a run failed unexpectedly")


class LagMonitor(threading.Thread):
    """Every second, checks whether the oldest data not yet stored is older than ``threshold``
    seconds, and calls ``callback`` once per such episode (a slow or locked store)."""

    def __init__(
        self,
        buffer: LogBuffer,
        threshold: float,
        callback: Callable[[], None],
        oldest: Callable[[], float | None] | None = None,
    ) -> None:
        super().__init__(name="despina-lag-monitor", daemon=True)
        self.buffer = buffer
        self.threshold = threshold
        self.callback = callback
        self.oldest = oldest
        """Monotonic time of the oldest data not stored yet (remote: not acknowledged by the
        server); default: the buffer's oldest data not flushed."""
        self.stopping = threading.Event()

    def run(self) -> None:
        lagging = False
        while not self.stopping.wait(1.0):
            since = self.buffer.first_unstored_at if self.oldest is None else self.oldest()
            behind = since is not None and time.monotonic() - since > self.threshold
            if behind and not lagging and not self.stopping.is_set():
                try:
                    self.callback()
                except Exception:
                    logger.exception("despina: the async lag callback raised")
            lagging = behind
