"""Durability goes through SQLite: no second descriptor, durable commits, private files.

A descriptor of the database opened and closed next to SQLite's own releases every POSIX lock
the process holds on the file, so another process may then delete the WAL under a live writer.
These tests run the other process for real.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import despina
from despina.store import Store
from despina.store.sqlite import DB_FILE, SqliteStore

# every test here checks the embedded store's own file, WAL, pragmas and locks
pytestmark = pytest.mark.sqlite_only

# a plain sqlite3 reader, as any tool (or `despina serve` stopping) would open the store
READ_AND_CLOSE = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1])
    conn.execute("SELECT count(*) FROM runs").fetchall()
    conn.close()
    """
)


def _read_and_close(db_path: Path) -> None:
    subprocess.run([sys.executable, "-c", READ_AND_CLOSE, str(db_path)], check=True, timeout=60)


COUNT_POINTS = textwrap.dedent(
    """
    import sqlite3, sys
    from despina.store.series import lineage, read_float_lineage
    conn = sqlite3.connect(sys.argv[1])
    (pk,) = conn.execute("SELECT id FROM runs WHERE run_id = 'live'").fetchone()
    print(len(read_float_lineage(conn, lineage(conn, pk), "loss").values))
    conn.close()
    """
)

HOLD_OPEN = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1])
    conn.execute("SELECT count(*) FROM runs").fetchall()
    print("open", flush=True)
    sys.stdin.read()
    conn.close()
    """
)


def _count_points(home: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", COUNT_POINTS, str(home / DB_FILE)],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return int(out.stdout)


def _hold_open(db_path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "open"
    return proc


def _deleted_wal_descriptors() -> list[str]:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return []
    found = []
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.endswith(f"{DB_FILE}-wal (deleted)"):
            found.append(target)
    return found


def test_another_process_closing_the_store_after_wait_for_processing_loses_nothing(
    home: Path,
) -> None:
    run = despina.Run(
        project="ws/durable",
        run_id="live",
        enable_console_log_capture=False,
        source_tracking_config=None,
    )
    for step in range(50):
        run.log_metrics({"loss": float(step)}, step=step)
    assert run.wait_for_processing()
    _read_and_close(home / DB_FILE)  # deletes the WAL if this process lost its locks
    for step in range(50, 100):
        run.log_metrics({"loss": float(step)}, step=step)
    assert run.wait_for_processing()
    assert _deleted_wal_descriptors() == []
    # what wait_for_processing reported stored is what any other process reads
    assert _count_points(home) == 100
    holder = _hold_open(home / DB_FILE)  # a server or reader that stays while the run closes
    try:
        for step in range(100, 150):
            run.log_metrics({"loss": float(step)}, step=step)
        run.close()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert _count_points(home) == 150
    conn = sqlite3.connect(home / DB_FILE)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


def test_sync_writes_through_the_connection_and_keeps_the_wal(home: Path) -> None:
    store = Store.open(home)
    store.create_project("ws/p")
    store.sync()
    _read_and_close(store.db_path)
    # this process still holds its locks: the other process could not remove the WAL
    assert store.db_path.with_name(DB_FILE + "-wal").exists()
    store.create_project("ws/q")
    store.close()
    assert Store.open(home).list_projects() == ["ws/p", "ws/q"]


def test_durable_write_commits_under_synchronous_full_and_restores_normal(home: Path) -> None:
    store = Store.open(home)
    conn = store.connection()
    seen: list[int] = []
    with store.write(durable=True) as inside:
        seen.append(inside.execute("PRAGMA synchronous").fetchone()[0])
        inside.execute(
            "INSERT INTO projects (workspace, name, project_key, uuid, description, "
            "visibility, created_ms) VALUES ('ws', 'd', 'D', 'u', '', 'priv', 0)"
        )
    after = conn.execute("PRAGMA synchronous").fetchone()[0]
    assert seen == [2]  # FULL
    assert after == 1  # NORMAL again for the ordinary writes that follow
    with pytest.raises(RuntimeError), store.write(durable=True):
        raise RuntimeError("rolled back")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert store.list_projects() == ["ws/d"]


def _traced(store: SqliteStore) -> list[str]:
    log: list[str] = []
    store.connection().set_trace_callback(lambda sql: log.append(sql.strip().upper()))
    return log


def _insert_project(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(
        "INSERT INTO projects (workspace, name, project_key, uuid, description, visibility, "
        "created_ms) VALUES ('ws', ?, ?, ?, '', 'priv', 0)",
        (name, name.upper(), name),
    )


def test_first_write_into_a_new_database_file_skips_the_log_header_sync(tmp_path: Path) -> None:
    store = SqliteStore.open_directory(tmp_path / "new")
    log = _traced(store)
    with store.write() as conn:
        _insert_project(conn, "a")
    # before the transaction (the level cannot change inside one), restored after it
    begin = log.index("BEGIN IMMEDIATE")
    assert log[:begin] == ["PRAGMA SYNCHRONOUS = OFF", "PRAGMA WAL_AUTOCHECKPOINT = 0"]
    conn = store.connection()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 8192
    log.clear()
    with store.write() as conn:  # the log has frames now: an ordinary write
        _insert_project(conn, "b")
    assert not any("SYNCHRONOUS" in sql for sql in log)
    store.sync()  # the first durable write syncs the log, header included
    store.close()
    again = SqliteStore.open_directory(tmp_path / "new")
    log = _traced(again)
    with again.write() as conn:  # a file this object did not create: never quiet
        _insert_project(conn, "c")
    assert not any("SYNCHRONOUS" in sql for sql in log)
    assert again.list_projects() == ["ws/a", "ws/b", "ws/c"]
    again.close()


def test_a_durable_first_write_into_a_new_database_file_is_durable(tmp_path: Path) -> None:
    store = SqliteStore.open_directory(tmp_path / "new")
    log = _traced(store)
    with store.write(durable=True) as conn:
        _insert_project(conn, "a")
    assert log[0] == "PRAGMA SYNCHRONOUS = FULL"
    assert "PRAGMA SYNCHRONOUS = OFF" not in log
    store.close()


def test_busy_timeout_is_a_parameter_of_open(home: Path) -> None:
    store = Store.open(home, busy_timeout_ms=1234)
    assert store.connection().execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    assert Store.open(home).connection().execute("PRAGMA busy_timeout").fetchone()[0] == 60_000


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_new_store_is_private_to_its_user(tmp_path: Path, umask: int) -> None:
    home = tmp_path / "parent" / "store"
    old = os.umask(umask)
    try:
        store = Store.open(home)
        store.create_project("ws/p")
        wal = store.db_path.with_name(DB_FILE + "-wal")
        shm = store.db_path.with_name(DB_FILE + "-shm")
        assert wal.exists() and shm.exists()
        assert _mode(home) == 0o700
        assert _mode(store.blobs_dir) == 0o700
        assert _mode(store.db_path) == 0o600
        assert _mode(wal) == 0o600
        assert _mode(shm) == 0o600
        store.close()
    finally:
        os.umask(old)


def test_an_existing_directory_keeps_its_mode_but_the_new_database_is_private(
    tmp_path: Path,
) -> None:
    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o750)  # chosen by the user (say, a group-readable project directory)
    store = Store.open(home)
    store.create_project("ws/p")
    assert _mode(home) == 0o750
    assert _mode(store.db_path) == 0o600
    assert _mode(store.db_path.with_name(DB_FILE + "-wal")) == 0o600
    store.close()


def test_an_existing_database_keeps_its_mode(home: Path) -> None:
    Store.open(home).close()
    (home / DB_FILE).chmod(0o640)
    Store.open(home).create_project("ws/p")
    assert _mode(home / DB_FILE) == 0o640


class _TracedStore(SqliteStore):
    """A store that logs every statement of every connection, in order, with its connection."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.log: list[tuple[int, str]] = []

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        key = id(conn)
        conn.set_trace_callback(lambda sql: self.log.append((key, sql.strip())))
        return conn


