"""Opening the store: schema versions, migrations, projects, errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from despina.errors import ConfigError, ProjectNotFound, SchemaTooNew
from despina.store import Store
from despina.store.admin import delete_project
from despina.store.runs import RunSpec, create_run
from despina.store.schema import SCHEMA_VERSION


@pytest.mark.sqlite_only  # the embedded schema and its migrations
def test_new_store_is_at_the_current_schema_version(home: Path) -> None:
    store = Store.open(home)
    assert store.schema_version() == SCHEMA_VERSION
    mode = store.connection().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.sqlite_only  # the embedded schema and its migrations
def test_a_new_database_file_is_the_schema_built_statement_by_statement(tmp_path: Path) -> None:
    # a new store's file is written whole from an image built once per process; an empty file
    # (as older versions created) is migrated from version 0 statement by statement
    (tmp_path / "stepped").mkdir()
    (tmp_path / "stepped" / "despina.db").touch()

    def shape(home: Path) -> tuple[object, ...]:
        conn = Store.open(home).connection()
        master = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
        pragmas = ("page_size", "auto_vacuum", "journal_mode", "integrity_check")
        return master.fetchall(), [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in pragmas]

    assert shape(tmp_path / "new") == shape(tmp_path / "stepped")
    assert shape(tmp_path / "new")[1] == [8192, 2, "wal", "ok"]
    assert Store.open(tmp_path / "new").schema_version() == SCHEMA_VERSION


def test_opening_twice_does_not_migrate_again(home: Path) -> None:
    Store.open(home).create_project("ws/p")
    assert Store.open(home).list_projects() == ["ws/p"]


@pytest.mark.sqlite_only  # the embedded schema and its migrations
def test_older_schema_is_migrated_in_place(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import despina.store.sqlite as sqlite_module
    from despina.store import schema

    monkeypatch.setattr(sqlite_module, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", 1)
    Store.open(home).create_project("ws/old")
    monkeypatch.undo()
    store = Store.open(home)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.list_projects() == ["ws/old"]


@pytest.mark.sqlite_only  # the embedded schema and its migrations
def test_newer_schema_is_refused_with_a_hint(home: Path) -> None:
    Store.open(home)
    conn = sqlite3.connect(home / "despina.db")
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match=r"schema version 999.*upgrade despina"):
        Store.open(home)


def test_project_names_are_checked(home: Path) -> None:
    store = Store.open(home)
    for bad in ("noslash", "a/b/c", "ws/", "ws/has space"):
        with pytest.raises(ConfigError, match="workspace/project"):
            store.project_id(bad, create=True)
    store.create_project("ws/known")
    with pytest.raises(ProjectNotFound, match="ws/known"):
        store.project_id("ws/unknown")


def test_project_keys_are_unique_in_a_workspace(home: Path) -> None:
    store = Store.open(home)
    store.create_project("ws/my-proj")
    store.create_project("ws/myproj")
    keys = store.connection().execute("SELECT project_key FROM projects ORDER BY id").fetchall()
    assert keys == [("MYPROJ",), ("MYPROJ2",)]


def test_a_run_in_a_new_project_is_created_with_it(home: Path) -> None:
    store = Store.open(home)
    store.create_project("ws/myproj")
    first = create_run(store, RunSpec(project="ws/my-proj", run_id="r"))
    again = create_run(store, RunSpec(project="ws/my-proj", run_id="s"))
    assert first.project_id == again.project_id == store.project_id("ws/my-proj")
    keys = store.connection().execute("SELECT project_key FROM projects ORDER BY id").fetchall()
    assert keys == [("MYPROJ",), ("MYPROJ2",)]  # the project's own rules: unique keys
    with pytest.raises(ConfigError, match="workspace/project"):
        create_run(store, RunSpec(project="noslash", run_id="r"))


@pytest.mark.sqlite_only  # SQLite's trace of the transactions
def test_a_run_in_a_new_project_is_one_commit(home: Path) -> None:
    store = Store.open(home)
    log: list[str] = []
    store.connection().set_trace_callback(lambda sql: log.append(sql.strip().upper()))
    create_run(store, RunSpec(project="ws/new", run_id="r"))
    assert log.count("COMMIT") == 1
    assert store.list_projects() == ["ws/new"]


def test_delete_project_removes_everything(home: Path) -> None:
    store = Store.open(home)
    create_run(store, RunSpec("ws/a", "r1"))
    create_run(store, RunSpec("ws/b", "r2"))
    assert delete_project(store, "ws/a")
    assert not delete_project(store, "ws/a")
    conn = store.connection()
    assert conn.execute("SELECT run_id FROM runs").fetchall() == [("r2",)]
    assert store.list_projects() == ["ws/b"]


@pytest.mark.sqlite_only  # the embedded schema and its migrations
def test_set_members_follow_every_change_of_a_string_set(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written before the index existed are indexed by the migration; inserts, updates,
    type changes and deletes keep it in step with the JSON text."""
    import despina.store.sqlite as sqlite_module
    from despina.store import schema

    monkeypatch.setattr(sqlite_module, "MIGRATIONS", schema.MIGRATIONS[:4])
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", 4)
    old = Store.open(home)
    run = create_run(old, RunSpec("ws/p", "r")).pk
    with old.write() as conn:
        conn.execute(
            "INSERT INTO attributes (run_id, path, type, text) VALUES (?, 'old', 'string_set', ?)",
            (run, '["a", "b\\"q", 1]'),
        )
    old.close()
    monkeypatch.undo()
    store = Store.open(home)
    conn = store.connection()

    def members() -> set[tuple[str, str]]:
        return set(
            conn.execute(
                "SELECT a.path, m.value FROM set_members m JOIN attributes a ON a.id = m.attr_id"
            ).fetchall()
        )

    assert members() == {("old", "a"), ("old", 'b"q')}  # sys/tags of the run is empty
    with store.write() as w:
        w.execute(
            "INSERT INTO attributes (run_id, path, type, text) VALUES (?, 'new', 'string_set', ?)",
            (run, '["x"]'),
        )
        w.execute("UPDATE attributes SET text = '[\"y\", \"z\"]' WHERE path = 'new'")
        w.execute("UPDATE attributes SET type = 'string', text = 'a' WHERE path = 'old'")
    assert members() == {("new", "y"), ("new", "z")}
    with store.write() as w:
        w.execute("DELETE FROM attributes WHERE path = 'new'")
    assert members() == set()


