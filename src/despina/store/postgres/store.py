"""The PostgreSQL store: the store contract over a PostgreSQL 15+ database.

Each thread borrows one connection from the process's pool and keeps it (as the embedded store
keeps one SQLite connection per thread), so that a thread's reads inside its own write see the
write. The connection speaks the store's shared SQL: :class:`PgConnection` translates each
statement once (:mod:`despina.store.postgres.dialect`) and binds a list given as JSON text as an
array.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from despina.config import resolve_home
from despina.errors import InvalidQuery, StoreBusy, StoreError
from despina.store.blobs.contract import BlobStore
from despina.store.blobs.directory import DirectoryBlobStore
from despina.store.contract import BUSY_TIMEOUT_MS, Store
from despina.store.postgres.connection import PoolSettings, PostgresDatabase
from despina.store.postgres.dialect import Translated, translate
from despina.store.postgres.schema import advisory_key
from despina.store.postgres.upkeep import Vacuumer

__all__ = ["PgConnection", "PgCursor", "PostgresStore"]


class PgCursor:
    """The result of one statement, read like a ``sqlite3.Cursor``."""

    def __init__(self, cursor: psycopg.Cursor[Any], lastrowid: int | None = None) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchmany(self, size: int = 1) -> list[Any]:
        return self._cursor.fetchmany(size) if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        if self._cursor.description:
            yield from self._cursor

    def close(self) -> None:
        self._cursor.close()


class PgConnection:
    """One PostgreSQL connection that runs the store's shared SQL (autocommit mode)."""

    def __init__(self, raw: psycopg.Connection[Any], display: str) -> None:
        self.raw = raw
        self.display = display
        self.in_transaction = False
        self.snapshot_read = False
        """Inside a read transaction of its own (not a read nested in a write)."""

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        plan = translate(sql)
        bound = _bind(plan, params)
        cursor = self.raw.cursor(binary=plan.binary)
        try:
            cursor.execute(plan.sql.encode() if not bound else plan.sql, bound or None)
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreBusy(f"the store at {self.display!r} is busy: {exc}") from exc
        except psycopg.DataError as exc:
            _refuse_nul(bound, exc)
            raise
        lastrowid = None
        if plan.returns_id:
            row = cursor.fetchone()
            lastrowid = int(row[0]) if row else None
        return PgCursor(cursor, lastrowid)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        plan = translate(sql)
        if plan.returns_id:
            plan = Translated(plan.sql.removesuffix(" RETURNING id"), plan.json_lists)
        cursor = self.raw.cursor()
        batch = [_bind(plan, row) for row in rows]
        if batch:
            cursor.executemany(plan.sql, batch)
        return PgCursor(cursor)

    def executescript(self, script: str) -> None:
        self.raw.execute(script.encode())


def _refuse_nul(params: Any, exc: Exception) -> None:
    """Raise :class:`InvalidQuery` (a 400) naming the text that holds a NUL character, which
    PostgreSQL's text cannot hold (SQLite's can): no stored text matches it."""
    values = params.values() if isinstance(params, dict) else params or ()
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    for value in flat:  # a JSON list bound as an array holds its texts one level down
        if isinstance(value, str) and "\x00" in value:
            raise InvalidQuery(
                f"text with a NUL character (\\x00) cannot be stored or looked up in this "
                f"PostgreSQL store: {value[:100]!r}; remove the character"
            ) from exc


def _bind(plan: Translated, params: Sequence[Any] | dict[str, Any]) -> Any:
    if not plan.json_lists or isinstance(params, dict):
        return params
    bound = list(params)
    for index in plan.json_lists:
        value = bound[index]
        if isinstance(value, (str, bytes)):
            bound[index] = json.loads(value)
    return bound


class _Borrowed:
    """A thread's pooled connection; given back to the pool when the thread ends."""

    def __init__(self, store: PostgresStore, conn: PgConnection) -> None:
        self.store = store
        self.conn = conn

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.store._give_back(self.conn)


