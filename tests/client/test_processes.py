"""Real processes: several writers and a reader on one store, and a writer killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from despina.store import Store
from despina.store.series import lineage, read_float_lineage

WRITER = textwrap.dedent(
    """
    import sys, despina
    run_id, metrics, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with despina.Run(project="ws/multi", run_id=run_id, enable_console_log_capture=False,
                     source_tracking_config=None) as run:
        keys = [f"metrics/m{j}" for j in range(metrics)]
        for step in range(steps):
            run.log_metrics({k: step + j / 100 for j, k in enumerate(keys)}, step=step)
    """
)

READER = textwrap.dedent(
    """
    import sys, time
    from despina.store import Store
    from despina.store.series import read_float_points
    store = Store.open()
    deadline = time.time() + float(sys.argv[1])
    reads = 0
    while time.time() < deadline:
        with store.read() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM attributes WHERE type = 'float_series'")]
            for attr_id in ids[:20]:
                points = read_float_points(conn, attr_id)
                assert (points.steps[1:] > points.steps[:-1]).all()
        reads += 1
    print(reads)
    """
)

KILLED = textwrap.dedent(
    """
    import sys, time, despina
    run = despina.Run(project="ws/kill", run_id="victim", enable_console_log_capture=False,
                      source_tracking_config=None)
    step = 0
    while True:  # about 20,000 steps/s: a fast training loop, not a flood of the flusher
        run.log_metrics({"a": float(step), "b": -float(step)}, step=step)
        step += 1
        if step % 100 == 0:
            print(step, time.time(), flush=True)
            time.sleep(0.005)
    """
)


def _python(script: str, *args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "DESPINA_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _series(store: Store, run_id: str, path: str) -> list[float]:
    conn = store.connection()
    (pk,) = conn.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return read_float_lineage(conn, lineage(conn, pk), path).values.tolist()


def _check_integrity(store: Store) -> None:
    """SQLite's own check of the file (PostgreSQL keeps its heap consistent by itself)."""
    if store.dialect == "sqlite":
        assert store.connection().execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
def test_four_writers_and_a_reader_lose_nothing(home: Path) -> None:
    Store.open(home)  # create the schema once, before the processes race for it
    writers = [_python(WRITER, f"run-{i}", "20", "5000", home=home) for i in range(4)]
    reader = _python(READER, "3", home=home)
    for proc in [*writers, reader]:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert int(out.strip()) > 0  # the reader made progress
    store = Store.open(home)
    for i in range(4):
        for j in (0, 19):
            values = _series(store, f"run-{i}", f"metrics/m{j}")
            assert values == [step + j / 100 for step in range(5000)]
    _check_integrity(store)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_last_flush_interval(home: Path) -> None:
    proc = _python(KILLED, home=home)
    assert proc.stdout is not None
    progress: list[tuple[int, float]] = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        step, when = line.split()
        progress.append((int(step), float(when)))
        if progress[-1][1] - progress[0][1] > 2.5:
            break
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.time()
    proc.wait(timeout=10)
    store = Store.open(home)
    _check_integrity(store)
    values = _series(store, "victim", "a")
    assert values == [float(s) for s in range(len(values))]  # a gap-free prefix
    assert _series(store, "victim", "b") == [-v for v in values]
    # everything logged more than one second before the kill is stored
    logged_a_second_before = max(s for s, t in progress if t <= killed_at - 1.0)
    assert len(values) >= logged_a_second_before
