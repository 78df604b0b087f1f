"""Space left by a writer's dead rows, made reusable while logging runs, not a minute later.

Every flush leaves dead rows on PostgreSQL: the pieces a merge replaces in ``chunks`` (one short
row per series per flush, ``store/writer.py``) and the old version of each series' attribute
row (its aggregates are in the covering NQL index, so the update is never HOT). A dead row's
space is reused only after a ``VACUUM`` has recorded it in the free space map; until then every
insert extends the table. Autovacuum looks at a database once per ``autovacuum_naptime`` (one
minute by default), in which a server ingesting 0.5M points/s leaves ~600 MB of dead pieces;
measured on the store benchmark, a store that only autovacuum cleaned held 32 bytes per point
against 13 with a ``VACUUM`` each second.

:class:`Vacuumer` runs in every process that writes to a PostgreSQL store (started by its first
write transaction): each :data:`CHECK_INTERVAL_S` it reads the dead-row counts of
:data:`TABLES` from ``pg_stat_user_tables`` and vacuums a table with at least
:data:`MIN_DEAD_ROWS` dead rows and :data:`DEAD_FRACTION` of its live ones. A plain ``VACUUM``
reads only the pages changed since the last one (the visibility map marks the others) and skips
the indexes while few pages hold dead rows, so it costs tens of milliseconds; it blocks neither
reads nor writes. One process of a database vacuums at a time (an advisory lock, taken without
waiting: the others skip their turn; ``SKIP_LOCKED`` besides). A role that does not own the
tables gets a warning from PostgreSQL and nothing is done; autovacuum's per-table settings
(schema v6) remain.
``DESPINA_PG_VACUUM=0`` in a process's environment leaves the tables to autovacuum alone (for a
database whose administrator schedules vacuums).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from despina.store.postgres.connection import PostgresDatabase
from despina.store.postgres.schema import advisory_key

__all__ = [
    "CHECK_INTERVAL_S",
    "DEAD_FRACTION",
    "ENV",
    "MIN_DEAD_ROWS",
    "TABLES",
    "Vacuumer",
    "due_tables",
    "vacuum_due",
]

log = logging.getLogger(__name__)

TABLES = ("chunks", "attributes")
"""The tables a flush leaves dead rows in."""

CHECK_INTERVAL_S = 1.0
"""Seconds between two looks at the dead-row counts."""

MIN_DEAD_ROWS = 1000
"""Dead rows a table must hold before it is vacuumed (about 200 KB of pieces)."""

DEAD_FRACTION = 0.02
"""...and this fraction of its live rows, so that a large table is not vacuumed every second."""

ENV = "DESPINA_PG_VACUUM"
"""``0`` turns the writing processes' vacuums off."""

LOCK = advisory_key("job:vacuum")
"""The advisory lock of the process that vacuums."""


class Vacuumer:
    """Vacuums the tables of :data:`TABLES` that hold enough dead rows (module docstring).

    ``database_of`` gives the store's database each time the thread looks (a store may reopen
    its pool after a close).
    """

    def __init__(self, database_of: Callable[[], PostgresDatabase | None]) -> None:
        self._database = database_of
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="despina-vacuum", daemon=True)

    def start(self) -> None:
        """Start the thread, unless ``DESPINA_PG_VACUUM=0``."""
        if os.environ.get(ENV, "1").strip() != "0":
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it (a ``VACUUM`` under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL_S):
            database = self._database()
            if database is None or database.pool.closed:
                continue
            try:
                vacuum_due(database)
            except psycopg.Error as exc:  # a dropped database, a restart: look again later
                log.debug("vacuum of %s skipped: %s", database.display_url, exc)
            except Exception:  # the pool closing under us; never kill the process's writes
                log.debug("vacuum of %s skipped", database.display_url, exc_info=True)


def due_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """The tables of :data:`TABLES` with enough dead rows to vacuum now."""
    rows = conn.execute(
        "SELECT relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables "
        "WHERE relname = ANY(%s) AND schemaname = current_schema()",
        (list(TABLES),),
    ).fetchall()
    return sorted(
        str(name)
        for name, dead, live in rows
        if dead >= MIN_DEAD_ROWS and dead >= DEAD_FRACTION * live
    )


def vacuum_due(database: PostgresDatabase) -> list[str]:
    """Vacuum the tables that are due, unless another process is vacuuming; returns them."""
    with database.connection() as conn:  # autocommit: VACUUM cannot run in a transaction
        tables = due_tables(conn)
        if not tables:
            return []
        # behind a transaction-pooling PgBouncer a session lock could stay on a server
        # connection: there, SKIP_LOCKED alone keeps two vacuums of one table apart
        locking = not database.settings.pgbouncer
        if locking:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK,)).fetchone()
            if not (row and row[0]):
                return []
        try:
            for table in tables:  # names from TABLES, never from input
                conn.execute(f"VACUUM (SKIP_LOCKED) {table}".encode())
        finally:
            if locking:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
        return tables
