"""Writers in several processes on one PostgreSQL store: runs lock their own row, not the store.

SQLite serializes every writer of the database (BEGIN IMMEDIATE); on PostgreSQL a write to a run
takes that run's row lock, so writers of different runs never wait on each other, and writers of
one run take turns without losing what the other wrote (``runs.revision`` makes each re-read the
run's open series after the other's commit). These tests run real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from despina.store import Store
from despina.store.runs import RunSpec, create_run
from despina.store.series import lineage, read_float_lineage

PROJECT = "ws/multi"

# logs ``steps`` steps of ``metrics`` metrics named <prefix><j> to run <run_id>, flushing often
WRITER = textwrap.dedent(
    """
    import sys, despina
    run_id, prefix, metrics, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with despina.Run(project="ws/multi", run_id=run_id, enable_console_log_capture=False,
                     source_tracking_config=None) as run:
        keys = [f"{prefix}{j}" for j in range(metrics)]
        for step in range(steps):
            run.log_metrics({k: step + j / 100 for j, k in enumerate(keys)}, step=step)
            if step % 250 == 0:
                run.wait_for_processing()
    """
)


def _writer(
    url: str, home: Path, run_id: str, prefix: str, metrics: int, steps: int
) -> subprocess.Popen[str]:
    env = {**os.environ, "DESPINA_HOME": str(home), "DESPINA_STORE": url}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, run_id, prefix, str(metrics), str(steps)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err


def _values(store: Store, run_id: str, path: str) -> list[float]:
    conn = store.connection()
    (pk,) = conn.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return read_float_lineage(conn, lineage(conn, pk), path).values.tolist()


@pytest.fixture()
def store(postgres_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "home", url=postgres_url)
    yield opened
    opened.close()


def test_writers_of_different_runs_do_not_wait_on_each_other(
    store: Store, postgres_url: str, tmp_path: Path
) -> None:
    create_run(store, RunSpec(PROJECT, "held"))
    # another writer of run 'held' is in the middle of its transaction (holds the run's lock)
    holder = psycopg.connect(postgres_url)
    try:
        holder.execute("SELECT id FROM runs WHERE run_id = 'held' FOR NO KEY UPDATE")
        waiting = _writer(postgres_url, tmp_path, "held", "m", 5, 500)
        # a writer of another run, started after it, creates its run and logs everything
        # while the lock is held: it never waits on run 'held'
        _finish(_writer(postgres_url, tmp_path, "free", "m", 5, 2000))
        assert _values(store, "free", "m4") == [step + 0.04 for step in range(2000)]
        assert waiting.poll() is None  # still waiting for the run it writes to
        assert store.connection().execute(
            "SELECT count(*) FROM attributes a JOIN runs r ON r.id = a.run_id "
            "WHERE r.run_id = 'held' AND a.path LIKE 'm%'"
        ).fetchone() == (0,)
    finally:
        holder.rollback()
        holder.close()
    _finish(waiting)  # the lock released, it goes on and stores everything
    assert _values(store, "held", "m0") == [float(step) for step in range(500)]


def test_two_processes_logging_to_one_run_lose_no_point(
    store: Store, postgres_url: str, tmp_path: Path
) -> None:
    # both create the run 'shared' at once (one run results, not a duplicate key), then log
    # metrics of their own into it, flush after flush, through its open series and aggregates
    procs = [
        _writer(postgres_url, tmp_path, "shared", prefix, 10, 3000) for prefix in ("a/m", "b/m")
    ]
    for proc in procs:
        _finish(proc)
    conn = store.connection()
    assert conn.execute("SELECT count(*) FROM runs WHERE run_id = 'shared'").fetchone() == (1,)
    for prefix in ("a/m", "b/m"):
        for j in (0, 9):
            assert _values(store, "shared", f"{prefix}{j}") == [
                step + j / 100 for step in range(3000)
            ]
    rows = conn.execute(
        "SELECT a.path, a.count, a.last_step, a.fcount FROM attributes a JOIN runs r "
        "ON r.id = a.run_id WHERE r.run_id = 'shared' AND a.type = 'float_series'"
    ).fetchall()
    assert len(rows) == 20
    assert {tuple(row[1:]) for row in rows} == {(3000, 2999 * 10**6, 3000)}


def test_one_new_run_id_created_at_once_by_many_threads_is_one_run(store: Store) -> None:
    import threading

    created: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def create() -> None:
        start.wait()
        try:
            created.append(create_run(store, RunSpec(PROJECT, "same-id")).pk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(set(created)) == 1 and len(created) == 6
    rows = store.connection().execute("SELECT short_no FROM runs").fetchall()
    assert rows == [(1,)]
