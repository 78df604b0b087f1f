"""The embedded store: one SQLite database in WAL mode plus a directory of content-addressed blobs.

Several processes may log and read at once. Writers take short ``BEGIN IMMEDIATE`` transactions
and wait on each other through ``busy_timeout``; readers never block writers (WAL). Each thread
gets its own connection.

Durability has two levels. Every committed transaction survives a killed process
(``synchronous=NORMAL``: the WAL is in the OS cache). A *durable* write (``write(durable=True)``,
or :meth:`Store.sync` for everything committed so far) also survives a power loss: its commit
runs under ``synchronous=FULL`` on the writer's own connection, so SQLite fsyncs the WAL before
the commit becomes visible. The files are only ever touched through SQLite's descriptors: a
second descriptor of the database closed by this process would release every POSIX lock the
process holds on it, and another process could then delete the WAL under a live writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

from despina.config import resolve_home
from despina.errors import SchemaTooNew, StoreBusy, StoreError
from despina.store.blobs.contract import BlobStore
from despina.store.blobs.directory import DirectoryBlobStore
from despina.store.contract import Store
from despina.store.nql.functions import install_functions
from despina.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["DB_FILE", "SqliteStore"]

DB_FILE = "despina.db"
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
BUSY_TIMEOUT_MS = 60_000
PAGE_SIZE = 8192
SOFT_HEAP_LIMIT = 1 << 30
WAL_AUTOCHECKPOINT = 8192
# a store is private to the user who created it; the WAL and SHM files take the database's mode
DIR_MODE = 0o700
FILE_MODE = 0o600


class _ClosedWithThread:
    """Held in a thread's local storage beside its connection: when the thread ends and its
    locals are dropped, the connection is closed and forgotten by the store.

    The store is held weakly: when the store object itself goes away first (its thread-local
    storage with it), the connection is left to whoever still holds it, as it always was."""

    __slots__ = ("conn", "store")

    def __init__(self, store: SqliteStore, conn: sqlite3.Connection) -> None:
        self.store = weakref.ref(store)
        self.conn = conn

    def __del__(self) -> None:
        store = self.store()
        if store is None:
            return
        with contextlib.suppress(Exception):
            with store._lock:
                if self.conn not in store._connections:
                    return  # the store closed it already
                store._connections.remove(self.conn)
            self.conn.close()


class SqliteStore(Store):
    """Where projects, runs and everything logged to them live, on local disk.

    Construction is cheap and touches nothing; :meth:`open` creates the directory, connects and
    migrates. The object is safe to share between threads (one connection per thread).
    """

    dialect = "sqlite"

    def __init__(self, home: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.home = home
        self.display = str(home)
        self.db_path = home / DB_FILE
        self.blobs_dir = home / "blobs"
        # the default; Store.open puts the blob store chosen by blobs= / DESPINA_BLOBS here
        self.blobs: BlobStore = DirectoryBlobStore(self.blobs_dir, uploads_dir=home / "uploads")
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._new_file = False  # this object created the database file (see write())

    @classmethod
    def open_directory(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> SqliteStore:
        """Open (creating and migrating when needed) the store in directory ``home`` (see
        ``resolve_home``); :meth:`Store.open` picks this for a directory or ``sqlite://`` URL.

        ``busy_timeout_ms`` is how long a statement waits for another connection's lock before
        failing with :class:`StoreBusy`.

        A new store is private to its user, whatever the umask: the directories despina creates
        (the home and ``blobs``) get mode 0700 and a new database file 0600 (SQLite gives its WAL
        and SHM files the database's mode). What already exists keeps its mode: a directory the
        user chose (say, group-readable on purpose) and a database created earlier are not
        changed; parents of the home are created like ``mkdir -p``.

        Raises:
            StoreError: the directory cannot be created or the database cannot be opened.
            SchemaTooNew: the database was written by a newer despina.
        """
        store = cls(resolve_home(home), busy_timeout_ms=busy_timeout_ms)
        try:
            store.home.parent.mkdir(parents=True, exist_ok=True)
            _private_dir(store.home)
            _private_dir(store.blobs_dir)
            created = _private_file(store.db_path)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store in {str(store.home)!r}: {exc.strerror}; "
                "set DESPINA_HOME to a writable directory"
            ) from exc
        if created:  # written whole from the current schema's image: nothing to check
            store._new_file = True
        else:
            store._migrate()
        return store

    # -- connections -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = self._connect()
            local.conn = conn
            local.busy_timeout_ms = self.busy_timeout_ms
            # closed when the thread ends: a server's worker threads come and go, and their
            # connections (each with its page cache) must not pile up until close()
            local.closer = _ClosedWithThread(self, conn)
            with self._lock:
                self._connections.append(conn)
        elif local.busy_timeout_ms != self.busy_timeout_ms:
            # a store shared by a process's runs lives long: a changed timeout applies to the
            # connections it already has, too
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            local.busy_timeout_ms = self.busy_timeout_ms
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.db_path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            # page size and incremental vacuum only take effect on a new file; the latter lets
            # deleting runs give their space back to the file system. Only set on a new file:
            # on an existing one, setting auto_vacuum costs a write to the header (milliseconds
            # for every connection opened)
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Filters over 100k runs touch a few hundred MB of index and table pages; a 256 MiB
            # page cache keeps repeated queries about 20% faster than 64 MiB. Pages are taken
            # as they are read, and the soft limit (process-wide) makes SQLite recycle cache
            # pages before its total heap passes 1 GiB, however many connections a process has.
            conn.execute("PRAGMA cache_size = -262144")
            conn.execute(f"PRAGMA soft_heap_limit = {SOFT_HEAP_LIMIT}")
            conn.execute("PRAGMA temp_store = MEMORY")
            # fewer, larger checkpoints (each one syncs the database file), and a WAL file that
            # shrinks back after a burst instead of keeping its largest size on disk
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            install_functions(conn)  # compiled NQL calls nql_regexp (RE2)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the store database {str(self.db_path)!r}: {exc}"
            ) from exc
        return conn

    def _discard(self, conn: sqlite3.Connection) -> None:
        """Close this thread's connection ``conn``; the thread's next call opens another."""
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        self._local.conn = None
        self._local.closer = None
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on error.

        A ``durable`` write is on stable storage when the block exits, and so is everything
        committed before it (by any connection or process: the WAL is synced as a whole).
        Without it a commit survives a killed process but not a power loss. Acknowledge to
        someone else only what a durable write (or :meth:`sync`) covers.

        Raises:
            StoreError: the database stayed locked past the busy timeout or failed to write.
        """
        conn = self.connection()
        quiet = not durable and self._quiet_start()
        try:
            # the safety level is per connection and cannot change inside a transaction
            if durable:
                self._set_synchronous(conn, "FULL")
            elif quiet:
                self._set_synchronous(conn, "OFF")
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                error = StoreBusy if _is_busy(exc) else StoreError
                raise error(f"cannot start a write to {str(self.db_path)!r}: {exc}") from exc
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                error = StoreBusy if _is_busy(exc) else StoreError
                raise error(f"cannot commit to {str(self.db_path)!r}: {exc}") from exc
        finally:
            if durable or quiet:
                try:
                    self._set_synchronous(conn, "NORMAL")
                    if quiet:
                        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
                except (StoreError, sqlite3.Error):
                    if quiet:  # never left at OFF: its checkpoints would not sync
                        self._discard(conn)

    def _quiet_start(self) -> bool:
        """Whether this write is the first into a database file this object created, with a
        write-ahead log that holds no frame yet: such a write runs at ``synchronous=OFF``.

        At ``NORMAL``, SQLite syncs the header it writes when a log (re)starts, and with that
        first sync of a new log file the directory too (two of the six syncs a run in a new
        store made). The header sync keeps frames of an older generation left in the file from
        being taken for new ones after a power loss; an empty log has none. Nothing else
        differs for a commit (``NORMAL`` does not sync commits either), and the automatic
        checkpoint, which would not sync at ``OFF``, is off for this one transaction. The
        first durable write (a run's close) then syncs the log, header included, and the
        directory: only from there on is anything promised to survive a power loss.
        """
        if not self._new_file:
            return False
        self._new_file = False  # checked once: later writes start no new log
        try:
            return os.stat(f"{self.db_path}-wal").st_size == 0
        except FileNotFoundError:
            return True
        except OSError:
            return False

    def _set_synchronous(self, conn: sqlite3.Connection, level: str) -> None:
        try:
            conn.execute(f"PRAGMA synchronous = {level}")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot set synchronous={level} on {str(self.db_path)!r}: {exc}"
            ) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement inside sees the same snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")

    def read_version(self, conn: Any) -> Hashable | None:
        """``PRAGMA data_version`` (moves when another connection, in any process, commits)
        and ``conn``'s own count of changed rows (its own writes, which data_version does not
        count)."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        return int(version), int(conn.total_changes)

    def sync(self) -> None:
        """Put everything committed so far on stable storage (a durable write of its own).

        Commits that wrote nothing are never synced by SQLite, so this one changes a page: it
        bumps the database header's ``user_version`` (unused by despina otherwise) under
        ``synchronous=FULL``. That fsyncs the WAL, which holds every earlier commit not yet
        checkpointed (a checkpoint that empties the WAL syncs the database first). Costs one
        page write and one fsync; no checkpoint.

        Raises:
            StoreError: the database stayed locked past the busy timeout or failed to write.
        """
        with self.write(durable=True) as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            conn.execute(f"PRAGMA user_version = {(int(version) + 1) & 0x7FFFFFFF}")

    def checkpoint(self) -> bool:
        """Fold the write-ahead log into the database and truncate it.

        Returns ``False`` when readers in other processes kept part of the log in use; the log
        is then folded in later, by the next checkpoint.
        """
        busy, _, _ = self.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    # -- schema ------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version of the database (0 for an empty file)."""
        conn = self.connection()
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if row is None:
            return 0
        found = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(found[0]) if found else 0

    def _migrate(self) -> None:
        if self.schema_version() == SCHEMA_VERSION:
            return
        with self.write() as conn:
            current = self.schema_version()  # re-read under the write lock: another process may win
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the store at {str(self.home)!r} has schema version {current}, this despina "
                    f"understands up to {SCHEMA_VERSION}; upgrade despina (pip install -U despina)"
                )
            _migrate_from(conn, current)

    # -- state shared by server processes ------------------------------------------------------

    @contextlib.contextmanager
    def job_lease(self, name: str) -> Iterator[bool]:
        # an exclusive lock on a file of its own: released when the holder closes it or dies
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        path = self.home / f".job-{safe}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700 (exactly, whatever the umask); leave an existing one."""
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask


