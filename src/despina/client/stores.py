"""The stores runs log into, opened once per process and shared by its runs.

Opening a store costs a directory check, a SQLite connection with its pragmas and a schema check
(milliseconds); closing one folds the WAL back into the database (a checkpoint that syncs it).
A sweep of thousands of short runs in one process paid both per run. Runs now share one
:class:`~despina.store.sqlite.Store` per home directory, kept open between runs and closed at
exit (when the WAL is folded in and removed, as before).

A cached store is used again only while its database file is the same file (same device and
inode): a home deleted and created again between runs gets a fresh, migrated store. At most
``MAX_IDLE`` stores without an open run stay open; older ones are closed (their descriptors
released) by a background thread: closing folds the WAL into the database and syncs it, which a
sweep of runs each in a fresh directory paid in every run's ``close()``. After ``fork()`` the
child opens its own: SQLite connections must not cross a fork, so the parent's are kept
referenced in the child but never used or closed there.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from despina.store import Store
from despina.store.blobs.opening import BLOBS_ENV
from despina.store.opening import open_address, resolve_store

__all__ = ["MAX_IDLE", "acquire_store", "close_idle_stores", "release_store", "wait_for_closer"]

MAX_IDLE = 4
"""Stores without an open run kept open (one per home directory)."""


@dataclass(slots=True)
class _Entry:
    store: Store
    file_id: tuple[int, int]
    users: int = 0


_lock = threading.Lock()
_entries: OrderedDict[str, _Entry] = OrderedDict()
_pid = os.getpid()
_inherited: list[Store] = []  # a forked child's copies of the parent's stores: never touched
_closing: list[Store] = []  # idle stores handed to the closer thread, not closed yet
_closer_wake = threading.Condition(_lock)
_closer: threading.Thread | None = None
_in_close = 0  # stores the closer thread is closing right now


def _file_id(store: Store) -> tuple[int, int] | None:
    db_path = getattr(store, "db_path", None)
    if db_path is None:  # a database server's store: nothing on this disk to watch
        return (0, 0)
    try:
        st = os.stat(db_path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def acquire_store(
    home: str | os.PathLike[str] | None, *, url: str | os.PathLike[str] | None = None
) -> Store:
    """The open store at ``home`` (see ``resolve_home``) for one more run; pair with
    :func:`release_store`.

    Raises:
        StoreError: the directory cannot be created or the database cannot be opened.
        SchemaTooNew: the database was written by a newer despina.
    """
    address = resolve_store(home, url=url)
    # a store opened with other file contents (DESPINA_BLOBS changed) is another entry
    key = f"{address.key}\n{os.environ.get(BLOBS_ENV, '')}"
    with _lock:
        if _pid != os.getpid():  # forked: the parent's connections are not ours to use
            _forked()
        entry = _entries.get(key)
        if entry is not None and _file_id(entry.store) == entry.file_id:
            entry.users += 1
            _entries.move_to_end(key)
            return entry.store
        if entry is not None:  # the database was removed or replaced since
            del _entries[key]
            if entry.users == 0:
                _close_later(entry.store)
        store = open_address(address)
        file_id = _file_id(store)
        if file_id is None:  # cannot happen after a successful open; do not cache then
            return store
        _entries[key] = _Entry(store, file_id, users=1)
        _close_excess_idle()
        return store


def release_store(store: Store) -> None:
    """A run of ``store`` closed; the store stays open for the next run."""
    with _lock:
        for entry in _entries.values():
            if entry.store is store:
                entry.users = max(0, entry.users - 1)
                break
        else:  # not cached (replaced meanwhile): its last run closes it
            store.close()
            return
        _close_excess_idle()


def _forked() -> None:
    """In a forked child (under ``_lock``): forget the parent's stores and closer thread."""
    global _pid, _closer, _in_close
    _inherited.extend(entry.store for entry in _entries.values())
    _inherited.extend(_closing)
    _entries.clear()
    _closing.clear()
    _closer = None
    _in_close = 0
    _pid = os.getpid()


def _close_excess_idle() -> None:
    idle = [key for key, entry in _entries.items() if entry.users == 0]
    for key in idle[: max(0, len(idle) - MAX_IDLE)]:  # least recently used first
        _close_later(_entries.pop(key).store)


def _close_later(store: Store) -> None:
    """Hand ``store`` to the closer thread (under ``_lock``), starting it on first use."""
    global _closer
    _closing.append(store)
    if _closer is None:
        _closer = threading.Thread(target=_close_pending, name="despina-store-closer", daemon=True)
        _closer.start()
    _closer_wake.notify()


def _close_pending() -> None:
    global _in_close
    while True:
        with _lock:
            while not _closing:
                _closer_wake.wait()
            store = _closing.pop(0)
            _in_close += 1
        try:
            with contextlib.suppress(Exception):
                store.close()
        finally:
            with _lock:
                _in_close -= 1
                _closer_wake.notify_all()


def wait_for_closer(timeout: float | None = None) -> bool:
    """Wait until every store handed to the closer thread is closed; ``False`` on timeout."""
    with _lock:
        return _closer_wake.wait_for(lambda: not _closing and not _in_close, timeout)


def close_idle_stores() -> None:
    """Close every cached store without an open run (folds each WAL into its database), and
    the ones still waiting for the closer thread."""
    with _lock:
        if _pid != os.getpid():
            return
        stores = list(_closing)
        _closing.clear()
        for key in [key for key, entry in _entries.items() if entry.users == 0]:
            stores.append(_entries.pop(key).store)
    for store in stores:
        with contextlib.suppress(Exception):
            store.close()


atexit.register(close_idle_stores)
