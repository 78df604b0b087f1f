"""Attribute rows of many runs as NumPy columns, and a cache that keeps them between queries.

Tables, attribute lists and one-point series read the ``attributes`` rows of every matched run.
SQLite hands rows to Python one object per cell, which costs about a second per million cells,
so :class:`AttributeCache` keeps a project's rows as columns and refreshes them incrementally:
every write to a run bumps ``runs.revision`` in the same transaction (``store/writer.py``), so
only the rows of runs whose revision moved (or that are new) are read again. A run is known by
``(revision, uuid)``: a run deleted and replaced (an import) gets a new uuid even if SQLite
reuses its row id. The refresh and
the reads happen in the caller's read transaction, so the result is one consistent snapshot.

Small queries (few matched runs, no cache yet) read their rows directly.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from despina.store.schema import ATTRIBUTE_TYPES

__all__ = ["TYPE_CODE", "AttrRows", "AttributeCache", "read_attr_rows"]

TYPE_CODE = {name: code for code, name in enumerate(ATTRIBUTE_TYPES)}
"""Attribute type name → the small integer code used in :attr:`AttrRows.type`."""

_INT_CODES = np.array([TYPE_CODE["int"], TYPE_CODE["bool"], TYPE_CODE["datetime"]])
_BATCH = 900  # run ids per ``IN (...)`` list
CACHE_THRESHOLD = 64
"""Queries over more runs than this build (or use) the project's cache."""
CACHE_MAX_ROWS = 5_000_000
"""A project's cache is dropped rather than grown past this many rows (about 300 MB)."""

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class AttrRows:
    """Columns of ``attributes`` rows. ``path`` codes index :attr:`paths`; ``type`` codes index
    ``ATTRIBUTE_TYPES``. Missing ``count``/``last_step`` are -1; ``num_f`` holds float values
    (NaN for NULL), ``num_i`` integral ones; ``text`` is an object array (``None`` for NULL)."""

    attr_id: I64
    run: I64
    path: npt.NDArray[np.int32]
    type: npt.NDArray[np.int8]
    num_f: npt.NDArray[np.float64]
    num_i: I64
    text: npt.NDArray[np.object_]
    count: I64
    last_step: I64
    last_ts: I64
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.attr_id)

    def take(self, index: npt.NDArray[Any]) -> AttrRows:
        """The rows at ``index`` (a boolean mask or positions)."""
        return AttrRows(
            self.attr_id[index],
            self.run[index],
            self.path[index],
            self.type[index],
            self.num_f[index],
            self.num_i[index],
            self.text[index],
            self.count[index],
            self.last_step[index],
            self.last_ts[index],
            self.paths,
        )

    def for_runs(self, run_pks: npt.NDArray[np.int64]) -> AttrRows:
        """The rows of the given runs."""
        if len(self) == 0:
            return self
        return self.take(np.isin(self.run, run_pks))

    @staticmethod
    def concat(parts: list[AttrRows]) -> AttrRows:
        """Rows of all ``parts``, with their path codes merged."""
        parts = [p for p in parts if len(p)] or parts[:1]
        if len(parts) == 1:
            return parts[0]
        paths: dict[str, int] = {}
        recoded = []
        for part in parts:
            mapping = np.array([paths.setdefault(p, len(paths)) for p in part.paths], np.int32)
            recoded.append(mapping[part.path] if len(part.paths) else part.path)
        return AttrRows(
            np.concatenate([p.attr_id for p in parts]),
            np.concatenate([p.run for p in parts]),
            np.concatenate(recoded).astype(np.int32),
            np.concatenate([p.type for p in parts]),
            np.concatenate([p.num_f for p in parts]),
            np.concatenate([p.num_i for p in parts]),
            np.concatenate([p.text for p in parts]),
            np.concatenate([p.count for p in parts]),
            np.concatenate([p.last_step for p in parts]),
            np.concatenate([p.last_ts for p in parts]),
            tuple(paths),
        )


