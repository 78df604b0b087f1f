"""Copy a whole store into another: ``despina store copy SRC DEST``.

Every project, run (with its attributes, float-series chunks, previews, string/histogram/file
points, fork parent, model and model versions), file (bookkeeping and contents), saved view,
API key and refresh token of the source is copied into the destination, between any two stores
the contract opens: embedded -> PostgreSQL (a laptop into the team database), PostgreSQL ->
embedded, embedded -> embedded, PostgreSQL -> PostgreSQL. Reads and writes go through
:meth:`Store.read` / :meth:`Store.write` in the store's shared SQL (both schemas have the same
tables and columns; PostgreSQL fills its ``run_id`` columns by trigger).

How runs are matched and copied:

* Projects are matched by ``workspace/name``; a project missing in the destination is created
  with the source's key (suffixed when another project of the workspace has it), uuid,
  description and visibility.
* Runs (and models, model versions) are matched by project and custom run id (``sys/custom_run_id``,
  a model's ``sys/id``). A run already there with the same uuid is left alone ("already there";
  the copy never updates a run, so a run logged to after an earlier copy is reported as changed
  since). A run there with another uuid is a *conflict*: reported and skipped, never overwritten,
  and so are the runs forked from it or versions of such a model.
* An experiment keeps one head: a copied head run stays the head unless the destination has a
  newer head of the same experiment (then the copy is not the head), and an older destination
  head gives way.
* Ids are the destination's own: attributes get new ids, and a chunk keeps its number under its
  new attribute (``attr_id << 24 | chunk_no`` in both stores). ``sys/id`` numbers are kept unless
  the destination project already uses one, then the project's next number is given.
* Each run is copied in one destination transaction (read from one source snapshot): an
  interrupted copy leaves whole runs or none, and running the same command again finishes the
  job. Parents and models are copied before the runs that refer to them.
* File contents are copied to the destination's blob store before the bookkeeping rows that
  name them (content-addressed: a content already there is not copied again). A storage key the
  destination maps to other content is a file conflict and keeps the destination's content.
* Saved views of the web UI are copied per project when missing (matched by name; one with
  another query under the same name is a conflict and keeps the destination's).
* API keys are copied when missing; a key revoked in the source is revoked in the destination
  too; a key id the destination holds with another secret is a conflict. Refresh tokens of
  copied keys follow. Server secrets, UI sessions, ingest request statuses and upload
  bookkeeping belong to the serving deployment and are not copied.

Only what is missing is written: a second copy finds everything there and writes nothing.
"""

from __future__ import annotations

import os
from typing import Any

from despina.config import resolve_home
from despina.errors import ConfigError, StoreError
from despina.store.contract import Store
from despina.store.copy.blobs import blob_side
from despina.store.copy.copier import Copier
from despina.store.copy.report import CopyConflict, CopyProgress, CopyReport, NoProgress
from despina.store.urls import StoreLocation, mask_url, parse_store_url

__all__ = [
    "CopyConflict",
    "CopyProgress",
    "CopyReport",
    "copy_between",
    "copy_store",
    "open_source",
]


# -- opening ----------------------------------------------------------------------------------


def open_source(value: str | os.PathLike[str]) -> Store:
    """Open an existing store to copy from; never creates one. Its blob store is not opened
    (see :func:`despina.store.copy.blobs.blob_side`).

    Raises:
        ConfigError: the URL is malformed.
        StoreError: there is no despina store there, or the server cannot be reached.
        SchemaTooNew: the source was written by a newer despina.
    """
    location = parse_store_url(value)
    if location.kind == "sqlite":
        assert location.path is not None
        from despina.store.sqlite import DB_FILE, SqliteStore

        db = location.path / DB_FILE
        if not location.path.is_dir() or not db.is_file() or db.stat().st_size == 0:
            what = "does not exist" if not location.path.exists() else "holds no despina store"
            raise StoreError(
                f"the source store {location.display!r} {what} (no {DB_FILE} there); give the "
                "directory of an existing store (e.g. ~/.despina) or a postgresql:// URL"
            )
        return SqliteStore.open_directory(location.path)
    assert location.url is not None
    _check_postgres_source(location.url)
    from despina.store.postgres.store import PostgresStore

    return PostgresStore.open_url(location.url, home=resolve_home(None))


