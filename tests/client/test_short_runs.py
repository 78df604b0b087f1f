"""Many short runs in one process (issue #16): cheap to start and close, durable, nothing left.

A run shares its process's open store and flusher thread, looks git up once per process in the
background, and closes with one durable commit. These tests check what that must not change:
what ``close()`` returned for is on stable storage and complete (git facts included), and a
sweep of 1,000 runs leaves no threads and no file descriptors behind.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import despina
from despina.client import source as source_module
from despina.client import stores as stores_module
from despina.store import Store

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def _attrs(home: Path, run_id: str) -> dict[str, Any]:
    store = Store.open(home)  # another reader of the store
    try:
        rows = store.connection().execute(
            "SELECT a.path, a.text, a.num FROM attributes a JOIN runs r "
            "ON r.id = a.run_id WHERE r.run_id = ?",
            (run_id,),
        )
        return {path: num if text is None else text for path, text, num in rows}
    finally:
        store.close()


def test_run_does_not_wait_for_git_and_close_still_stores_its_facts(
    home: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git_repo
    monkeypatch.chdir(repo)
    monkeypatch.setattr(source_module, "_lookups", {})
    release = threading.Event()
    real = source_module._git_facts
    calls: list[Path] = []

    def slow_git(cwd: Path) -> dict[str, Any]:
        calls.append(cwd)
        release.wait(30)  # git stuck (a slow file system): Run() must not wait for it
        return real(cwd)

    monkeypatch.setattr(source_module, "_git_facts", slow_git)
    made: list[despina.Run] = []
    maker = threading.Thread(
        target=lambda: made.append(
            despina.Run(project="ws/p", run_id="r1", enable_console_log_capture=False)
        )
    )
    maker.start()
    maker.join(10)
    assert made, "Run() waited for git"
    made[0].log_configs({"lr": 0.1})
    release.set()
    made[0].close()  # waits for the lookup: the facts are stored with the run
    got = _attrs(home, "r1")
    assert got["source_code/commit/message"] == "msg"
    assert got["source_code/branch"] == "main"
    assert got["lr"] == 0.1
    # later runs of the process reuse the lookup: git ran once
    with despina.Run(project="ws/p", run_id="r2", enable_console_log_capture=False):
        pass
    assert _attrs(home, "r2")["source_code/branch"] == "main"
    assert len(calls) == 1


def test_wait_for_processing_includes_the_git_facts(
    home: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo)
    monkeypatch.setattr(source_module, "_lookups", {})
    run = despina.Run(project="ws/p", run_id="w", enable_console_log_capture=False)
    assert run.wait_for_processing()
    assert _attrs(home, "w")["source_code/branch"] == "main"
    run.close()


def _close_traced(run: despina.Run) -> list[str]:
    """The statements ``run.close()`` ran on its thread's connection, upper-cased."""
    assert run._store is not None
    log: list[str] = []
    run._store.connection().set_trace_callback(lambda sql: log.append(sql.strip().upper()))
    run.close()
    run._store.connection().set_trace_callback(None)
    return log


