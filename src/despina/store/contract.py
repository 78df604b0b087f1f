"""The store contract: what every other package may ask of a store, whichever database holds it.

Two implementations stand behind it today, chosen by a store URL (``DESPINA_STORE``,
``--store``, or the ``store=`` argument of the in-process API; see :mod:`despina.store.urls`):

* :class:`despina.store.sqlite.SqliteStore`: the embedded store, one SQLite file in WAL mode in a
  directory (the default, ``~/.despina``);
* :class:`despina.store.postgres.store.PostgresStore`: a PostgreSQL database shared by any number
  of processes and ``despina serve`` replicas.

The contract has two layers, as optuna's ``BaseStorage`` has one: this class (opening, closing,
transactions, durability, projects, the blob store, server secrets and background-job leases),
and the store's operation modules (``despina.store.writer`` for the ingest rules,
``runs``/``lifecycle``/``registry`` for run and model lifecycle, ``access``/``sessions`` for
tokens and sign-in state, ``blobs`` for file bookkeeping, ``runs_table``/``reads`` and the query
service's reads), each written once over :meth:`Store.read` / :meth:`Store.write` in the SQL both
databases understand (SQLite's spelling; :mod:`despina.store.postgres.dialect` translates it).
Nothing outside ``despina.store`` (and the query service, being moved behind it) runs SQL.

A connection handed out by :meth:`read`, :meth:`write` or :meth:`connection` behaves like a
``sqlite3.Connection`` in autocommit mode: ``execute(sql, params)`` returns a cursor with
``fetchone``, ``fetchall``, iteration, ``lastrowid`` and ``rowcount``; ``executemany``
runs a statement per parameter row. Floats that are NaN are stored as NULL on both databases (a
NULL float cell where the type requires a value means NaN).
"""

from __future__ import annotations

import abc
import contextlib
import os
import time
import uuid
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from despina.config import parse_project
from despina.errors import ProjectNotFound, StoreError

if TYPE_CHECKING:
    from despina.store.blobs.contract import BlobStore

__all__ = ["Dialect", "Store"]

Dialect = Literal["sqlite", "postgresql"]

BUSY_TIMEOUT_MS = 60_000