class PostgresStore(Store):
    """The store in a PostgreSQL database (see the module docstring)."""

    dialect = "postgresql"

    def __init__(
        self, database: PostgresDatabase, home: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS
    ) -> None:
        self.database = database
        # how long a statement waits for another transaction's lock (a run's row, a table
        # locked by an administrator) before StoreBusy: PostgreSQL's lock_timeout
        self.busy_timeout_ms = busy_timeout_ms
        self.url = database.url
        self.display = database.display_url
        self.home = home
        self.blobs_dir = home / "blobs"
        # the default; Store.open puts the blob store chosen by blobs= / DESPINA_BLOBS here
        self.blobs: BlobStore = DirectoryBlobStore(self.blobs_dir, uploads_dir=home / "uploads")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._borrowed: list[PgConnection] = []
        # started by the first write: reclaims the space of the rows flushes leave dead
        self._vacuumer: Vacuumer | None = None

    @classmethod
    def open_url(
        cls,
        url: str,
        *,
        home: str | os.PathLike[str] | None = None,
        settings: PoolSettings | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> PostgresStore:
        """Connect to, and migrate, the database at ``url`` (see :meth:`Store.open`)."""
        settings = settings or PoolSettings(min_size=1, max_size=64)
        database = PostgresDatabase.open(url, settings)
        return cls(database, resolve_home(home), busy_timeout_ms=busy_timeout_ms)

    # -- connections ---------------------------------------------------------------------------

    def connection(self) -> PgConnection:
        borrowed: _Borrowed | None = getattr(self._local, "borrowed", None)
        if borrowed is None or borrowed.conn.raw.closed:
            if self.database.pool.closed:  # closed earlier: the contract lets it be used again
                with self._lock:
                    if self.database.pool.closed:
                        self.database = PostgresDatabase.open(self.url, self.database.settings)
            raw = self.database.pool.getconn()
            # once per borrowed connection, not per transaction: no round trip on each write
            raw.execute(f"SET lock_timeout = {max(1, int(self.busy_timeout_ms))}".encode())
            conn = PgConnection(raw, self.display)
            with self._lock:
                self._borrowed.append(conn)
            borrowed = self._local.borrowed = _Borrowed(self, conn)
        return borrowed.conn

    def _give_back(self, conn: PgConnection) -> None:
        with self._lock:
            if conn not in self._borrowed:
                return
            self._borrowed.remove(conn)
        with contextlib.suppress(Exception):
            self.database.pool.putconn(conn.raw)

    def close(self) -> None:
        with self._lock:
            borrowed, self._borrowed = self._borrowed, []
            vacuumer, self._vacuumer = self._vacuumer, None
        if vacuumer is not None:
            vacuumer.stop()
        for conn in borrowed:
            with contextlib.suppress(Exception):
                self.database.pool.putconn(conn.raw)
        self._local = threading.local()
        self.database.close()

    @contextlib.contextmanager
    def write(self, *, durable: bool = False) -> Iterator[PgConnection]:
        if self._vacuumer is None:
            self._start_vacuumer()
        conn = self.connection()
        raw = conn.raw
        if conn.in_transaction:
            raise StoreError("a write transaction cannot start inside another transaction")
        try:
            raw.execute(b"BEGIN")
            if not durable:
                raw.execute(b"SET LOCAL synchronous_commit = off")
        except psycopg.Error as exc:
            raise StoreError(f"cannot start a write to {self.display!r}: {exc}") from exc
        conn.in_transaction = True
        try:
            try:
                yield conn
            except BaseException as exc:
                with contextlib.suppress(psycopg.Error):
                    raw.execute(b"ROLLBACK")
                if isinstance(exc, psycopg.errors.LockNotAvailable):  # a raw statement's wait
                    raise StoreBusy(f"the store at {self.display!r} is busy: {exc}") from exc
                raise
            try:
                raw.execute(b"COMMIT")
            except psycopg.Error as exc:
                with contextlib.suppress(psycopg.Error):
                    raw.execute(b"ROLLBACK")
                raise StoreError(f"cannot commit to {self.display!r}: {exc}") from exc
        finally:
            conn.in_transaction = False

    def _start_vacuumer(self) -> None:
        with self._lock:
            if self._vacuumer is None:
                self._vacuumer = Vacuumer(lambda: self.database)
                self._vacuumer.start()

    @contextlib.contextmanager
    def read(self) -> Iterator[PgConnection]:
        conn = self.connection()
        if conn.in_transaction:  # a read inside this thread's write sees the write
            yield conn
            return
        conn.raw.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.in_transaction = conn.snapshot_read = True
        try:
            yield conn
        finally:
            conn.in_transaction = conn.snapshot_read = False
            with contextlib.suppress(psycopg.Error):
                conn.raw.execute(b"COMMIT")

    read_versions_shared = True

    def read_version(self, conn: Any) -> Hashable | None:
        """The read transaction's snapshot (``pg_current_snapshot()``: the oldest transaction
        still running, the next transaction id, those running in between). Transaction ids are
        given only to writing transactions, cluster-wide, so two equal snapshots see the same
        committed data; the value holds in every connection. A repeatable-read transaction's
        statements share its snapshot, so this is the one the transaction's reads saw. ``None``
        for a read inside a write, which sees its own uncommitted rows."""
        if not getattr(conn, "snapshot_read", False):
            return None
        row = conn.raw.execute(b"SELECT pg_current_snapshot()::text").fetchone()
        return None if row is None else str(row[0])

    def sync(self) -> None:
        # a commit under synchronous_commit=on waits for the WAL up to it, which covers every
        # earlier commit, even those made with synchronous_commit=off
        with self.write(durable=True) as conn:
            conn.raw.execute(b"SELECT txid_current()")

    def refresh_statistics(self) -> None:
        # autovacuum analyzes a table once enough rows changed, but only on its next pass over the
        # database: queries right after a bulk load would be planned on empty-table estimates
        with self.database.connection() as conn:
            conn.execute("ANALYZE")

    def schema_version(self) -> int:
        return self.database.schema_version()

    # -- projects and shared state -------------------------------------------------------------

    def _serialize_workspace(self, conn: Any, workspace: str) -> None:
        # writers do not take turns on PostgreSQL: creators of one workspace's projects do
        conn.raw.execute(
            "SELECT pg_advisory_xact_lock(%s)", (advisory_key(f"workspace:{workspace}"),)
        )

    @contextlib.contextmanager
    def job_lease(self, name: str) -> Iterator[bool]:
        # a session lock on a connection of its own: held until released or the process dies
        with self.database.connection() as raw:
            key = advisory_key(f"job:{name}")
            row = raw.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    with contextlib.suppress(psycopg.Error):
                        raw.execute("SELECT pg_advisory_unlock(%s)", (key,))
