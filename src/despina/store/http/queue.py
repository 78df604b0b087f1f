"""The durable local queue of a run logging to a server (docs/remote-logging.md).

One directory per run under the log directory (``.despina/`` in the working directory by
default): ``queue.sqlite3`` holds the operations in sequence order (a large body, such as a wide
batch of metrics, in a file of ``ops/`` that its row names: SQLite wrote, checkpointed and
freed such pages at a third of the speed), ``files/`` the contents of logged files until the
server has them, and ``lock`` is held (``flock``) by the process that
writes or sends the queue, so that a queue left by a killed process is recognised (its lock is
free) and only one process sends it.

An append is one SQLite commit in WAL mode with ``synchronous=NORMAL``: it survives the death
of the process (the operating system has the pages) without an fsync, so the logging process
never waits on the disk's flush, let alone on the network. Operations are deleted once the
server acknowledged them; a queue with nothing left is removed with its directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from despina.errors import ConfigError, StoreError

__all__ = [
    "LOG_DIRECTORY_ENV",
    "QUEUE_FILE",
    "QUEUE_FORMAT",
    "LogQueue",
    "QueueLocked",
    "QueuedOperation",
    "find_log_queues",
    "resolve_log_directory",
]

QUEUE_FILE = "queue.sqlite3"
QUEUE_FORMAT = "despina-queue-1"
LOG_DIRECTORY_ENV = "DESPINA_LOG_DIRECTORY"
DEFAULT_LOG_DIRECTORY = ".despina"

INLINE_BYTES = 64 * 1024
"""Bodies up to this size live in the queue database; larger ones in a file of ``ops/``."""

RECENT_BYTES = 256 * 1024 * 1024
"""Bodies of the latest appends kept in memory for the sender (no read back from disk)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    file TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL DEFAULT 0
);
"""


class QueueLocked(StoreError):
    """Another live process writes or sends this queue."""


@dataclass(frozen=True, slots=True)
class QueuedOperation:
    """One queued operation: its sequence number, kind (``create``, ``batch``, ``close``,
    ``stage``, …), body and when it was queued (epoch ms)."""

    seq: int
    kind: str
    body: bytes
    created_ms: int


def resolve_log_directory(log_directory: str | os.PathLike[str] | None = None) -> Path:
    """Where run queues live: ``log_directory``, else ``DESPINA_LOG_DIRECTORY``, else
    ``.despina`` in the working directory."""
    chosen = log_directory or os.environ.get(LOG_DIRECTORY_ENV) or DEFAULT_LOG_DIRECTORY
    return Path(chosen).expanduser().absolute()


def find_log_queues(path: Path) -> list[Path]:
    """Directories of despina queues at ``path``: the directory itself or any below it."""
    if (path / QUEUE_FILE).is_file():
        return [path]
    if path.is_file() and path.name == QUEUE_FILE:
        return [path.parent]
    if not path.is_dir():
        return []
    return sorted(found.parent for found in path.rglob(QUEUE_FILE))


class LogQueue:
    """One run's queue directory, locked by this object until :meth:`close`.

    Thread-safe: the flusher appends while the sender reads and deletes (each thread has its
    own SQLite connection; WAL lets them work at once).
    """

    def __init__(self, directory: Path, lock: IO[bytes]) -> None:
        self.directory = directory
        self.files_dir = directory / "files"
        self.ops_dir = directory / "ops"
        self._recent: dict[int, bytes] = {}
        self._recent_bytes = 0
        self._lock_file: IO[bytes] | None = lock
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.meta: dict[str, Any] = {}

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def create(cls, log_directory: Path, run_id: str, meta: dict[str, Any]) -> LogQueue:
        """A new queue for ``run_id`` under ``log_directory`` with ``meta`` (JSON values).

        Raises:
            StoreError: the directory cannot be created or written.
        """
        name = f"{_safe(run_id)}-{uuid.uuid4().hex[:12]}"
        directory = log_directory / name
        try:
            (directory / "files").mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise StoreError(
                f"cannot create the log queue in {str(log_directory)!r}: {exc}; pass "
                "log_directory= (or set DESPINA_LOG_DIRECTORY) to a writable directory"
            ) from None
        queue = cls(directory, _lock(directory, wait=False))
        queue.meta = {**meta, "format": QUEUE_FORMAT, "queue_id": uuid.uuid4().hex}
        with queue._conn() as conn:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in queue.meta.items()],
            )
        return queue

    @classmethod
    def open(cls, directory: Path) -> LogQueue:
        """The queue left in ``directory``, locked for this process.

        Raises:
            QueueLocked: a live process holds it.
            ConfigError: ``directory`` holds no queue this version reads.
        """
        if not (directory / QUEUE_FILE).is_file():
            raise ConfigError(f"no {QUEUE_FILE} in {str(directory)!r}: not a despina log queue")
        queue = cls(directory, _lock(directory, wait=False))
        try:
            rows = queue._conn().execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.Error as exc:
            queue.close()
            raise ConfigError(f"{str(directory)!r} is not a despina log queue: {exc}") from None
        queue.meta = {k: json.loads(v) for k, v in rows}
        if queue.meta.get("format") != QUEUE_FORMAT:
            queue.close()
            raise ConfigError(
                f"{str(directory)!r} has queue format {queue.meta.get('format')!r}; this "
                f"despina reads {QUEUE_FORMAT!r} (upgrade despina to send it)"
            )
        return queue

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.directory / QUEUE_FILE, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # survives a killed process, no fsync
            conn.execute("PRAGMA busy_timeout=10000")
            conn.executescript(_SCHEMA)
            self._local.conn = conn
            with self._write_lock:
                conns = self.__dict__.setdefault("_all", [])
                conns.append(conn)
        return conn

    # -- operations --------------------------------------------------------------------------

    def append(self, kind: str, body: bytes | list[bytes]) -> int:
        """Queue one operation (or several of the same kind, in one commit); returns the last
        sequence number.

        Raises:
            StoreError: the disk refused the write (nothing was queued).
        """
        bodies = body if isinstance(body, list) else [body]
        now = int(time.time() * 1000)
        conn = self._conn()
        written: list[Path] = []
        try:
            rows: list[tuple[bytes, str | None]] = []
            for one in bodies:
                if len(one) <= INLINE_BYTES:
                    rows.append((one, None))
                    continue
                # the file first: a row exists only once its body does
                self.ops_dir.mkdir(exist_ok=True)
                name = f"{uuid.uuid4().hex}.bin"
                target = self.ops_dir / name
                written.append(target)
                with target.open("wb") as out:
                    out.write(one)
                rows.append((b"", name))
            conn.execute("BEGIN IMMEDIATE")
            seq = 0
            for (inline, file_name), one in zip(rows, bodies, strict=True):
                cursor = conn.execute(
                    "INSERT INTO ops (kind, body, file, created_ms) VALUES (?, ?, ?, ?)",
                    (kind, inline, file_name, now),
                )
                seq = int(cursor.lastrowid or 0)
                self._remember(seq, one)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for target in written:
                target.unlink(missing_ok=True)
            raise StoreError(
                f"writing the log queue {str(self.directory)!r} failed: {exc}"
            ) from None
        return seq

    def _remember(self, seq: int, body: bytes) -> None:
        with self._write_lock:
            if self._recent_bytes + len(body) <= RECENT_BYTES:
                self._recent[seq] = body
                self._recent_bytes += len(body)

    def _body(self, seq: int, inline: bytes, name: str | None) -> bytes:
        with self._write_lock:
            found = self._recent.get(seq)
        if found is not None:
            return found
        if name is None:
            return bytes(inline)
        return (self.ops_dir / name).read_bytes()

    def pending(self, after: int = 0, max_bytes: int = 32 * 1024 * 1024) -> list[QueuedOperation]:
        """Operations after ``after`` in order, up to about ``max_bytes`` (at least one)."""
        out: list[QueuedOperation] = []
        size = 0
        rows = (
            self._conn()
            .execute(
                "SELECT seq, kind, body, file, created_ms FROM ops WHERE seq > ? ORDER BY seq "
                "LIMIT 256",
                (after,),
            )
            .fetchall()
        )
        for seq, kind, inline, name, created in rows:
            body = self._body(seq, inline, name)
            out.append(QueuedOperation(seq, kind, body, created))
            size += len(body)
            if size >= max_bytes:
                break
        return out

    def last_seq(self) -> int:
        row = self._conn().execute("SELECT MAX(seq) FROM ops").fetchone()
        return int(row[0] or 0)

    def remaining(self) -> int:
        """How many operations are queued."""
        return int(self._conn().execute("SELECT COUNT(*) FROM ops").fetchone()[0])

    def delete_through(self, seq: int, released: list[str] = ()) -> None:  # type: ignore[assignment]
        """Forget operations up to ``seq`` (acknowledged) and one reference of each file content
        in ``released``; contents nothing refers to any more are deleted."""
        conn = self._conn()
        gone: list[str] = []
        with self._write_lock:
            for old in [k for k in self._recent if k <= seq]:
                self._recent_bytes -= len(self._recent.pop(old))
            conn.execute("BEGIN IMMEDIATE")
            try:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT file FROM ops WHERE seq <= ? AND file IS NOT NULL", (seq,)
                    )
                ]
                conn.execute("DELETE FROM ops WHERE seq <= ?", (seq,))
                for sha in released:
                    conn.execute("UPDATE files SET refs = refs - 1 WHERE sha256 = ?", (sha,))
                if released:
                    gone = [r[0] for r in conn.execute("SELECT sha256 FROM files WHERE refs <= 0")]
                    conn.execute("DELETE FROM files WHERE refs <= 0")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        for name in names:
            (self.ops_dir / name).unlink(missing_ok=True)
        for sha in gone:
            (self.files_dir / sha).unlink(missing_ok=True)

    # -- file contents -----------------------------------------------------------------------

    def put_file(self, source: Path | bytes) -> tuple[str, int]:
        """Copy a logged file's content into the queue; returns its ``(sha256, size)``.

        Raises:
            OSError: the source cannot be read or the copy cannot be written.
        """
        self.files_dir.mkdir(exist_ok=True)
        temporary = self.files_dir / f".incoming-{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        size = 0
        with temporary.open("wb") as out:
            if isinstance(source, bytes):
                digest.update(source)
                out.write(source)
                size = len(source)
            else:
                with source.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        sha = digest.hexdigest()
        os.replace(temporary, self.files_dir / sha)
        conn = self._conn()
        with self._write_lock:
            conn.execute(
                "INSERT INTO files (sha256, size, refs) VALUES (?, ?, 1) "
                "ON CONFLICT (sha256) DO UPDATE SET refs = refs + 1",
                (sha, size),
            )
        return sha, size

    def file_path(self, sha256: str) -> Path:
        """Where the queue keeps a content (which may be gone if it was never queued)."""
        return self.files_dir / sha256

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the databases and release the lock (the queue stays on disk)."""
        for conn in self.__dict__.pop("_all", []):
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def remove(self) -> None:
        """Delete the whole queue directory (everything was acknowledged), then close."""
        lock = self._lock_file
        self.close_connections()
        shutil.rmtree(self.directory, ignore_errors=True)
        if lock is not None:
            self._lock_file = lock
        self.close()

    def close_connections(self) -> None:
        for conn in self.__dict__.pop("_all", []):
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()

    def iter_files(self) -> Iterator[tuple[str, int]]:
        yield from self._conn().execute("SELECT sha256, size FROM files")


def _safe(name: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return kept[:80] or "run"


def _lock(directory: Path, *, wait: bool) -> IO[bytes]:
    handle = (directory / "lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        raise QueueLocked(f"the log queue {str(directory)!r} is in use by a live process") from None
    return handle
