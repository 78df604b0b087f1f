"""A repeated table call is answered from the table read before while nothing was written to
the store; any write (this connection, another one, another process) is seen by the next call."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import despina
import despina.query as nq
from despina.query import runs
from despina.query.attrs import READ_STATS
from despina.query.filters import Attribute, Filter
from despina.query.service import QueryService
from despina.store import Store

QUIET = {"enable_console_log_capture": False, "source_tracking_config": None}
PROJECT = "ws/memo"
CALL = {
    "project": PROJECT,
    "runs": Filter.gt(Attribute("x", "float"), 0.5),
    "attributes": ["x", "y", "sys/description"],
    "sort_by": Attribute("x", "float"),
    "sort_direction": "asc",
}


@pytest.fixture()
def memo_home(tmp_path: Path) -> Iterator[Path]:
    """Runs r0..r3 with ``x = i / 2`` (r2 and r3 match ``CALL``); queries read this store.
    Over PostgreSQL ``DESPINA_STORE`` names the store instead of the directory."""
    home = tmp_path / "store"
    for i in range(4):
        with despina.Run(project=PROJECT, run_id=f"r{i}", home=home, **QUIET) as run:
            run.log_configs({"x": i / 2})
    nq.set_home(home)
    yield home
    nq.set_home(None)


def _service(home: Path) -> QueryService:
    return QueryService.for_home(home)


def test_repeated_table_is_the_same_and_reads_no_rows(memo_home: Path) -> None:
    first = runs.fetch_runs_table(**CALL)
    before = READ_STATS.rows
    again = runs.fetch_runs_table(**CALL)
    assert READ_STATS.rows == before
    assert again.equals(first)
    assert list(again.index) == ["r2", "r3"]
    again.loc["r3", "x"] = -1.0  # a caller's frame is its own
    assert runs.fetch_runs_table(**CALL).equals(first)


def test_other_arguments_are_other_tables(memo_home: Path) -> None:
    runs.fetch_runs_table(**CALL)
    descending = runs.fetch_runs_table(**{**CALL, "sort_direction": "desc"})
    assert list(descending.index) == ["r3", "r2"]
    assert runs.fetch_runs_table(**CALL, limit=1).shape == (1, 2)
    assert runs.fetch_runs_table(**{**CALL, "attributes": ["x"]}).shape == (2, 1)
    assert runs.fetch_runs_table(**{**CALL, "runs": ["r0"]}).shape == (1, 2)


def test_a_write_through_a_run_of_this_process_is_seen(memo_home: Path) -> None:
    runs.fetch_runs_table(**CALL)
    with despina.Run(project=PROJECT, run_id="r0", home=memo_home, **QUIET) as run:
        run.log_configs({"x": 0.75, "y": "new"})
    table = runs.fetch_runs_table(**CALL)
    assert list(table.index) == ["r0", "r2", "r3"]
    assert table.loc["r0", "y"] == "new"


def test_a_write_on_the_query_connection_is_seen(memo_home: Path) -> None:
    """A change that moves no run revision (a description set in SQL) on the connection the
    queries use, then on another connection."""
    assert runs.fetch_runs_table(**CALL).loc["r3", "sys/description"] == ""
    store = _service(memo_home).store
    with store.write() as conn:
        conn.execute("UPDATE runs SET description = 'mine' WHERE run_id = 'r3'")
    table = runs.fetch_runs_table(**CALL)
    assert table.loc["r3", "sys/description"] == "mine"
    other = Store.open(memo_home)
    try:
        with other.write() as conn:
            conn.execute("UPDATE runs SET description = 'theirs' WHERE run_id = 'r3'")
    finally:
        other.close()
    assert runs.fetch_runs_table(**CALL).loc["r3", "sys/description"] == "theirs"


def test_a_write_by_another_process_is_seen(memo_home: Path) -> None:
    runs.fetch_runs_table(**CALL)
    code = (
        "import sys, despina\n"
        "with despina.Run(project=sys.argv[1], run_id='r1', home=sys.argv[2],\n"
        "                 enable_console_log_capture=False, source_tracking_config=None) as run:\n"
        "    run.log_configs({'x': 0.9})\n"
    )
    subprocess.run([sys.executable, "-c", code, PROJECT, str(memo_home)], check=True)
    table = runs.fetch_runs_table(**CALL)
    assert list(table.index) == ["r1", "r2", "r3"]
    assert table.loc["r1", "x"] == 0.9


def test_a_filter_on_the_evaluation_time_is_never_reused(memo_home: Path) -> None:
    """``sys/state`` depends on the time of the query: the key holds it."""
    service = _service(memo_home)
    running = '`sys/state`:experimentState = "running"'
    steady = Filter.gt(Attribute("x", "float"), 0.5)
    keys = []
    for now_ms in (1_000, 2_000):
        with service.snapshot(PROJECT) as snap:
            snap.now_ms = now_ms
            keys.append((snap._table_key({"nql": running}), snap._table_key({"nql": steady})))
    assert keys[0][0] != keys[1][0]
    assert keys[0][1] == keys[1][1]


def test_postgres_read_version_is_the_read_transactions_snapshot(memo_home: Path) -> None:
    """Over PostgreSQL the version is ``pg_current_snapshot()``: a commit by another connection
    after the read transaction began does not change it within the transaction (else a table
    read at the old snapshot would be kept under the new one, and served stale), changes it
    for the next transaction, and holds across connections; a read inside a write has none."""
    store = _service(memo_home).store
    if store.dialect != "postgresql":
        pytest.skip("the embedded store's version is per connection (tests above)")
    assert store.read_versions_shared
    with store.read() as conn:
        conn.execute("SELECT count(*) FROM runs").fetchone()  # the snapshot is taken here
        before = store.read_version(conn)
        other = Store.open(url=store.url)
        try:
            with other.write() as writer:
                writer.execute("UPDATE runs SET description = 'later' WHERE run_id = 'r3'")
        finally:
            other.close()
        assert store.read_version(conn) == before
    with store.read() as conn:
        after = store.read_version(conn)
    assert after is not None and after != before
    seen = runs.fetch_runs_table(**CALL)
    assert seen.loc["r3", "sys/description"] == "later"
    rows = READ_STATS.rows
    assert runs.fetch_runs_table(**CALL).equals(seen)  # from any pooled connection
    assert READ_STATS.rows == rows
    with store.write() as conn, store.read() as nested:
        assert store.read_version(nested) is None
