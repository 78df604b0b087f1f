"""Opening a PostgreSQL store: one connection pool per process, migrations under an advisory lock.

:meth:`PostgresDatabase.open` checks the URL, connects once directly (so that an unreachable
server, a missing database, a refused login or too old a server each get their own message,
naming the URL with its password masked and the fix), reads the schema version, migrates when
needed and only then opens the pool. Nothing is written before every check passed: a schema newer
than this code is refused after a read.

Migrations run in one transaction under ``pg_advisory_lock(MIGRATE_LOCK)``: replicas
starting at once wait for each other, and the second finds the schema current. PostgreSQL's DDL is
transactional, so a migration that fails leaves the database as it was.

Every connection binds a Python NaN as NULL, as SQLite does: "NULL means NaN" holds whatever
code writes a float (see :func:`configure_connection`).

Writes: :meth:`PostgresDatabase.write` is one transaction. A ``durable=False`` write commits with
``synchronous_commit = off``: it survives a killed despina process (the server has it) but not a
crash of the PostgreSQL server itself, the same promise as the embedded store's ``NORMAL``
commits; a durable write waits for its WAL to reach stable storage, which covers every commit
before it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import NumericBinaryLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from despina.errors import ConfigError, SchemaTooNew, StoreError
from despina.store.postgres.schema import MIGRATE_LOCK, MIGRATIONS, SCHEMA_VERSION
from despina.store.urls import mask_url, parse_store_url

__all__ = ["MIN_SERVER_VERSION", "PoolSettings", "PostgresDatabase", "configure_connection"]

MIN_SERVER_VERSION = 150000
"""PostgreSQL 15 (``server_version_num``)."""

_UPGRADE = "upgrade despina (pip install -U despina)"


@dataclass(frozen=True)
class PoolSettings:
    """How a process connects to the database.

    ``min_size`` connections are kept open and up to ``max_size`` are opened under load;
    ``timeout`` is how long a caller waits for a free connection (then :class:`StoreError`);
    ``connect_timeout`` bounds each connection attempt. ``pgbouncer`` turns psycopg's automatic
    prepared statements off (``prepare_threshold=None``), which a transaction-pooling PgBouncer
    (1.18, Debian's) cannot carry across server connections. ``application_name`` shows in
    ``pg_stat_activity``.
    """

    min_size: int = 1
    max_size: int = 16
    timeout: float = 30.0
    connect_timeout: float = 10.0
    pgbouncer: bool = False
    application_name: str = "despina"

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of every connection (``psycopg.connect`` / the pool's ``kwargs``)."""
        kwargs: dict[str, Any] = {
            "autocommit": True,  # transactions are explicit: write() and read()
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": self.application_name,
        }
        if self.pgbouncer:
            kwargs["prepare_threshold"] = None
        return kwargs


class _ExactFloatDumper(Dumper):
    """A float as its shortest exact decimal, typed ``numeric`` (NaN: NULL).

    ``numeric`` because ``attributes.num`` is: PostgreSQL's float8 -> numeric cast keeps only 15
    digits. An integral float keeps a fraction part (``2.0``) so that it reads back as a float.
    Into a ``double precision`` column or comparison the decimal converts back exactly.
    """

    oid = psycopg.adapters.types["numeric"].oid

    def dump(self, obj: float) -> Buffer | None:
        if obj != obj:
            return None
        if obj in (math.inf, -math.inf):
            return b"Infinity" if obj > 0 else b"-Infinity"
        if obj == int(obj):
            return b"%.1f" % obj
        return repr(obj).encode()


class _BoolAsIntDumper(Dumper):
    """A bool as 0/1: the store's flags are integers, as in SQLite."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> Buffer | None:
        return b"1" if obj else b"0"


class _NumericLoader(Loader):
    """``numeric`` as an int when it has no fraction part, else a float (see the dumper)."""

    def load(self, data: Buffer) -> Any:
        text = bytes(data)
        if b"." in text or b"I" in text or b"N" in text or b"e" in text:
            return float(text)
        return int(text)


class _NumericBinaryLoader(NumericBinaryLoader):
    def load(self, data: Buffer) -> Any:
        value = super().load(data)
        if value.is_nan():
            return math.nan
        if value.is_infinite() or value.as_tuple().exponent < 0:  # type: ignore[operator]
            return float(value)
        return int(value)


def configure_connection(conn: psycopg.Connection[Any]) -> None:
    """Adapt a new connection to the store's conventions: a Python float binds exactly (NaN as
    NULL), a bool as 0/1, and a ``numeric`` reads back as an int or a float."""
    conn.adapters.register_dumper(float, _ExactFloatDumper)
    conn.adapters.register_dumper(bool, _BoolAsIntDumper)
    conn.adapters.register_loader("numeric", _NumericLoader)
    conn.adapters.register_loader("numeric", _NumericBinaryLoader)


class PostgresDatabase:
    """A migrated PostgreSQL database and this process's pool of connections to it.

    Safe to share between threads: each :meth:`connection` / :meth:`write` / :meth:`read`
    borrows a pooled connection for the duration of the block.
    """

    def __init__(self, url: str, pool: ConnectionPool[Any], settings: PoolSettings) -> None:
        self.url = url
        self.display_url = mask_url(url)
        self.pool = pool
        self.settings = settings

    @classmethod
    def open(
        cls, url: str, settings: PoolSettings | None = None, *, migrate: bool = True
    ) -> PostgresDatabase:
        """Connect to the database at ``url`` (``postgresql://`` or ``postgres://``), bring its
        schema to this code's version, and open the pool.

        With ``migrate=False`` an out-of-date schema is an error instead of being migrated.

        Raises:
            ConfigError: ``url`` is not a PostgreSQL URL or is malformed.
            StoreError: the server cannot be reached, the database does not exist, the login is
                refused, the server is older than PostgreSQL 15, the schema is older than this
                code and ``migrate`` is off, or a migration failed (rolled back). Each message
                names the URL (password masked) and the fix.
            SchemaTooNew: the database was written by a newer despina; nothing was written.
        """
        location = parse_store_url(url)
        if location.kind != "postgresql" or location.url is None:
            raise ConfigError(
                f"{location.display!r} is not a PostgreSQL URL; write it as "
                "postgresql://user@host:port/database"
            )
        settings = settings or PoolSettings()
        url = location.url
        with _connect(url, settings) as conn:
            _check_server(conn, url)
            _ensure_schema(conn, url, migrate=migrate)
        pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=settings.min_size,
            max_size=settings.max_size,
            timeout=settings.timeout,
            kwargs=settings.connect_kwargs(),
            configure=configure_connection,
            name="despina",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=max(settings.timeout, settings.connect_timeout))
        except PoolTimeout as exc:
            pool.close()
            raise StoreError(
                f"cannot open {settings.min_size} connection(s) to {mask_url(url)!r} within "
                f"{settings.timeout:g} s: {exc}; check the server's max_connections"
            ) from exc
        return cls(url, pool, settings)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections and transactions ----------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit mode, returned to the pool after the block.

        Raises:
            StoreError: no connection became free within the pool timeout.
        """
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(
                f"no free connection to {self.display_url!r} within "
                f"{self.settings.timeout:g} s (pool of {self.settings.max_size}); "
                "raise the pool size or the server's max_connections"
            ) from exc

    @contextlib.contextmanager
    def write(self, *, durable: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction: committed when the block exits, rolled back on error.

        A ``durable`` commit is on stable storage when the block exits (and so is everything
        committed before it); otherwise the commit survives a killed despina process but not a
        crash of the PostgreSQL server.
        """
        with self.connection() as conn, conn.transaction():
            if not durable:
                conn.execute("SET LOCAL synchronous_commit = off")
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[psycopg.Connection[Any]]:
        """A read-only transaction on one snapshot (``REPEATABLE READ``)."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn

    def schema_version(self) -> int:
        """The schema version of the database (0 for an empty one)."""
        with self.connection() as conn:
            return _schema_version(conn)


# -- opening -----------------------------------------------------------------------------------


def _connect(url: str, settings: PoolSettings) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(url, **settings.connect_kwargs())
    except psycopg.Error as exc:
        raise _connect_error(url, exc) from exc
    configure_connection(conn)
    return conn


def _connect_error(url: str, exc: psycopg.Error) -> StoreError:
    """A StoreError for a failed connection attempt: which of the usual causes, and the fix."""
    params = conninfo_to_dict(url)
    host = str(params.get("host") or "the default Unix socket")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "")
    user = str(params.get("user") or "the current user")
    as_user = f" -U {params['user']}" if params.get("user") else ""
    shown = mask_url(url)
    detail = _server_message(exc, url)
    lowered = detail.lower()
    if exc.sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return StoreError(
            f"database {dbname!r} does not exist on the PostgreSQL server of {shown!r}; "
            f"create it (createdb -h {host} -p {port}{as_user} {dbname}) or fix the database name "
            "in the URL"
        )
    if (
        exc.sqlstate in ("28P01", "28000")
        or "password authentication failed" in lowered
        or "no password supplied" in lowered
        or "pg_hba.conf" in lowered
        or ("role" in lowered and "does not exist" in lowered)
    ):
        return StoreError(
            f"PostgreSQL refused the login of user {user!r} at {shown!r}: {detail}; check the "
            "user name and password in the URL (or PGPASSWORD, ~/.pgpass) and the server's "
            "pg_hba.conf"
        )
    return StoreError(
        f"cannot reach PostgreSQL at {shown!r} (host {host}, port {port}): {detail}; check that "
        "the server is running and accepts TCP connections there (and that the port is "
        "PostgreSQL's), or fix the host and port in the URL"
    )


def _server_message(exc: psycopg.Error, url: str) -> str:
    """The driver's message on one line, without the password even if libpq quoted it."""
    text = " ".join(str(exc).split())
    password = conninfo_to_dict(url).get("password")
    if password:
        text = text.replace(str(password), "***")
    return text or type(exc).__name__


def _check_server(conn: psycopg.Connection[Any], url: str) -> None:
    version = conn.info.server_version
    if version < MIN_SERVER_VERSION:
        raise StoreError(
            f"the PostgreSQL server at {mask_url(url)!r} is version {version // 10000}; "
            "despina needs PostgreSQL 15 or newer: upgrade the server"
        )


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(found[0]) if found and found[0] is not None else 0


def _too_new(url: str, found: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"the database at {mask_url(url)!r} was written by a newer despina (schema v{found}, "
        f"this code knows up to v{SCHEMA_VERSION}): {_UPGRADE}"
    )


def _ensure_schema(conn: psycopg.Connection[Any], url: str, *, migrate: bool) -> None:
    try:
        current = _schema_version(conn)
        if current == SCHEMA_VERSION:
            return
        if current > SCHEMA_VERSION:
            raise _too_new(url, current)
        if not migrate:
            raise StoreError(
                f"the database at {mask_url(url)!r} has schema v{current}, this code needs "
                f"v{SCHEMA_VERSION}; start despina once with migrations allowed to upgrade it"
            )
        # A session lock taken before the transaction starts: a transaction begun after it
        # sees the catalog as another replica's migration left it (a lock taken inside the
        # transaction would not refresh the catalog caches the name lookups go through).
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        try:
            with conn.transaction():
                current = _schema_version(conn)  # re-read under the lock: another may have won
                if current > SCHEMA_VERSION:
                    raise _too_new(url, current)
                if current == 0:
                    conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
                    conn.execute("INSERT INTO schema_version VALUES (0)")
                for step in MIGRATIONS[current:]:
                    conn.execute(step.encode())  # a trusted script without parameters
                conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot bring the schema of {mask_url(url)!r} to v{SCHEMA_VERSION}: "
            f"{_server_message(exc, url)}; nothing was changed (the migration rolled back)"
        ) from exc
