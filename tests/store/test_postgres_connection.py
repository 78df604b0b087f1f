"""Opening a PostgreSQL store from a bad URL: each case a clear error naming the URL (password
masked) and the fix, with nothing written."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import psycopg
import pytest

from despina.errors import ConfigError, SchemaTooNew, StoreError
from despina.store.postgres import PoolSettings, PostgresDatabase
from despina.store.postgres.schema import SCHEMA_VERSION
from postgres_cluster import PASSWORD, PASSWORD_USER, PostgresCluster


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def test_unreachable_port_names_the_url_and_the_fix() -> None:
    url = f"postgresql://me:hunter2@127.0.0.1:{_closed_port()}/db"
    with pytest.raises(StoreError) as caught:
        PostgresDatabase.open(url, PoolSettings(connect_timeout=2))
    message = str(caught.value)
    assert "cannot reach PostgreSQL" in message
    assert "postgresql://me:***@127.0.0.1" in message
    assert "hunter2" not in message
    assert "check that the server is running" in message


def test_a_port_that_is_not_postgres_is_an_unreachable_error() -> None:
    """Something else answers on the port (here: a listener that replies like an HTTP server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(StoreError) as caught:
            PostgresDatabase.open(
                f"postgresql://u@127.0.0.1:{port}/db?sslmode=disable",
                PoolSettings(connect_timeout=2),
            )
    finally:
        listener.close()
        thread.join(5)
    message = str(caught.value)
    assert (
        f"cannot reach PostgreSQL at 'postgresql://u@127.0.0.1:{port}/db?sslmode=disable'"
        in message
    )
    assert "the port is PostgreSQL's" in message


def test_missing_database_names_it_and_how_to_create_it(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.url("no_such_db")
    with pytest.raises(StoreError) as caught:
        PostgresDatabase.open(url)
    message = str(caught.value)
    assert "database 'no_such_db' does not exist" in message
    assert url in message
    assert "createdb" in message


def test_wrong_password_is_an_auth_error_without_the_password(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    dbname = postgres_url.rsplit("/", 1)[-1]
    url = postgres_cluster.url(dbname, user=PASSWORD_USER, password="wrong-pw-19")
    with pytest.raises(StoreError) as caught:
        PostgresDatabase.open(url)
    message = str(caught.value)
    assert f"refused the login of user {PASSWORD_USER!r}" in message
    assert f"postgresql://{PASSWORD_USER}:***@127.0.0.1" in message
    assert "wrong-pw-19" not in message
    assert "check the user name and password" in message
    assert _tables(postgres_url) == []  # nothing written


def test_right_password_opens(postgres_cluster: PostgresCluster, postgres_url: str) -> None:
    dbname = postgres_url.rsplit("/", 1)[-1]
    postgres_cluster.execute(f"ALTER DATABASE {dbname} OWNER TO {PASSWORD_USER}")
    url = postgres_cluster.url(dbname, user=PASSWORD_USER, password=PASSWORD)
    with PostgresDatabase.open(url) as db:
        assert db.schema_version() == SCHEMA_VERSION
        assert PASSWORD not in db.display_url


def test_unknown_user_is_an_auth_error(postgres_cluster: PostgresCluster) -> None:
    with pytest.raises(StoreError) as caught:
        PostgresDatabase.open(postgres_cluster.url("postgres", user="nobody_here"))
    assert "refused the login of user 'nobody_here'" in str(caught.value)


def test_schema_newer_than_the_code_is_refused_with_nothing_written(postgres_url: str) -> None:
    newer = SCHEMA_VERSION + 3
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (%s)", (newer,))
    with pytest.raises(SchemaTooNew) as caught:
        PostgresDatabase.open(postgres_url)
    assert str(caught.value) == (
        f"the database at {postgres_url!r} was written by a newer despina "
        f"(schema v{newer}, this code knows up to v{SCHEMA_VERSION}): "
        "upgrade despina (pip install -U despina)"
    )
    assert _tables(postgres_url) == ["schema_version"]
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(newer,)]


def test_an_older_schema_without_migrations_allowed_is_refused(postgres_url: str) -> None:
    with pytest.raises(StoreError, match="start despina once with migrations allowed"):
        PostgresDatabase.open(postgres_url, migrate=False)
    assert _tables(postgres_url) == []


def test_a_failed_migration_rolls_back(postgres_url: str) -> None:
    """A database that already has a table of that name (another application's): the error
    names the URL and the conflict, and the migration leaves nothing behind."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE chunks (x integer)")
    with pytest.raises(StoreError) as caught:
        PostgresDatabase.open(postgres_url)
    message = str(caught.value)
    assert postgres_url in message and 'relation "chunks" already exists' in message
    assert _tables(postgres_url) == ["chunks"]


@pytest.mark.parametrize("url", ["sqlite:///tmp/x", "/tmp/some/dir"])
def test_a_non_postgres_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="is not a PostgreSQL URL"):
        PostgresDatabase.open(url)


def test_pgbouncer_mode_turns_prepared_statements_off(postgres_url: str) -> None:
    with PostgresDatabase.open(postgres_url, PoolSettings(pgbouncer=True, max_size=2)) as db:
        with db.connection() as conn:
            assert conn.prepare_threshold is None
            for _ in range(8):  # past psycopg's default threshold of 5
                conn.execute("SELECT %s::int", (1,))
            row: Any = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert row == (0,)


def test_write_commits_and_rolls_back(postgres_url: str) -> None:
    with PostgresDatabase.open(postgres_url) as db:
        with db.write(durable=True) as conn:
            conn.execute(
                "INSERT INTO server_secrets (name, value, created_ms) VALUES ('k', %s, 1)",
                (b"\x00\xff",),
            )
        with pytest.raises(RuntimeError), db.write() as conn:
            conn.execute("INSERT INTO server_secrets (name, value, created_ms) VALUES ('j', '', 1)")
            raise RuntimeError("boom")
        with db.read() as conn:
            rows = conn.execute("SELECT name, value FROM server_secrets").fetchall()
    assert rows == [("k", b"\x00\xff")]
