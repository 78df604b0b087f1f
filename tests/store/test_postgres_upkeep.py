"""The writing process's vacuum of a PostgreSQL store (store/postgres/upkeep.py), against a real
PostgreSQL: due only past the dead-row thresholds, one process at a time, started by a write."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from despina.store import Store
from despina.store.postgres import upkeep
from despina.store.postgres.store import PostgresStore


def _leave_dead_chunks(store: PostgresStore, rows: int) -> None:
    """Insert and delete ``rows`` chunk rows; their statistics reach the server at commit."""
    with store.database.connection() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO chunks (id, run_id, n, step_first, step_last, ts_first, ts_last, "
            "steps, vals, ts) SELECT g, 1, 1, 0, 0, 0, 0, '', '', '' "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("DELETE FROM chunks")
        conn.execute("SELECT pg_stat_force_next_flush()")


def _vacuums(store: PostgresStore) -> int:
    with store.database.connection() as conn:
        row = conn.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'chunks'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def store(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(upkeep.ENV, "0")  # the thread stays off: the test calls vacuum_due
    opened = Store.open(url=postgres_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


def test_a_table_with_enough_dead_rows_is_vacuumed(store: PostgresStore) -> None:
    _leave_dead_chunks(store, upkeep.MIN_DEAD_ROWS // 2)
    assert upkeep.vacuum_due(store.database) == []  # below the threshold: left alone
    _leave_dead_chunks(store, upkeep.MIN_DEAD_ROWS)
    before = _vacuums(store)
    assert upkeep.vacuum_due(store.database) == ["chunks"]
    assert _vacuums(store) == before + 1
    with store.database.connection() as conn:
        assert upkeep.due_tables(conn) == []  # the vacuum counted the dead rows as gone


def test_one_process_vacuums_at_a_time(store: PostgresStore, postgres_url: str) -> None:
    _leave_dead_chunks(store, upkeep.MIN_DEAD_ROWS)
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (upkeep.LOCK,))
        assert upkeep.vacuum_due(store.database) == []  # another holds the turn: skipped
        other.execute("SELECT pg_advisory_unlock(%s)", (upkeep.LOCK,))
    assert upkeep.vacuum_due(store.database) == ["chunks"]


def test_the_thread_starts_with_the_first_write_and_ends_with_close(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(upkeep.ENV, raising=False)

    def vacuum_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "despina-vacuum"}

    # stores other tests of this process left open may have threads of their own
    before = vacuum_threads()
    opened = Store.open(url=postgres_url)
    assert isinstance(opened, PostgresStore)
    with opened.read():
        pass
    assert vacuum_threads() - before == set()  # reads only
    with opened.write() as conn:
        conn.execute("SELECT 1")
    started = vacuum_threads() - before
    assert len(started) == 1
    opened.close()
    assert not any(t.is_alive() for t in started)