@pytest.mark.sqlite_only  # SQLite's trace of PRAGMA synchronous and a sqlite3 reader
def test_close_is_one_durable_commit_marking_the_run_closed(home: Path) -> None:
    run = despina.Run(project="ws/p", run_id="quick", **QUIET)
    run.log_configs({"lr": 0.5})
    run.log_metrics({"loss": 1.0}, step=0)
    log = _close_traced(run)
    commits = [i for i, sql in enumerate(log) if sql == "COMMIT"]
    durable = [i for i, sql in enumerate(log) if sql == "PRAGMA SYNCHRONOUS = FULL"]
    # the last commit of close() is the durable one, and it is what marks the run closed
    assert len(durable) == 1 and durable[0] < commits[-1]
    last = log[durable[0] : commits[-1]]
    assert any("CLOSED = 1" in sql for sql in last)
    assert not any("USER_VERSION" in sql for sql in log)  # no separate sync commit
    # another process sees the run closed with everything logged
    script = textwrap.dedent(
        """
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1])
        print(conn.execute("SELECT closed FROM runs WHERE run_id = 'quick'").fetchone()[0])
        print(conn.execute("SELECT count(*) FROM attributes a JOIN runs r ON r.id = a.run_id "
                           "WHERE r.run_id = 'quick' AND a.path IN ('lr', 'loss')").fetchone()[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(home / "despina.db")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert out == ["1", "2"]


@pytest.mark.sqlite_only  # SQLite's trace of the transaction
def test_the_final_flush_and_the_close_are_one_durable_commit(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from despina.client import buffer

    monkeypatch.setattr(buffer, "FLUSH_INTERVAL", 3600.0)  # everything waits for close()
    run = despina.Run(project="ws/p", run_id="one", **QUIET)
    run.log_configs({"lr": 0.5})
    run.log_metrics({"loss": 1.0}, step=0)
    log = _close_traced(run)
    # one transaction stores what was logged and marks the run closed, under synchronous=FULL
    assert [sql for sql in log if sql in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert log.index("PRAGMA SYNCHRONOUS = FULL") < log.index("BEGIN IMMEDIATE")
    inside = log[log.index("BEGIN IMMEDIATE") : log.index("COMMIT")]
    assert any(sql.startswith("INSERT INTO ATTRIBUTES") for sql in inside)
    assert any("CLOSED = 1" in sql for sql in inside)
    attrs = _attrs(home, "one")
    assert attrs["lr"] == 0.5 and attrs["loss"] == 1.0


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX accounts")
def test_the_owner_follows_the_environment_within_a_process(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pwd

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    despina.Run(project="ws/p", run_id="a", **QUIET).close()
    monkeypatch.setenv("USER", "someone-else")
    despina.Run(project="ws/p", run_id="b", **QUIET).close()
    monkeypatch.delenv("USER")
    despina.Run(project="ws/p", run_id="c", **QUIET).close()
    store = Store.open(home)
    try:
        owners = dict(store.connection().execute("SELECT run_id, owner FROM runs").fetchall())
    finally:
        store.close()
    account = pwd.getpwuid(os.getuid()).pw_name
    assert owners == {"a": account, "b": "someone-else", "c": account}


def test_run_closed_right_after_creation_has_its_sys_attributes(home: Path) -> None:
    despina.Run(project="ws/p", run_id="empty", **QUIET).close()
    from despina.query.runs import fetch_runs_table

    table = fetch_runs_table(project="ws/p", attributes=r"^sys/")
    row = table.loc["empty"]
    assert row["sys/custom_run_id"] == "empty"
    assert row["sys/id"] == "P-1"
    assert row["sys/owner"]
    assert row["sys/ping_time"] >= row["sys/creation_time"]
    assert row["sys/tags"] == set()
    assert not row["sys/failed"]


def _fds() -> list[str]:
    """Open descriptors other than sockets: a PostgreSQL store's pool opens and closes its
    (bounded) connections on its own schedule; files and pipes are what a run could leak."""
    targets = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if not target.startswith("socket:"):
            targets.append(target)
    return sorted(targets)


def _settled_fds(expected: list[str] | None = None) -> list[str]:
    """The descriptors once transient ones are closed again: a connection attempt of another
    thread (libpq reads its password and service files) holds a file for a moment; a leak stays.
    Without ``expected``, the first listing that two reads 0.1 s apart agree on."""
    deadline = time.monotonic() + 10
    previous = _fds()
    while time.monotonic() < deadline:
        time.sleep(0.05 if expected is not None else 0.1)
        current = _fds()
        if current == (previous if expected is None else expected):
            return current
        previous = current
    return previous


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_thousand_short_runs_leave_no_threads_or_descriptors(home: Path) -> None:
    def one(i: int, wait: bool = False) -> None:
        run = despina.Run(project="ws/sweep", **QUIET)
        run.log_configs({"lr": i * 1e-4, "opt": "adam"})
        run.log_metrics({"loss": 1.0 / (i + 1)}, step=0)
        if wait:  # the flusher thread writes too: its connection exists from here on
            assert run.wait_for_processing()
        run.close()

    one(0, wait=True)  # the process-wide store and flusher thread exist from the first run on
    # stores earlier tests dropped are closed when the collector gets to them, and the ones
    # they left idle by the closer thread: not mid-count
    gc.collect()
    assert stores_module.wait_for_closer(60)
    threads, fds = len(threading.enumerate()), _settled_fds()
    for i in range(1, 1000):
        one(i)
    gc.collect()
    assert len(threading.enumerate()) == threads
    assert [t.name for t in threading.enumerate()].count("despina-flusher") == 1
    assert _settled_fds(fds) == fds
    conn = Store.open(home).connection()
    assert conn.execute("SELECT count(*), sum(closed) FROM runs").fetchone() == (1000, 1000)


@pytest.mark.sqlite_only  # the embedded store's files deleted under the process
def test_a_store_deleted_between_runs_is_opened_again(home: Path) -> None:
    despina.Run(project="ws/p", run_id="a", **QUIET).close()
    shutil.rmtree(home)
    with despina.Run(project="ws/p", run_id="b", **QUIET) as run:
        run.log_configs({"x": 1})
    assert _attrs(home, "b")["x"] == 1


def test_idle_stores_kept_open_are_bounded(tmp_path: Path) -> None:
    for i in range(stores_module.MAX_IDLE + 3):
        despina.Run(project="ws/p", home=tmp_path / f"h{i}", **QUIET).close()
    idle = [e for e in stores_module._entries.values() if e.users == 0]
    assert len(idle) <= stores_module.MAX_IDLE
    stores_module.close_idle_stores()
    # only this test's homes: a run another test left open keeps its store, as it should
    assert not [home for home in stores_module._entries if str(tmp_path) in home]
    # every store is closed (the older ones by the background closer): each WAL was folded
    # into its database and removed
    assert stores_module.wait_for_closer(60)
    assert not list(tmp_path.glob("h*/despina.db-wal"))


def test_a_run_closed_by_its_own_error_callback_is_stored_and_closed(home: Path) -> None:
    # the callback runs on the process's flusher thread, in the middle of the run's flush
    holder: dict[str, despina.Run] = {}
    errors: list[BaseException] = []

    def on_error(exc: BaseException, _: float | None) -> None:
        errors.append(exc)
        holder["run"].close()

    def scenario() -> None:
        run = despina.Run(project="ws/p", run_id="cb", on_error_callback=on_error, **QUIET)
        holder["run"] = run
        run.log_metrics({"m": 1.0}, step=2)
        run.log_metrics({"m": 0.5}, step=1)  # not increasing: rejected by the store
        run.log_configs({"after": 1})
        run.wait_for_processing(timeout=30)

    worker = threading.Thread(target=scenario)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "waiting for processing hung"
    assert errors
    # the close runs on in the callback meanwhile: it ends with the run marked closed
    reader = Store.open(home)  # another reader of the store

    def closed() -> bool:
        with reader.read() as conn:
            row = conn.execute("SELECT closed FROM runs WHERE run_id = 'cb'").fetchone()
        return row is not None and row[0] == 1

    try:
        deadline = time.monotonic() + 30
        while not closed():
            assert time.monotonic() < deadline, "closing from the callback hung"
            time.sleep(0.01)
    finally:
        reader.close()
    assert _attrs(home, "cb")["after"] == 1
