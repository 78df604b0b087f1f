"""A cache of attribute rows of many runs as NumPy columns, kept between queries.

Tables, attribute lists and one-point series read the ``attributes`` rows of every matched run
(:mod:`despina.store.sql.attribute_columns` reads them as columns). A million rows still cost a
fraction of a second, so :class:`AttributeCache` keeps a project's rows and refreshes them
incrementally: every write to a run bumps ``runs.revision`` in the same transaction
(``store/writer.py``), so only the rows of runs whose revision moved (or that are new) are read
again. A run is known by ``(revision, uuid)``: a run deleted and replaced (an import) gets a new
uuid even if its row id is reused. The refresh and the reads happen in the caller's read
transaction, so the result is one consistent snapshot.

Small queries (few matched runs, no cache yet) read their rows directly.

Given a directory, the cache also keeps its entries on disk (:mod:`despina.query.attr_files`):
a fresh process (a notebook's first cell) starts from the rows an earlier process read and
re-reads from the store only the runs written since, checked the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.query import attr_files
from despina.store.sql.attribute_columns import (
    READ_STATS,
    STORE_PATHS_LIMIT,
    TYPE_CODE,
    AttrRows,
    ReadStats,
    read_attr_rows,
    read_columns,
    run_revisions,
    store_paths,
)

__all__ = [
    "READ_STATS",
    "STORE_PATHS_LIMIT",
    "TYPE_CODE",
    "AttrRows",
    "AttributeCache",
    "ReadSpec",
    "ReadStats",
    "read_attr_rows",
    "read_columns",
    "sorted_unique",
    "store_paths",
]

CACHE_THRESHOLD = 64
"""Queries over more runs than this build (or use) the project's cache."""
CACHE_MAX_ROWS = 5_000_000
"""The cache drops its least recently used entries past this many rows (about 300 MB)."""
CACHE_MAX_ENTRIES = 16
"""... and past this many (project, read spec) entries."""
DISK_WRITE_INTERVAL_S = 60.0
"""An entry's file is rewritten at most this often by one process (a project being logged to
would otherwise be rewritten by every query)."""