def _check_postgres_source(url: str) -> None:
    """Refuse a database that holds no despina schema (opening it would create one)."""
    from despina.store.postgres.connection import PoolSettings, _connect, _schema_version

    with _connect(url, PoolSettings()) as conn:
        version = _schema_version(conn)
    if version == 0:
        raise StoreError(
            f"the source database {mask_url(url)!r} holds no despina store; give the URL of a "
            "database despina has written to"
        )


def open_destination(
    value: str | os.PathLike[str], blobs: str | os.PathLike[str] | None = None
) -> Store:
    """Open (creating and migrating when needed) the store to copy into, with its blob store:
    ``blobs``, else ``DESPINA_BLOBS``, else its own directory.

    Raises:
        ConfigError: the URL is malformed.
        StoreError: the store or its blob store cannot be created or reached.
        SchemaTooNew: the destination was written by a newer despina; nothing was written.
    """
    location = parse_store_url(value)
    return Store.open(url=location.url or location.path, blobs=blobs)


def _same_location(a: StoreLocation, b: StoreLocation) -> bool:
    """Whether two store URLs name the same store as far as the URLs tell (see
    :func:`_database_identity` for PostgreSQL databases reached under other names)."""
    if a.kind != b.kind:
        return False
    if a.kind == "sqlite":
        assert a.path is not None and b.path is not None
        if a.path.exists() and b.path.exists():
            return os.path.samefile(a.path, b.path)
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    from psycopg.conninfo import conninfo_to_dict

    assert a.url is not None and b.url is not None

    def where(url: str) -> tuple[str, str, str]:
        params = conninfo_to_dict(url)
        user = str(params.get("user") or os.environ.get("PGUSER") or "")
        host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
        host = "localhost" if host in ("127.0.0.1", "::1") or host.startswith("/") else host
        port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
        return host, port, str(params.get("dbname") or user)

    return where(a.url) == where(b.url)


def _database_identity(store: Store) -> tuple[Any, ...] | None:
    """What tells two PostgreSQL databases apart however they were addressed: the server's
    start time and port, and the database's oid and name (readable by any user)."""
    if store.dialect != "postgresql":
        return None
    row = (
        store.connection()
        .execute(
            "SELECT pg_postmaster_start_time()::text, inet_server_port(), d.oid, d.datname "
            "FROM pg_database d WHERE d.datname = current_database()"
        )
        .fetchone()
    )
    return None if row is None else tuple(row)


def _refuse_same(source: str, destination: str) -> ConfigError:
    return ConfigError(
        f"the source {source!r} and the destination {destination!r} are the same store; "
        "give another destination"
    )


def copy_store(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    blobs: str | os.PathLike[str] | None = None,
    source_blobs: str | os.PathLike[str] | None = None,
    progress: CopyProgress | None = None,
) -> CopyReport:
    """Copy everything in the store at ``source`` into the store at ``destination``.

    ``source`` and ``destination`` are store URLs (a directory, ``sqlite:///dir`` or
    ``postgresql://...``). The destination is created (and migrated) when needed; the source
    must exist. File contents go to ``blobs`` (a directory or ``s3://bucket/prefix``; default
    ``DESPINA_BLOBS``, else the destination's own directory) and are read from ``source_blobs``
    (default: the source's own directory, ``<home>/blobs``).

    Raises:
        ConfigError: a URL is malformed, or both name the same store.
        StoreError: the source does not exist, a store cannot be reached or written.
        SchemaTooNew: either store was written by a newer despina; nothing was written.
    """
    src_location = parse_store_url(source)
    dst_location = parse_store_url(destination)
    if _same_location(src_location, dst_location):
        raise _refuse_same(src_location.display, dst_location.display)
    src = open_source(source)
    try:
        identity = _database_identity(src)
        dst = open_destination(destination, blobs)
        try:
            if identity is not None and identity == _database_identity(dst):
                raise _refuse_same(src_location.display, dst_location.display)
            return copy_between(src, dst, blobs=blobs, source_blobs=source_blobs, progress=progress)
        finally:
            dst.close()
    finally:
        src.close()


def copy_between(
    src: Store,
    dst: Store,
    *,
    blobs: str | os.PathLike[str] | None = None,
    source_blobs: str | os.PathLike[str] | None = None,
    progress: CopyProgress | None = None,
) -> CopyReport:
    """Copy everything in the open store ``src`` into the open store ``dst`` (see
    :func:`copy_store`); ``blobs`` and ``source_blobs`` as there."""
    copier = Copier(
        src,
        dst,
        blob_side(src, source_blobs),
        blob_side(dst, blobs, destination=True),
        progress or NoProgress(),
    )
    return copier.run()