class Store(abc.ABC):
    """A store: projects, runs and everything logged to them, plus the server's shared state.

    Attributes:
        dialect: ``"sqlite"`` or ``"postgresql"``: which SQL the store speaks, for the few
            statements that must differ (see :mod:`despina.store.postgres.dialect`).
        home: a local directory of this process's own files (queues, caches, logs). For the
            embedded store it also holds the database; a PostgreSQL store never keeps shared
            state there.
        blobs: the store's blob store (:class:`despina.store.blobs.BlobStore`): where file
            contents are, chosen at open (``blobs=``, ``DESPINA_BLOBS``, else the directory
            ``<home>/blobs``). Every reader and writer of file contents goes through it.
        blobs_dir: the directory ``<home>/blobs`` (the default blob store's place).
        display: where the store is, fit for messages (a directory, or a URL with its password
            masked).

    Implementations are safe to share between threads (each thread gets its own connection).
    """

    dialect: Dialect
    home: Path
    blobs: BlobStore
    blobs_dir: Path
    display: str

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        url: str | os.PathLike[str] | None = None,
        blobs: str | os.PathLike[str] | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> Store:
        """Open (creating and migrating when needed) the store at ``url``, else ``home``.

        Where the store is, first found wins: ``url``; the ``DESPINA_STORE`` environment
        variable; ``home``; ``DESPINA_HOME``; ``~/.despina``. A store URL is a directory,
        ``sqlite:///path`` or ``postgresql://user@host:port/database``. With a PostgreSQL
        store, ``home`` (or ``DESPINA_HOME``, ``~/.despina``) still names this process's local
        directory.

        Where file contents go, first found wins: ``blobs``; ``DESPINA_BLOBS``; the directory
        ``<home>/blobs``. A blob URL is a directory or ``s3://bucket/prefix`` (see
        :mod:`despina.store.blobs.opening`). The default directory suits the embedded store; a
        PostgreSQL store shared by several machines needs a blob store they all reach (S3, or
        a directory every machine mounts).

        ``busy_timeout_ms`` is how long a statement waits for another connection's lock before
        failing with :class:`despina.errors.StoreBusy`: SQLite's busy timeout on the embedded
        store (one writer at a time), PostgreSQL's ``lock_timeout`` (writers to different runs
        do not wait on each other; a run's row or a table another transaction holds does).

        Raises:
            ConfigError: the URL is malformed or names a file.
            StoreError: the store or its blob store (a missing bucket, an unreachable
                endpoint) cannot be created or reached; the message names the URL and the fix.
                Nothing was written.
            SchemaTooNew: the store was written by a newer despina; nothing was written.
        """
        from despina.store.opening import open_store

        return open_store(home, url=url, blobs=blobs, busy_timeout_ms=busy_timeout_ms)

    @abc.abstractmethod
    def close(self) -> None:
        """Close every connection this object opened. The object may be used again after."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The schema version of the database (0 for an empty one)."""

    # -- connections and transactions -----------------------------------------------------

    @abc.abstractmethod
    def connection(self) -> Any:
        """This thread's connection, in autocommit mode (see the module docstring)."""

    @abc.abstractmethod
    def write(self, *, durable: bool = False) -> contextlib.AbstractContextManager[Any]:
        """A write transaction: committed when the block exits, rolled back on an error.

        A ``durable`` write is on stable storage when the block exits, and so is everything
        committed before it. Without it a commit survives a killed process but not a power loss
        (or a crash of the database server). Acknowledge to someone else only what a durable
        write (or :meth:`sync`) covers.

        Raises:
            StoreBusy: another writer held the lock past the busy timeout (embedded store).
            StoreError: the database failed to write.
        """

    @abc.abstractmethod
    def read(self) -> contextlib.AbstractContextManager[Any]:
        """A read transaction: every statement inside sees the same snapshot."""

    read_versions_shared: bool = False
    """Whether values of :meth:`read_version` compare across this store's connections (else:
    only values of one connection)."""

    def read_version(self, conn: Any) -> Hashable | None:
        """A value that is the same in two read transactions on ``conn`` only when nothing was
        written to the store in between, by any connection or process (``None``: this store
        cannot tell cheaply). Called inside :meth:`read`, it describes that snapshot. Compare
        values of one connection only, unless :attr:`read_versions_shared`.
        """
        return None

    @abc.abstractmethod
    def sync(self) -> None:
        """Put everything committed so far on stable storage."""

    def checkpoint(self) -> bool:
        """Fold a write-ahead log into the database where the store keeps one (SQLite).

        Returns ``False`` when the log could not be folded in completely now.
        """
        return True

    def refresh_statistics(self) -> None:
        """Tell the query planner about the rows a bulk load just wrote (``despina store copy``).

        A no-op where the planner needs no statistics to choose well (SQLite: despina's queries
        name their indexes' leading columns, and ``ANALYZE`` there could change proven plans).
        """
        return None

    # -- projects (shared SQL: the same on every SQL store) ----------------------------------

    def project_id(self, name: str, *, create: bool = False) -> int:
        """The id of project ``workspace/project``, creating it when ``create`` is set.

        Raises:
            ConfigError: the name is not ``workspace/project``.
            ProjectNotFound: the project does not exist and ``create`` is not set.
        """
        workspace, project = parse_project(name)
        conn = self.connection()
        row = conn.execute(
            "SELECT id FROM projects WHERE workspace = ? AND name = ?", (workspace, project)
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            known = [f"{w}/{n}" for w, n in conn.execute("SELECT workspace, name FROM projects")]
            hint = f"; projects in this store: {', '.join(sorted(known))}" if known else ""
            raise ProjectNotFound(f"no project {name!r} in the store at {self.display!r}{hint}")
        return self.create_project(name, exist_ok=True)

    def create_project(
        self,
        name: str,
        *,
        key: str | None = None,
        description: str = "",
        visibility: str = "priv",
        exist_ok: bool = False,
    ) -> int:
        """Create project ``workspace/project`` and return its id.

        The project key (the prefix of ``sys/id``) defaults to the upper-cased letters and digits
        of the project name, made unique within the workspace.

        Raises:
            ConfigError: the name is not ``workspace/project``.
            StoreError: the project exists and ``exist_ok`` is not set.
        """
        with self.write() as conn:
            return self.create_project_in(
                conn,
                name,
                key=key,
                description=description,
                visibility=visibility,
                exist_ok=exist_ok,
            )

    def create_project_in(
        self,
        conn: Any,
        name: str,
        *,
        key: str | None = None,
        description: str = "",
        visibility: str = "priv",
        exist_ok: bool = False,
    ) -> int:
        """:meth:`create_project` inside the caller's write transaction ``conn``: a run's
        creation stores its new project and the run in one commit.

        Raises:
            ConfigError: the name is not ``workspace/project``.
            StoreError: the project exists and ``exist_ok`` is not set.
        """
        workspace, project = parse_project(name)
        self._serialize_workspace(conn, workspace)  # project keys stay unique within it
        row = conn.execute(
            "SELECT id FROM projects WHERE workspace = ? AND name = ?", (workspace, project)
        ).fetchone()
        if row is not None:
            if exist_ok:
                return int(row[0])
            raise StoreError(f"project {name!r} already exists")
        taken = {
            k
            for (k,) in conn.execute(
                "SELECT project_key FROM projects WHERE workspace = ?", (workspace,)
            )
        }
        base = key or "".join(ch for ch in project.upper() if ch.isalnum())[:10] or "PROJ"
        chosen, n = base, 2
        while chosen in taken:
            chosen, n = f"{base}{n}", n + 1
        cursor = conn.execute(
            "INSERT INTO projects (workspace, name, project_key, uuid, description, "
            "visibility, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                workspace,
                project,
                chosen,
                str(uuid.uuid4()),
                description,
                visibility,
                int(time.time() * 1000),
            ),
        )
        return int(cursor.lastrowid or 0)

    def _serialize_workspace(self, conn: Any, workspace: str) -> None:
        """Inside a write: make project creations of ``workspace`` take turns. The embedded
        store's writes already do (one writer at a time), so this does nothing there."""
        return None

    def list_projects(self) -> list[str]:
        """Names of every project in the store (``workspace/project``), sorted."""
        rows = self.connection().execute("SELECT workspace, name FROM projects")
        return sorted(f"{w}/{n}" for w, n in rows)

    # -- state shared by server replicas -----------------------------------------------------

    def server_secret(self, name: str, make: bytes) -> bytes:
        """The secret ``name`` (e.g. the server's signing key), storing ``make`` if there is none.

        Every replica of a server over one store gets the same bytes: the first to store a
        secret wins, and the others read it.
        """
        with self.write(durable=True) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO server_secrets (name, value, created_ms) VALUES (?, ?, ?)",
                (name, make, int(time.time() * 1000)),
            )
            row = conn.execute(
                "SELECT value FROM server_secrets WHERE name = ?", (name,)
            ).fetchone()
        return bytes(row[0])

    @abc.abstractmethod
    def job_lease(self, name: str) -> contextlib.AbstractContextManager[bool]:
        """Hold the lease of background job ``name`` for the block, if no one else holds it.

        The block receives ``True`` when this process holds the lease (run the job) and
        ``False`` when another process or replica does (skip it this time). A lease held by a
        killed process is released with it.
        """

    # -- conveniences --------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display!r})"


@contextlib.contextmanager
def no_lease() -> Iterator[bool]:
    """A lease that is always granted (a store used by one process)."""
    yield True
