"""The PostgreSQL store's schema against a real PostgreSQL: migrations, concurrent openers,
number round trips, NaN as NULL, set_members triggers, and parity with the embedded schema."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from despina.store import schema as sqlite_schema
from despina.store.postgres import PostgresDatabase
from despina.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION, advisory_key

# how the embedded store's columns map onto PostgreSQL's where they differ (see schema.py)
_RENAMED: dict[tuple[str, str], tuple[str, ...]] = {}


def _tables(conn: psycopg.Connection[Any]) -> dict[str, set[str]]:
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'"
    ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def _sqlite_tables() -> dict[str, set[str]]:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE schema_version (version INTEGER NOT NULL);")
    for step in sqlite_schema.MIGRATIONS:
        conn.executescript(step)
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: {r[1] for r in conn.execute(f"PRAGMA table_info({name})")} for name in names}


def test_migrations_apply_on_an_empty_database(postgres_url: str) -> None:
    began = time.perf_counter()
    with PostgresDatabase.open(postgres_url) as db:
        elapsed = time.perf_counter() - began
        assert db.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        with db.connection() as conn:
            tables = _tables(conn)
    print(f"open + migrate an empty database: {elapsed:.3f} s")
    assert {"projects", "runs", "attributes", "chunks", "server_secrets"} <= set(tables)


def test_every_embedded_table_and_column_has_a_postgres_counterpart(postgres_url: str) -> None:
    """Fails when the embedded store gains a table or column the PostgreSQL schema lacks."""
    with PostgresDatabase.open(postgres_url) as db, db.connection() as conn:
        pg = _tables(conn)
    missing = []
    for table, columns in _sqlite_tables().items():
        if table not in pg:
            missing.append(table)
            continue
        for column in columns:
            wanted = _RENAMED.get((table, column), (column,))
            missing.extend(f"{table}.{c}" for c in wanted if c not in pg[table])
    assert not missing, f"add to despina/store/postgres/schema.py: {missing}"


def test_every_run_owned_table_carries_the_run_key(postgres_url: str) -> None:
    with PostgresDatabase.open(postgres_url) as db, db.connection() as conn:
        pg = _tables(conn)
    for table in ("attributes", "attribute_packs", "chunks", "previews", "points", "set_members"):
        assert "run_id" in pg[table], table


def test_reopening_is_a_no_op(postgres_url: str) -> None:
    PostgresDatabase.open(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO projects (workspace, name, project_key, uuid, created_ms) "
            "VALUES ('w', 'p', 'P', 'u', 1)"
        )
        before = conn.execute("SELECT xmin::text FROM schema_version").fetchone()
    with PostgresDatabase.open(postgres_url) as db, db.connection() as conn:
        assert db.schema_version() == SCHEMA_VERSION
        assert conn.execute("SELECT xmin::text FROM schema_version").fetchone() == before
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (1,)


def test_concurrent_openers_do_not_race(postgres_url: str) -> None:
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    opened: list[PostgresDatabase] = []
    lock = threading.Lock()

    def open_one() -> None:
        barrier.wait()
        try:
            db = PostgresDatabase.open(postgres_url)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            opened.append(db)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        assert len(opened) == n
        with opened[0].connection() as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)
            ]
    finally:
        for db in opened:
            db.close()


def test_two_processes_opening_at_once_both_succeed(postgres_url: str) -> None:
    """Two replicas starting together: separate processes, released at the same moment."""
    code = (
        "import sys, time\n"
        "from despina.store.postgres import PostgresDatabase\n"
        "while time.time() < float(sys.argv[2]): time.sleep(0.005)\n"
        "PostgresDatabase.open(sys.argv[1]).close()\n"
    )
    start_at = str(time.time() + 2.0)  # after both interpreters have imported psycopg
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, postgres_url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


@pytest.fixture(scope="module")
def db(postgres_module_url: str) -> Any:
    database = PostgresDatabase.open(postgres_module_url)
    yield database
    database.close()


def _attribute(db: PostgresDatabase, path: str, **values: Any) -> tuple[Any, ...]:
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    with db.write() as conn:
        row = conn.execute(
            f"INSERT INTO attributes (run_id, path, type, {columns}) "
            f"VALUES (1, %s, 'float', {marks}) RETURNING id",
            (path, *values.values()),
        ).fetchone()
        assert row is not None
        got = conn.execute(f"SELECT {columns} FROM attributes WHERE id = %s", (row[0],)).fetchone()
    assert got is not None
    return tuple(got)


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 2**53 + 1, 0])
def test_int64_round_trips_exactly(db: PostgresDatabase, value: int) -> None:
    assert _attribute(db, f"i/{value}", num=value) == (value,)


@pytest.mark.parametrize("value", [0.1, -0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308])
def test_float_round_trips_bit_exactly(db: PostgresDatabase, value: float) -> None:
    (got,) = _attribute(db, f"f/{value!r}", num=value)
    assert isinstance(got, float) and got == value
    if value != 0.0:  # numeric has no negative zero; -0.0 == 0.0 compares equal anyway
        assert math.copysign(1.0, got) == math.copysign(1.0, value)


def test_integral_floats_stay_floats(db: PostgresDatabase) -> None:
    (got,) = _attribute(db, "f/integral", num=1e16)
    assert isinstance(got, float) and got == 1e16


def test_nan_is_stored_as_null(db: PostgresDatabase) -> None:
    """As in SQLite: a NaN bound from Python is NULL, also inside arrays, in both formats."""
    assert _attribute(db, "nan", num=math.nan, fmin=math.nan) == (None, None)
    with db.connection() as conn:
        row = conn.execute(
            "SELECT %s::float8 IS NULL, %s::float8[]", (math.nan, [1.5, math.nan])
        ).fetchone()
    assert row == (True, [1.5, None])


def test_set_members_follow_attributes(db: PostgresDatabase) -> None:
    with db.write() as conn:
        row = conn.execute(
            "INSERT INTO attributes (run_id, path, type, text) "
            "VALUES (7, 'sys/tags', 'string_set', %s) RETURNING id",
            ('["a", "b", 3, "a"]',),
        ).fetchone()
        assert row is not None
        attr = row[0]

    def members() -> list[str]:
        with db.connection() as conn:
            return sorted(
                r[0]
                for r in conn.execute(
                    "SELECT value FROM set_members WHERE attr_id = %s AND run_id = 7", (attr,)
                )
            )

    assert members() == ["a", "b"]
    with db.write() as conn:
        conn.execute("UPDATE attributes SET text = %s WHERE id = %s", ('["c"]', attr))
    assert members() == ["c"]
    with db.write() as conn:  # NQL finds an element by (value, path, run_id)
        conn.execute("UPDATE attributes SET path = 'sys/group_tags' WHERE id = %s", (attr,))
    with db.connection() as conn:
        paths = conn.execute("SELECT path FROM set_members WHERE attr_id = %s", (attr,))
        assert paths.fetchall() == [("sys/group_tags",)]
    with db.write() as conn:
        conn.execute("DELETE FROM attributes WHERE id = %s", (attr,))
    assert members() == []


def test_filter_index_covers_the_compared_columns(db: PostgresDatabase) -> None:
    with db.connection() as conn:
        row = conn.execute("SELECT pg_get_indexdef('attributes_for_filters'::regclass)").fetchone()
        options = conn.execute(
            # by oid: information_schema has a view named "attributes" too
            "SELECT reloptions FROM pg_class WHERE oid = 'attributes'::regclass"
        ).fetchone()
    assert row is not None and options is not None
    assert "(path, run_id) INCLUDE (type, num, fmin, fmax" in row[0]
    assert "text_head)" in row[0]
    assert "autovacuum_vacuum_scale_factor=0" in options[0]
    assert "autovacuum_vacuum_threshold=10000" in options[0]


def test_v5_fills_in_text_heads_and_set_member_paths(postgres_url: str) -> None:
    """A database at v4 with data: the migration to v5 keeps every value NQL reads."""
    with psycopg.connect(postgres_url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (4)")
        for step in MIGRATIONS[:4]:
            conn.execute(step.encode())
        conn.execute(
            "INSERT INTO attributes (run_id, path, type, text) VALUES "
            "(3, 'sys/tags', 'string_set', '[\"a\"]'), (3, 's', 'string', %s)",
            ("é" * 70,),
        )
    with PostgresDatabase.open(postgres_url) as db, db.connection() as conn:
        assert db.schema_version() == SCHEMA_VERSION
        members = conn.execute("SELECT value, path, run_id FROM set_members").fetchall()
        head = conn.execute("SELECT text_head FROM attributes WHERE path = 's'").fetchone()
    assert members == [("a", "sys/tags", 3)]
    assert head == ("é" * 64,)


def test_chunks_are_keyed_as_embedded_and_carry_the_run_key(db: PostgresDatabase) -> None:
    with db.write() as conn:
        attr = conn.execute(
            "INSERT INTO attributes (run_id, path, type) VALUES (3, 'm', 'float_series') "
            "RETURNING id"
        ).fetchone()[0]
        for chunk_no in (1, 0):
            conn.execute(
                "INSERT INTO chunks (id, n, step_first, step_last, ts_first, ts_last, steps, "
                "vals, ts) VALUES (%s, 1, 0, 0, 0, 0, %s, %s, %s)",
                ((attr << 24) | chunk_no, b"\x00", bytes(8), b"\x01"),
            )
    with pytest.raises(psycopg.errors.UniqueViolation), db.write() as conn:
        conn.execute(
            "INSERT INTO chunks (id, n, step_first, step_last, ts_first, ts_last, steps, vals, "
            "ts) VALUES (%s, 1, 0, 0, 0, 0, '', '', '')",
            (attr << 24,),
        )
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT id & 16777215, run_id, vals FROM chunks WHERE id BETWEEN %s AND %s ORDER BY id",
            (attr << 24, (attr << 24) | 16777215),
        ).fetchall()
    assert rows == [(0, 3, bytes(8)), (1, 3, bytes(8))]


def test_advisory_keys_are_stable_and_distinct() -> None:
    assert advisory_key("migrate") == advisory_key("migrate")
    assert advisory_key("migrate") != advisory_key("job:purge")
    assert -(2**63) <= advisory_key("job:purge") < 2**63