def _migrate_from(conn: sqlite3.Connection, current: int) -> None:
    """Bring the schema from version ``current`` to :data:`SCHEMA_VERSION` (in the caller's
    transaction)."""
    if current == 0:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (0)")
    for step in MIGRATIONS[current:]:
        for statement in _split_sql(step):
            conn.execute(statement)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


_images: dict[int, bytes] = {}  # by schema version
_image_lock = threading.Lock()


def _new_database_image() -> bytes:
    """The bytes of a new store's database file: the current schema, ``PAGE_SIZE`` pages,
    incremental vacuum and WAL mode; built once per process, in memory.

    Creating a store used to connect to an empty file, set the page size and vacuum mode and
    switch to WAL (two rollback-journal transactions: eight fsyncs) and then run ~80 schema
    statements: 10-40 ms, which is what a run in a fresh directory paid. Writing this image
    (and syncing it once) costs well under a millisecond.
    """
    with _image_lock:
        image = _images.get(SCHEMA_VERSION)
        if image is None:
            conn = sqlite3.connect(":memory:", isolation_level=None)
            try:
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("BEGIN")
                _migrate_from(conn, 0)
                conn.execute("COMMIT")
                contents = bytearray(conn.serialize())
            finally:
                conn.close()
            # the file format read and write versions: 2 is WAL mode (what PRAGMA journal_mode =
            # WAL writes into a file's header), so the first connection needs no mode switch
            contents[18] = contents[19] = 2
            image = _images[SCHEMA_VERSION] = bytes(contents)
        return image


