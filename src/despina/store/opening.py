"""Where the store is: a store URL, ``DESPINA_STORE``, a home directory, and opening it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from despina.config import resolve_home
from despina.errors import StoreError
from despina.store.contract import BUSY_TIMEOUT_MS, Store
from despina.store.urls import StoreLocation, parse_store_url

__all__ = ["StoreAddress", "open_store", "resolve_store"]

STORE_ENV = "DESPINA_STORE"


@dataclass(frozen=True)
class StoreAddress:
    """A resolved store: its location and this process's local directory.

    ``key`` identifies the store among those a process has open (a directory's absolute path,
    or a PostgreSQL URL), for caches that keep one open store per location.
    """

    location: StoreLocation
    home: Path
    key: str


def resolve_store(
    home: str | os.PathLike[str] | None = None, *, url: str | os.PathLike[str] | None = None
) -> StoreAddress:
    """Resolve where the store is (see :meth:`Store.open` for the order); opens nothing.

    Raises:
        ConfigError: the URL is malformed or names a file.
    """
    chosen = url if url not in (None, "") else os.environ.get(STORE_ENV) or None
    local = resolve_home(home)
    location = parse_store_url(local if chosen is None else chosen)
    if location.kind == "sqlite":
        assert location.path is not None
        path = Path(os.path.abspath(location.path))
        return StoreAddress(location, path, str(path))  # the embedded store's directory is home
    assert location.url is not None
    return StoreAddress(location, local, location.url)


def open_store(
    home: str | os.PathLike[str] | None = None,
    *,
    url: str | os.PathLike[str] | None = None,
    blobs: str | os.PathLike[str] | None = None,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
) -> Store:
    """Open the store :func:`resolve_store` finds (see :meth:`Store.open`)."""
    address = resolve_store(home, url=url)
    return open_address(address, blobs=blobs, busy_timeout_ms=busy_timeout_ms)


def open_address(
    address: StoreAddress,
    *,
    blobs: str | os.PathLike[str] | None = None,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
) -> Store:
    """Open a resolved store, with its blob store (``blobs``, else ``DESPINA_BLOBS``, else
    ``<home>/blobs``). The blob store is checked first: when it cannot be reached nothing is
    written."""
    from despina.store.blobs.directory import DirectoryBlobStore
    from despina.store.blobs.opening import open_blob_store

    blob_store = open_blob_store(
        blobs, default=address.home / "blobs", uploads_dir=address.home / "uploads"
    )
    store: Store
    if address.location.kind == "sqlite":
        from despina.store.sqlite import SqliteStore

        store = SqliteStore.open_directory(Path(address.key), busy_timeout_ms=busy_timeout_ms)
    else:
        from despina.store.postgres.store import PostgresStore

        assert address.location.url is not None
        store = PostgresStore.open_url(
            address.location.url, home=address.home, busy_timeout_ms=busy_timeout_ms
        )
    if isinstance(blob_store, DirectoryBlobStore):
        # created once the database opened (nothing is written when it cannot be), private
        # to the user as the embedded store's directories are
        try:
            blob_store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            store.close()
            raise StoreError(
                f"cannot create the blob directory {blob_store.url!r}: {exc.strerror}; set "
                "DESPINA_BLOBS (--blobs) to a writable directory or s3://bucket/prefix"
            ) from exc
    store.blobs = blob_store
    return store