def sorted_unique(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``np.unique`` by sorting (NumPy 2's hash-based unique is slower on large arrays)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def _empty() -> AttrRows:
    i64 = np.empty(0, np.int64)
    return AttrRows(
        i64,
        i64,
        np.empty(0, np.int32),
        np.empty(0, np.int8),
        np.empty(0, np.float64),
        i64,
        np.empty(0, object),
        i64,
        i64,
        i64,
        (),
    )


_TYPE_CASE = (
    "CASE a.type "
    + " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(ATTRIBUTE_TYPES))
    + " ELSE -1 END"
)
_COLUMNS = (
    f"a.id, a.run_id, a.path, {_TYPE_CASE}, a.num, a.text, ifnull(a.count, -1), "
    "ifnull(a.last_step, -1), ifnull(a.last_ts, 0)"
)


def _rows_to_columns(rows: list[tuple[Any, ...]]) -> AttrRows:
    if not rows:
        return _empty()
    table = np.array(rows, dtype=object)
    path_codes, path_names = pd.factorize(table[:, 2])
    type_codes = table[:, 3].astype(np.int8)
    nums = table[:, 4]
    is_int = np.isin(type_codes, _INT_CODES)
    num_f = nums.astype(np.float64)  # NULL (None) becomes NaN
    num_i = np.zeros(len(rows), np.int64)
    if is_int.any():
        num_i[is_int] = nums[is_int].astype(np.int64)
    return AttrRows(
        table[:, 0].astype(np.int64),
        table[:, 1].astype(np.int64),
        path_codes.astype(np.int32),
        type_codes,
        num_f,
        num_i,
        table[:, 5].copy(),
        table[:, 6].astype(np.int64),
        table[:, 7].astype(np.int64),
        table[:, 8].astype(np.int64),
        tuple(str(p) for p in path_names),
    )


def read_attr_rows(conn: sqlite3.Connection, run_pks: list[int]) -> AttrRows:
    """The ``attributes`` rows of the given runs, read directly."""
    parts = []
    for start in range(0, len(run_pks), _BATCH):
        batch = run_pks[start : start + _BATCH]
        marks = ",".join("?" * len(batch))
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM attributes a WHERE a.run_id IN ({marks})", batch
        ).fetchall()
        parts.append(_rows_to_columns(rows))
    return AttrRows.concat(parts) if parts else _empty()


@dataclass
class _ProjectRows:
    revisions: dict[int, tuple[int, str]]
    """Per run: ``(revision, uuid)``; the uuid tells a new run from a deleted one whose row
    id SQLite reused."""
    rows: AttrRows


class AttributeCache:
    """Per-project :class:`AttrRows` of the runs queried so far, refreshed by run revision;
    safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[int, _ProjectRows] = {}

    def rows(self, conn: sqlite3.Connection, project_id: int, run_pks: list[int]) -> AttrRows:
        """The attribute rows of ``run_pks`` (runs of ``project_id``) as of ``conn``'s snapshot.

        Uses (and fills) the cache when the project has one or when many runs are asked for.
        """
        with self._lock:
            cached = self._projects.get(project_id)
        if cached is None and len(run_pks) <= CACHE_THRESHOLD:
            return read_attr_rows(conn, run_pks)
        refreshed = self._refresh(conn, project_id, cached, run_pks)
        with self._lock:
            if len(refreshed.rows) <= CACHE_MAX_ROWS:
                self._projects[project_id] = refreshed
            else:
                self._projects.pop(project_id, None)
        return refreshed.rows.for_runs(np.asarray(run_pks, dtype=np.int64))

    def _refresh(
        self,
        conn: sqlite3.Connection,
        project_id: int,
        cached: _ProjectRows | None,
        run_pks: list[int],
    ) -> _ProjectRows:
        current = {
            pk: (revision, uuid)
            for pk, revision, uuid in conn.execute(
                "SELECT id, revision, uuid FROM runs WHERE project_id = ?", (project_id,)
            )
        }
        old = cached.revisions if cached is not None else {}
        stale = [pk for pk in run_pks if pk in current and old.get(pk) != current[pk]]
        gone = [pk for pk in old if old[pk] != current.get(pk)]
        if cached is not None and not stale and not gone:
            return cached
        rows = cached.rows if cached is not None else _empty()
        if gone and len(rows):
            rows = rows.take(~np.isin(rows.run, np.asarray(gone, dtype=np.int64)))
        if stale:
            rows = AttrRows.concat([rows, read_attr_rows(conn, stale)])
        revisions = {pk: key for pk, key in old.items() if current.get(pk) == key}
        revisions.update((pk, current[pk]) for pk in stale)
        return _ProjectRows(revisions, rows)

    def clear(self) -> None:
        """Forget every cached project."""
        with self._lock:
            self._projects.clear()