def _private_file(path: Path) -> bool:
    """Create the database file with mode 0600 if there is none; leave an existing one.
    Returns whether this call created it from the schema image.

    The file appears under its name already private, complete (see
    :func:`_new_database_image`), on stable storage and closed: it is written under a temporary
    name and hard-linked into place, because closing a descriptor of the database itself would
    drop the POSIX locks SQLite connections of this process may already hold on it.
    """
    if path.exists():
        return False
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")
    created = False
    try:
        _create_private(temp, _new_database_image())
        os.link(temp, path)
        created = True
    except FileExistsError:
        pass  # another process or thread created it first: theirs stands
    except OSError:
        # no hard links on this file system: create it in place (closing that descriptor could
        # only drop locks of a connection that opened the file within these microseconds);
        # empty, it is migrated like any other file
        with contextlib.suppress(FileExistsError):
            _create_private(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    _sync_dir(path.parent)
    return created


def _create_private(path: Path, contents: bytes = b"") -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits off
        if contents:
            view = memoryview(contents)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)  # before it is linked in: a WAL synced later relies on it
    finally:
        os.close(fd)


def _sync_dir(path: Path) -> None:
    """Make a new directory entry durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their ``;``-separated bodies)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending.strip())
    return statements


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means another connection held the lock (a retry can succeed)."""
    code = getattr(exc, "sqlite_errorcode", None)  # extended code: the low byte is the primary
    return isinstance(code, int) and code & 0xFF in _BUSY_CODES