def sorted_unique(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``np.unique`` by sorting (NumPy 2's hash-based unique is slower on large arrays)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


@dataclass(frozen=True)
class ReadSpec:
    """What a call reads: which paths and types (``None``: all) and which columns (see
    :func:`read_columns`). Cache entries are kept per spec."""

    paths: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    values: bool = True
    text: bool = True
    series: bool = True
    skip_empty: bool = False

    def read(self, conn: Any, run_pks: list[int]) -> AttrRows:
        """The rows of ``run_pks`` this spec asks for, read now."""
        return read_columns(
            conn,
            run_pks,
            paths=None if self.paths is None else list(self.paths),
            types=None if self.types is None else list(self.types),
            values=self.values,
            text=self.text,
            series=self.series,
            skip_empty=self.skip_empty,
        )


@dataclass
class _ProjectRows:
    revisions: dict[int, tuple[int, str]]
    """Per run read: ``(revision, uuid)``; the uuid tells a new run from a deleted one whose
    row id SQLite reused."""
    rows: AttrRows
    unsaved: int = 0
    """Runs read from the store since the entry was last written to disk (or loaded)."""


class AttributeCache:
    """The rows earlier calls read, per (project, :class:`ReadSpec`), refreshed by run
    revision; safe to share between threads.

    A call never reads more than it needs to warm the cache: the first call of a kind reads
    only its runs, paths and columns (and keeps them); a repeated call re-reads only the runs
    written since. Entries are evicted least recently used past :data:`CACHE_MAX_ROWS` rows
    or :data:`CACHE_MAX_ENTRIES` entries.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, ReadSpec], _ProjectRows] = OrderedDict()
        self.directory = directory
        """Where entries are kept between processes (``None``: in memory only)."""
        self._saving: dict[Path, threading.Thread] = {}
        self._saved_at: dict[Path, float] = {}

    def rows(
        self,
        conn: Any,
        project_id: int,
        run_pks: list[int],
        spec: ReadSpec = ReadSpec(),
    ) -> AttrRows:
        """The rows of ``run_pks`` (runs of ``project_id``) that ``spec`` asks for, as of
        ``conn``'s snapshot. Small queries without an entry are read and not kept."""
        key = (project_id, spec)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
        if cached is None and len(run_pks) <= CACHE_THRESHOLD:
            return spec.read(conn, run_pks)
        if cached is None:
            cached = self._load(key)
        refreshed, covered = self._refresh(conn, cached, run_pks, spec)
        self._save(key, refreshed)
        with self._lock:
            self._entries[key] = refreshed
            self._entries.move_to_end(key)
            total = sum(len(e.rows) for e in self._entries.values())
            while self._entries and (
                total > CACHE_MAX_ROWS or len(self._entries) > CACHE_MAX_ENTRIES
            ):
                _, dropped = self._entries.popitem(last=False)
                total -= len(dropped.rows)
        if covered:  # the entry holds exactly these runs
            return refreshed.rows
        return refreshed.rows.for_runs(np.asarray(run_pks, dtype=np.int64))

    def _refresh(
        self,
        conn: Any,
        cached: _ProjectRows | None,
        run_pks: list[int],
        spec: ReadSpec,
    ) -> tuple[_ProjectRows, bool]:
        """The entry brought up to date for ``run_pks`` (distinct), and whether it holds
        exactly those runs."""
        current = run_revisions(conn, run_pks)
        old = cached.revisions if cached is not None else {}
        stale, gone = [], []
        for pk in run_pks:
            now, was = current.get(pk), old.get(pk)
            if now != was:
                if now is not None:
                    stale.append(pk)
                if was is not None:
                    gone.append(pk)
        if cached is not None and not stale and not gone:
            return cached, len(old) == len(current) == len(run_pks)
        rows = cached.rows if cached is not None else AttrRows.empty()
        if gone and len(rows):
            rows = rows.take(~np.isin(rows.run, np.asarray(gone, dtype=np.int64)))
        if stale:
            rows = AttrRows.concat([rows, spec.read(conn, stale)])
        dropped = set(gone)
        revisions = {pk: key for pk, key in old.items() if pk not in dropped}
        revisions.update((pk, current[pk]) for pk in stale)
        unsaved = (cached.unsaved if cached is not None else 0) + len(stale) + len(gone)
        entry = _ProjectRows(revisions, rows, unsaved)
        return entry, len(revisions) == len(current) == len(run_pks)

    # -- on disk -----------------------------------------------------------------------------

    def _file(self, key: tuple[int, ReadSpec]) -> Path | None:
        if self.directory is None:
            return None
        return attr_files.entry_file(self.directory, key[0], repr(key[1]))

    def _load(self, key: tuple[int, ReadSpec]) -> _ProjectRows | None:
        path = self._file(key)
        if path is None:
            return None
        self._wait(path)  # this process's own write of it, if one is under way
        found = attr_files.load(path)
        return None if found is None else _ProjectRows(*found)

    def _save(self, key: tuple[int, ReadSpec], entry: _ProjectRows) -> None:
        """Write ``entry`` in the background when the file lags behind it by a tenth of its
        runs, at most once every :data:`DISK_WRITE_INTERVAL_S` (runs being logged to are
        re-read from the store meanwhile; a small entry is not worth a file)."""
        path = self._file(key)
        if (
            path is None
            or entry.unsaved == 0
            or len(entry.rows) < attr_files.DISK_MIN_ROWS
            or entry.unsaved * 10 < len(entry.revisions)
        ):
            return
        now = time.monotonic()
        with self._lock:
            if path in self._saving and self._saving[path].is_alive():
                return
            if now - self._saved_at.get(path, -math.inf) < DISK_WRITE_INTERVAL_S:
                return
            self._saved_at[path] = now
            entry.unsaved = 0
            revisions, rows = dict(entry.revisions), entry.rows
            # not a daemon: a script that exits right after its query still leaves the file
            thread = threading.Thread(
                target=attr_files.save, args=(path, revisions, rows), name="despina-attr-cache"
            )
            self._saving[path] = thread
        thread.start()

    def _wait(self, path: Path | None = None) -> None:
        with self._lock:
            threads = list(self._saving.values()) if path is None else [self._saving.get(path)]
        for thread in threads:
            if thread is not None:
                thread.join()

    def clear(self) -> None:
        """Forget every cached entry, on disk too."""
        self._wait()
        with self._lock:
            self._entries.clear()
            self._saving.clear()
            self._saved_at.clear()
        if self.directory is not None:
            attr_files.remove_all(self.directory)