def _commits(log: list[tuple[int, str]]) -> list[tuple[str, list[str]]]:
    """``(safety level, statements)`` of every committed write transaction, in order."""
    level: dict[int, str] = {}
    open_: dict[int, list[str]] = {}
    out = []
    for key, sql in log:
        upper = sql.upper()
        if upper.startswith("PRAGMA SYNCHRONOUS ="):
            level[key] = upper.rsplit("=", 1)[1].strip()
        elif upper == "BEGIN IMMEDIATE":
            open_[key] = []
        elif upper == "COMMIT" and key in open_:
            out.append((level.get(key, "NORMAL"), open_.pop(key)))
        elif key in open_:
            open_[key].append(sql)
    return out


def test_ingest_is_acknowledged_only_after_a_durable_commit(home: Path) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp
    from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
    from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

    from despina.server.auth import Principal
    from despina.server.ingest import IngestService
    from despina.server.settings import ServerSettings
    from despina.store.access import ApiKey

    Store.open(home).create_project("ws/proj")
    store = _TracedStore(home)
    key = ApiKey("k", "", "k", "me", "ws", "proj", 0, None, None)
    service = IngestService(store, ServerSettings())
    create = RunOperation(project="ws/proj", run_id="r", create=c.Run(run_id="r", family="r"))
    snapshot = c.UpdateRunSnapshot(step=c.Step(whole=1), timestamp=Timestamp(seconds=1))
    snapshot.append["loss"].float64 = 0.5
    update = RunOperation(
        project="ws/proj", run_id="r", update_batch=c.UpdateRunSnapshots(snapshots=[snapshot])
    )
    for op in (create, update):
        store.log.clear()
        service.submit(Principal(key), op.SerializeToString())
        commits = _commits(store.log)
        saved = [
            i
            for i, (_, sqls) in enumerate(commits)
            if any("INTO ingest_requests" in sql for sql in sqls)
        ]
        assert len(saved) == 1
        level, statements = commits[saved[0]]
        # the operation's own writes come first: in earlier commits or in the status's own
        assert saved[0] >= 1 or any("ingest_requests" not in sql for sql in statements)
        assert level == "FULL"  # the status commit fsyncs the WAL with them
        # after it, only housekeeping (pruning old statuses) may commit before the answer
        assert all(
            sqls[0].startswith("DELETE FROM ingest_requests") for _, sqls in commits[saved[0] + 1 :]
        )
