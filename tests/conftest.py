"""Shared fixtures: every test gets its own store directory and no inherited project settings."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# a real PostgreSQL cluster per session (fixtures postgres_cluster, postgres_url); a local S3
# emulator per session (fixtures s3_emulator, s3_blobs)
pytest_plugins = ("postgres_cluster", "s3_emulator")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point DESPINA_HOME at a fresh directory and clear project/token variables."""
    home = tmp_path / "despina-home"
    monkeypatch.setenv("DESPINA_HOME", str(home))
    # --store and --blobs set DESPINA_STORE / DESPINA_BLOBS in-process (cli/locations.py):
    # set-then-delete, so that both are restored (to absent) after a test that ran a command
    # with them (store_backend sets DESPINA_STORE again over PostgreSQL)
    monkeypatch.setenv("DESPINA_STORE", "")
    monkeypatch.setenv("DESPINA_BLOBS", "")
    for name in (
        "DESPINA_STORE",
        "DESPINA_BLOBS",
        "DESPINA_PROJECT",
        "NEPTUNE_PROJECT",
        "NEPTUNE_API_TOKEN",
        "DESPINA_API_TOKEN",
        "DESPINA_LOG_DIRECTORY",
        "NEPTUNE_MODE",
        "NEPTUNE_LOG_FAILURE_ACTION",
    ):
        monkeypatch.delenv(name, raising=False)
    yield home
    _forget_query_choices()


def _forget_query_choices() -> None:
    """A store or token a test chose for ``despina.query`` (``set_home``, ``set_store``,
    ``set_api_token``) does not send later tests in the same worker there."""
    from despina.query import api

    api._home = None
    api._store_url = None
    api._api_token = None


BACKEND_ENV = "DESPINA_TEST_STORE"
"""``postgresql`` runs the tests over PostgreSQL: each test gets a new database (a copy of one
migrated once per session; or the previous test's, when nothing wrote in it) named by
``DESPINA_STORE``, so every ``Store.open`` lands there."""


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The store backend of this test: ``sqlite`` (the default) or ``postgresql``."""
    if os.environ.get(BACKEND_ENV, "sqlite") != "postgresql":
        yield "sqlite"
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("checks the embedded store itself")
    cluster = request.getfixturevalue("postgres_cluster")
    # a test using a module's shared fixtures (a server, its data) works in their database
    shared = (
        request.getfixturevalue("module_store") if "module_store" in request.fixturenames else None
    )
    url = shared or _suite_database(cluster)
    mark = None if shared else _next_transaction_id(cluster)
    monkeypatch.setenv("DESPINA_STORE", url)
    opened: list[Any] = []
    from despina.store.postgres.store import PostgresStore

    original = PostgresStore.open_url.__func__  # type: ignore[attr-defined]

    def recording_open(cls: type, *args: Any, **kwargs: Any) -> Any:
        store = original(cls, *args, **kwargs)
        opened.append(store)
        return store

    monkeypatch.setattr(PostgresStore, "open_url", classmethod(recording_open))
    # and every pool the test's stores open again after a close (the contract lets a closed
    # store be used again): one left open reconnects to the dropped database in later tests
    from despina.store.postgres.connection import PostgresDatabase

    original_database = PostgresDatabase.open.__func__  # type: ignore[attr-defined]
    databases: list[Any] = []

    def recording_database(cls: type, *args: Any, **kwargs: Any) -> Any:
        database = original_database(cls, *args, **kwargs)
        databases.append(database)
        return database

    monkeypatch.setattr(PostgresDatabase, "open", classmethod(recording_database))
    yield "postgresql"
    for store in opened:
        store.close()
    for database in databases:
        database.close()
    if shared is None:
        _release_suite_database(cluster, url, mark)


@pytest.fixture(scope="module")
def module_store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The store of a module's shared fixtures (servers and the data they serve) and of the
    tests that use them: list it among a module-scoped fixture's arguments when the fixture
    opens a store or starts a server.

    On the embedded store: ``None`` (each fixture's home directory is its store). Over
    PostgreSQL: one database for the module, named by ``DESPINA_STORE`` from the fixtures' set-up
    to the module's end, so that the stores they open, the ``despina serve`` processes they start
    (which inherit the variable) and the tests using them (``store_backend``) all meet there.
    """
    if os.environ.get(BACKEND_ENV, "sqlite") != "postgresql":
        yield None
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = _suite_database(cluster)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DESPINA_STORE", url)
        yield url
    cluster.drop_database(url)


def _suite_database(cluster: Any) -> str:
    """A new database holding the current schema (copied from a template migrated once), or a
    copy that the previous test left exactly as it was created (see _release_suite_database)."""
    spare = getattr(cluster, "_suite_spare", None)
    if spare is not None:
        cluster._suite_spare = None
        return str(spare)
    template = getattr(cluster, "_suite_template", None)
    if template is None:
        from despina.store.postgres.connection import PostgresDatabase

        template = cluster.create_database("suite_template")
        PostgresDatabase.open(template).close()
        cluster._suite_template = template
    name = template.rsplit("/", 1)[-1]
    url = cluster.create_database("suite")
    cluster.execute(f'DROP DATABASE "{url.rsplit("/", 1)[-1]}"')
    cluster.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[-1]}" TEMPLATE "{name}"')
    return url


@pytest.fixture
def home(isolated_env: Path) -> Path:
    """The store directory of this test."""
    return isolated_env


def _next_transaction_id(cluster: Any) -> int:
    """The id the cluster's next writing transaction will get: any write (rows, sequences,
    schema, settings) in any of its databases takes an id and moves it on."""
    import psycopg

    with psycopg.connect(cluster.url(), autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
    assert row is not None
    return int(row[0])


def _release_suite_database(cluster: Any, url: str, mark: int | None) -> None:
    """Drop a test's database, or keep it for the next test when no transaction wrote anything
    in the cluster during the test: then it is still the template's copy, and creating a new
    one (the dearest step of a test over PostgreSQL) is saved.

    Each test process has a cluster of its own (tests/postgres_cluster.py), so only this test
    and its process's fixtures moved the transaction ids; a write by anything else only costs a
    new database.
    """
    import psycopg

    name = url.rsplit("/", 1)[-1]
    # end the connections the test left open (as DROP DATABASE ... WITH (FORCE) does): one
    # still open could write into the next test
    with psycopg.connect(cluster.url(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        for _ in range(100):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.02)
        else:
            mark = None
    if mark is not None and _next_transaction_id(cluster) == mark:
        cluster._suite_spare = url
    else:
        cluster.drop_database(url)
