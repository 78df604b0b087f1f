"""Background jobs: request statuses past their retention are pruned as soon as a server starts,
and each job runs on one replica at a time (under the store's lease of its name)."""

from __future__ import annotations

import threading
from pathlib import Path

from despina.server.app import create_app
from despina.server.ingest import IngestService
from despina.server.jobs import (
    JOB_PACK_IDLE_RUNS,
    JOB_PRUNE_STATUSES,
    JOB_SWEEP_UPLOADS,
    Housekeeping,
    Job,
)
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import StoredStatus, save_request


def _statuses(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute("SELECT count(*) FROM ingest_requests").fetchone()[0])


def test_old_statuses_are_pruned_and_recent_ones_kept(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home")
    save_request(store, "old-request", 1, "run", "0" * 64, StoredStatus([]))
    with store.write() as conn:
        conn.execute("UPDATE ingest_requests SET created_ms = 0")
    save_request(store, "new-request", 1, "run", "1" * 64, StoredStatus([]))
    assert IngestService(store, ServerSettings()).prune_statuses() == 1
    assert _statuses(store) == 1
    store.close()


def test_every_job_is_due_when_a_server_starts(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home")
    app = create_app(store, ServerSettings())
    jobs: Housekeeping = app.state.despina.jobs
    names = [JOB_PRUNE_STATUSES, JOB_SWEEP_UPLOADS, JOB_PACK_IDLE_RUNS]
    assert [job.name for job in jobs.jobs] == names
    assert jobs.run_due() == names
    assert jobs.run_due() == []  # not due again before their period
    store.close()


def test_a_job_leased_by_another_replica_is_skipped_this_turn(tmp_path: Path) -> None:
    first = Store.open(tmp_path / "home")
    second = Store.open(tmp_path / "home")  # another replica over the same store
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow() -> None:
        runs.append("first")
        started.set()
        release.wait(30)

    now = [0.0]
    one = Housekeeping(first, [Job("demo", 60, slow)], clock=lambda: now[0])
    other = Housekeeping(second, [Job("demo", 60, lambda: runs.append("second"))])
    worker = threading.Thread(target=one.run_due)
    worker.start()
    try:
        assert started.wait(30)
        assert other.run_due() == []  # the first replica holds the lease
    finally:
        release.set()
        worker.join(30)
    later = Housekeeping(second, [Job("demo", 60, lambda: runs.append("second"))])
    assert later.run_due() == ["demo"]  # released: the next turn runs
    assert runs == ["first", "second"]
    first.close()
    second.close()


def test_a_failing_job_does_not_stop_the_others(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home")

    def broken() -> None:
        raise RuntimeError("boom")

    ran: list[str] = []
    jobs = Housekeeping(
        store, [Job("broken", 60, broken), Job("fine", 60, lambda: ran.append("x"))]
    )
    assert jobs.run_due() == ["fine"] and ran == ["x"]
    store.close()
