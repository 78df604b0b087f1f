"""``despina.Run`` while the store fails (issue #12, finding 9): bounded memory, nothing lost.

The faults are real: another connection holds the database's write lock (every flush fails
with "database is locked" after the busy timeout), or the store's blob directory is replaced
by a plain file (every copy of a file fails with an OSError). While they last, the memory held
for the store stays under the bound (logging calls wait), the callbacks say so once per
episode, and once the fault clears every point and every file is in the store.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import despina
from despina.client import buffer as buffer_module
from despina.exceptions import NeptuneScaleWarning, NeptuneUnexpectedError
from despina.store import Store
from despina.store.blobs import blob_path
from despina.store.series import lineage, read_float_lineage
from despina.types import File

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}
BOUND = 64 * 1024
KEYS = tuple(f"m/{i}" for i in range(10))
STEPS = 3000
CALL_BYTES = buffer_module._CALL_BYTES + buffer_module._VALUE_BYTES * len(KEYS)


class Events:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.warnings: list[BaseException] = []
        self.lags = 0

    def kwargs(self) -> dict[str, Any]:
        return {
            "on_error_callback": lambda exc, _: self.errors.append(exc),
            "on_warning_callback": lambda exc, _: self.warnings.append(exc),
            "async_lag_threshold": 0.5,
            "on_async_lag_callback": self.lag,
        }

    def lag(self) -> None:
        self.lags += 1


def wait_until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def held_records(run: despina.Run) -> int:
    """Metric calls held in memory: still queued or taken by the flusher and not stored."""
    flusher = run._flusher
    assert flusher is not None
    queued = sum(1 for entry in list(run._buffer.queue) if len(entry) == 4)
    return queued + len(flusher._pending.records)


@pytest.mark.sqlite_only  # a SQLite lock held by another connection makes the store fail
def test_a_locked_store_bounds_memory_and_loses_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffer_module, "MAX_BUFFERED_BYTES", BOUND)
    events = Events()
    run = despina.Run(project="ws/proj", run_id="locked", **QUIET, **events.kwargs())
    assert run._store is not None
    run._store.busy_timeout_ms = 100  # the flusher's connection (opened on its first write)
    run.log_metrics(dict.fromkeys(KEYS, 0.0), step=0)
    assert run.wait_for_processing(timeout=10)
    lags_before = events.lags

    blocker = sqlite3.connect(home / "despina.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # every write of the run now fails as busy
    logged = threading.Event()

    def log() -> None:
        for step in range(1, STEPS + 1):
            run.log_metrics({key: float(step) for key in KEYS}, step=step)
        logged.set()

    logger = threading.Thread(target=log)
    logger.start()
    peak_bytes = peak_records = 0
    deadline = time.monotonic() + 3.0  # several failed flushes and retries
    while time.monotonic() < deadline:
        peak_bytes = max(peak_bytes, run._buffer.unstored)
        peak_records = max(peak_records, held_records(run))
        time.sleep(0.005)
    assert not logged.is_set()  # logging waits for the store instead of filling memory
    assert run._buffer.waited >= 1
    assert run._flusher is not None and run._flusher.failures >= 2  # retried, still failing

    # the bound held across retries (plus the one call that found it full)
    assert peak_bytes <= BOUND + CALL_BYTES
    assert peak_records <= BOUND // CALL_BYTES + 2
    # said once per episode: one failure, one "logging waits", one lag
    failures = [e for e in events.errors if "storing logged data failed" in str(e)]
    assert len(failures) == 1 and "locked" in str(failures[0])
    waits = [w for w in events.warnings if isinstance(w, NeptuneScaleWarning)]
    assert len(waits) == 1 and "wait" in str(waits[0]) and "'locked'" in str(waits[0])
    assert events.lags - lags_before == 1

    blocker.execute("ROLLBACK")  # the fault clears
    blocker.close()
    logger.join(30)
    assert logged.is_set()
    assert run.wait_for_processing(timeout=30)
    run.close()
    assert all(isinstance(e, NeptuneUnexpectedError) for e in events.errors)

    conn = Store.open(home).connection()
    pk = conn.execute("SELECT id FROM runs WHERE run_id = 'locked'").fetchone()[0]
    for key in KEYS:
        points = read_float_lineage(conn, lineage(conn, pk), key)
        assert points.steps.tolist() == [s * 1_000_000 for s in range(STEPS + 1)]
        assert points.values.tolist() == [float(s) for s in range(STEPS + 1)]


def test_files_are_kept_while_the_blob_store_fails(home: Path, tmp_path: Path) -> None:
    events = Events()
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights " * 1000)
    run = despina.Run(project="ws/proj", run_id="files", **QUIET, **events.kwargs())
    blobs = home / "blobs"
    shutil.rmtree(blobs)
    blobs.write_text("not a directory")  # every copy into the store fails with an OSError

    run.assign_files({"model/weights": source, "model/card": File(b"card", mime_type="text/plain")})
    run.log_metrics({"loss": 0.5}, step=1)
    assert not run.wait_for_processing(timeout=1.0, verbose=False)  # the files are not stored
    assert run._store is not None
    with run._store.read() as reader:  # a connection of this thread, not the flusher's
        loss = reader.execute("SELECT count FROM attributes WHERE path = 'loss'").fetchone()
    assert tuple(loss) == (1,)  # the rest of the flush is not held back by the files
    run.log_files({"samples": File(b"sample-1", mime_type="text/plain")}, step=1)
    assert not run.wait_for_processing(timeout=1.0, verbose=False)
    failures = [e for e in events.errors if "could not be copied" in str(e)]
    assert len(failures) == 1, events.errors  # once per episode, not per retry
    assert "model/weights" in str(failures[0])

    blobs.unlink()  # the fault clears (a retry may create the directory before this test does)
    blobs.mkdir(exist_ok=True)
    assert run.wait_for_processing(timeout=20)
    run.close()

    store = Store.open(home)
    conn = store.connection()
    pk = conn.execute("SELECT id FROM runs WHERE run_id = 'files'").fetchone()[0]
    stored = {
        path: (type_, count)
        for path, type_, count in conn.execute(
            "SELECT path, type, count FROM attributes WHERE run_id = ? AND path NOT LIKE 'sys/%'",
            (pk,),
        )
    }
    assert stored == {
        "model/weights": ("file", None),
        "model/card": ("file", None),
        "samples": ("file_series", 1),
        "loss": ("float_series", 1),
    }
    hashes = [row[0] for row in conn.execute("SELECT sha256 FROM blobs")]
    contents = sorted(blob_path(store.blobs_dir, sha).read_bytes() for sha in hashes)
    assert contents == sorted([b"weights " * 1000, b"card", b"sample-1"])


@pytest.mark.sqlite_only  # a SQLite lock held by another connection makes the store fail
def test_console_capture_under_a_locked_store_does_not_deadlock(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the flusher's own reports (no callbacks: they are logged to the captured stderr) must
    # never wait for room it alone can make
    monkeypatch.setattr(buffer_module, "MAX_BUFFERED_BYTES", 16 * 1024)
    run = despina.Run(
        project="ws/proj", run_id="console", source_tracking_config=None, runtime_namespace="rt"
    )
    assert run._store is not None
    run._store.busy_timeout_ms = 100
    blocker = sqlite3.connect(home / "despina.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    done = threading.Event()

    def work() -> None:
        for step in range(300):
            print(f"line {step}")
            run.log_metrics({"loss": float(step)}, step=step)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    wait_until(lambda: run._buffer.waited >= 1)
    time.sleep(1.0)  # failures are reported (to stderr, captured) while the worker waits
    blocker.execute("ROLLBACK")
    blocker.close()
    worker.join(30)
    assert done.is_set()
    assert run.wait_for_processing(timeout=30)
    run.close()
    conn = Store.open(home).connection()
    rows = dict(
        conn.execute(
            "SELECT a.path, a.count FROM attributes a JOIN runs r ON r.id = a.run_id "
            "WHERE r.run_id = 'console' AND a.path IN ('loss', 'rt/stdout')"
        ).fetchall()
    )
    assert rows["loss"] == 300
    assert rows["rt/stdout"] >= 300