@pytest.mark.sqlite_only  # the embedded store's per-thread connections
def test_a_threads_connection_is_closed_when_the_thread_ends(home: Path) -> None:
    import gc
    import threading

    from despina.store.sqlite import SqliteStore

    store = Store.open(home)
    assert isinstance(store, SqliteStore)
    store.create_project("ws/p")
    before = len(store._connections)
    seen: list[sqlite3.Connection] = []

    def read_once() -> None:
        with store.read() as conn:
            conn.execute("SELECT count(*) FROM projects").fetchone()
            seen.append(conn)

    workers = [threading.Thread(target=read_once) for _ in range(20)]
    for worker in workers:
        worker.start()
        worker.join()
    gc.collect()
    assert len(store._connections) == before  # a server's idle threads leave nothing behind
    with pytest.raises(sqlite3.ProgrammingError):  # and their connections are closed
        seen[0].execute("SELECT 1")
    assert store.list_projects() == ["ws/p"]  # this thread's connection is untouched
    store.close()


@pytest.mark.sqlite_only  # the embedded store's per-thread connections
def test_a_connection_outlives_the_store_object_it_came_from(home: Path) -> None:
    import gc

    Store.open(home).create_project("ws/p")
    conn = Store.open(home).connection()  # the store object is gone at once
    gc.collect()
    assert conn.execute("SELECT name FROM projects").fetchall() == [("p",)]
