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

import json
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from despina.store.schema import ATTRIBUTE_TYPES

__all__ = [
    "READ_STATS",
    "TYPE_CODE",
    "AttrRows",
    "AttributeCache",
    "ReadSpec",
    "ReadStats",
    "read_attr_rows",
    "read_columns",
    "store_paths",
]

TYPE_CODE = {name: code for code, name in enumerate(ATTRIBUTE_TYPES)}
"""Attribute type name → the small integer code used in :attr:`AttrRows.type`."""

_INT_CODES = np.array([TYPE_CODE["int"], TYPE_CODE["bool"], TYPE_CODE["datetime"]])
_TEXT_CODES = np.array(
    [
        code
        for name, code in TYPE_CODE.items()
        if name not in ("float", "int", "bool", "datetime", "float_series")
    ]
)
"""Types whose value is ``attributes.text`` (strings, sets, files, string/histogram/file
series)."""
_BATCH = 900  # run ids per ``IN (...)`` list
CACHE_THRESHOLD = 64
"""Queries over more runs than this build (or use) the project's cache."""
CACHE_MAX_ROWS = 5_000_000
"""The cache drops its least recently used entries past this many rows (about 300 MB)."""
CACHE_MAX_ENTRIES = 16
"""... and past this many (project, read spec) entries."""

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


# -- columnar reads ---------------------------------------------------------------------------
#
# Row-by-row fetching costs a Python object per cell (~5 µs per attribute row once converted).
# Instead one statement groups the wanted rows by run and packs every column into one value
# per run: paths and types as ``group_concat`` strings (decoded once per distinct layout; runs
# usually share theirs), numbers through two aggregates whose step is a C-level ``append`` and
# whose result is the packed array's bytes (``np.frombuffer``). Values stay exact: ``num``
# arrives as Python numbers (NULL, i.e. NaN, as None), the few integers past 2**53 are read
# again exactly. Text (strings, JSON) is the only column fetched as Python objects, and only
# for the rows that have one.

_SEP = "\x01"
_SELECT_PATHS = """
WITH RECURSIVE p(path) AS (
    SELECT (SELECT min(path) FROM attributes)
    UNION ALL
    SELECT (SELECT min(path) FROM attributes WHERE path > p.path) FROM p WHERE p.path IS NOT NULL
) SELECT path FROM p WHERE path IS NOT NULL
"""
_EXACT_LIMIT = 2.0**53
"""Integers at or past this magnitude may not survive the trip through float64."""


class _PackFloats:
    """SQL aggregate ``despina_f8(x)``: the group's values as float64 bytes (NULL → NaN)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.step = self.values.append  # a C call per row, no Python frame

    def finalize(self) -> bytes:
        return np.array(self.values, dtype=np.float64).tobytes()


@dataclass
class ReadStats:
    """What the columnar reader read (tests check that a call reads only what it needs)."""

    statements: int = 0
    rows: int = 0


READ_STATS = ReadStats()
"""Process-wide counters of :func:`read_columns`: statements run and attribute rows read."""


STORE_PATHS_LIMIT = 20_000
"""Past this many distinct paths in the store, a call reads every path of its runs rather than
listing them all first (one index seek each) to name the ones it wants."""


def store_paths(conn: sqlite3.Connection) -> list[str] | None:
    """Every distinct attribute path in the store, one index seek per path (a superset of a
    project's paths: callers combine it with a run filter); ``None`` past
    :data:`STORE_PATHS_LIMIT` paths."""
    READ_STATS.statements += 1
    found = [path for (path,) in conn.execute(f"{_SELECT_PATHS} LIMIT ?", (STORE_PATHS_LIMIT + 1,))]
    return None if len(found) > STORE_PATHS_LIMIT else found


def _ints(parts: list[str | None]) -> I64:
    """Comma-separated integers (``group_concat`` of several groups) as one array."""
    text = ",".join(p for p in parts if p)
    return np.fromstring(text, dtype=np.int64, sep=",") if text else np.empty(0, np.int64)


def _unpack(groups: list[Any], col: int, dtype: Any) -> npt.NDArray[Any]:
    return np.frombuffer(b"".join(g[col] for g in groups), dtype=dtype)


def read_columns(
    conn: sqlite3.Connection,
    run_pks: list[int],
    *,
    paths: list[str] | None = None,
    types: list[str] | None = None,
    values: bool = True,
    text: bool = True,
    series: bool = True,
    skip_empty: bool = False,
) -> AttrRows:
    """The ``attributes`` rows of ``run_pks`` (only ``paths`` and ``types``, if given) as
    columns.

    Only the requested columns are read: ``values`` (``num_f``/``num_i``), ``text`` (``text``,
    and ``last_step`` of rows with text), ``series`` (``attr_id``, ``count``, ``last_step``,
    ``last_ts``); the others hold zeros (``count``: -1, which callers read as "not empty").
    ``skip_empty`` leaves out series without committed points. Rows are grouped by run.
    """
    if not run_pks or (paths is not None and not paths) or (types is not None and not types):
        return _empty()
    conn.create_aggregate("despina_f8", 1, _PackFloats)  # type: ignore[arg-type]
    one_type = types is not None and len(types) == 1  # then the type needs no column
    columns = ["a.run_id", "count(*)", "group_concat(a.path, char(1))"]
    columns.append("NULL" if one_type else "group_concat(a.type)")
    if values:
        columns.append("despina_f8(a.num)")
    if series:
        columns += [
            "group_concat(a.id)",
            "group_concat(ifnull(a.count, -1))",
            "group_concat(ifnull(a.last_step, -1))",
            "group_concat(ifnull(a.last_ts, 0))",
        ]
    where = "a.run_id IN (SELECT value FROM json_each(?))"
    params: list[Any] = [json.dumps(run_pks)]
    if paths is not None:
        where += " AND a.path IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(paths))
    if types is not None:
        for name in types:
            if name not in TYPE_CODE:  # inlined below: only our own fixed names may pass
                raise ValueError(f"not an attribute type: {name!r}")
        where += " AND a.type IN (" + ", ".join(f"'{name}'" for name in types) + ")"
    if skip_empty:
        where += " AND (a.count IS NULL OR a.count != 0)"
    sql = f"SELECT {', '.join(columns)} FROM attributes a WHERE {where} GROUP BY a.run_id"
    groups = conn.execute(sql, params).fetchall()
    READ_STATS.statements += 1
    if not groups:
        return _empty()
    sizes = np.fromiter((g[1] for g in groups), np.int64, len(groups))
    n = int(sizes.sum())
    READ_STATS.rows += n
    path_codes: dict[str, int] = {}
    layouts: dict[str, npt.NDArray[np.int32]] = {}
    type_layouts: dict[str, npt.NDArray[np.int8]] = {}
    path_parts, type_parts = [], []
    for g in groups:
        layout = layouts.get(g[2])
        if layout is None:
            names = g[2].split(_SEP)
            if len(names) != g[1]:  # a path holding the separator: this read cannot split it
                return _row_wise(conn, run_pks, paths, types, skip_empty)
            layout = np.array([path_codes.setdefault(p, len(path_codes)) for p in names], np.int32)
            layouts[g[2]] = layout
        path_parts.append(layout)
        if one_type:
            continue
        kinds = type_layouts.get(g[3])
        if kinds is None:
            kinds = np.array([TYPE_CODE.get(t, -1) for t in g[3].split(",")], np.int8)
            type_layouts[g[3]] = kinds
        type_parts.append(kinds)
    run = np.repeat(np.fromiter((g[0] for g in groups), np.int64, len(groups)), sizes)
    path = np.concatenate(path_parts)
    if types is not None and one_type:
        type_ = np.full(n, TYPE_CODE[types[0]], np.int8)
    else:
        type_ = np.concatenate(type_parts)
    paths_found = tuple(path_codes)
    num_f = np.full(n, np.nan)
    num_i = np.zeros(n, np.int64)
    col = 4
    if values:
        num_f = _unpack(groups, col, np.float64).copy()
        int_typed = np.flatnonzero(np.isin(type_, _INT_CODES) & ~np.isnan(num_f))
        num_i[int_typed] = num_f[int_typed].astype(np.int64)
        large = int_typed[np.abs(num_f[int_typed]) >= _EXACT_LIMIT]
        for at in large.tolist():  # rare: integers float64 cannot hold exactly
            (exact,) = conn.execute(
                "SELECT num FROM attributes WHERE run_id = ? AND path = ?",
                (int(run[at]), paths_found[path[at]]),
            ).fetchone()
            num_i[at] = int(exact)
        col += 1
    zeros = np.zeros(n, np.int64)
    attr_id, count, last_step, last_ts = zeros, np.full(n, -1, np.int64), zeros - 1, zeros
    if series:
        attr_id, count, last_step, last_ts = (_ints([g[col + i] for g in groups]) for i in range(4))
    cells = np.full(n, None, dtype=object)
    if text:
        # text values, for the rows of text types only, in (run, path) order: the order of the
        # (run_id, path) index both statements walk; the main rows are put in that order too
        at = np.flatnonzero(np.isin(type_, _TEXT_CODES))
        if len(at):
            ranks = np.empty(len(paths_found), np.int64)
            ranks[np.argsort(np.array(paths_found, dtype=object))] = np.arange(len(paths_found))
            at = at[np.lexsort((ranks[path[at]], run[at]))]
            text_types = ", ".join(f"'{t}'" for t in ATTRIBUTE_TYPES if TYPE_CODE[t] in _TEXT_CODES)
            # only the paths that hold text: (run_id, path) index seeks, not a walk of each run
            text_paths = [paths_found[c] for c in np.unique(path[at]).tolist()]
            found = conn.execute(
                "SELECT a.text, ifnull(a.last_step, -1) FROM attributes a "
                f"WHERE {where} AND a.path IN (SELECT value FROM json_each(?)) "
                f"AND a.type IN ({text_types}) ORDER BY a.run_id, a.path",
                [*params, json.dumps(text_paths)],
            ).fetchall()
            READ_STATS.statements += 1
            if len(found) != len(at):  # one read transaction: the rows cannot differ
                raise RuntimeError("the text rows of an attribute read did not line up")
            cells[at] = [r[0] for r in found]
            last_step = last_step.copy()
            last_step[at] = np.fromiter((r[1] for r in found), np.int64, len(found))
    return AttrRows(
        attr_id,
        run,
        path,
        type_,
        num_f,
        num_i,
        cells,
        count,
        last_step,
        last_ts,
        paths_found,
    )


def _row_wise(
    conn: sqlite3.Connection,
    run_pks: list[int],
    paths: list[str] | None,
    types: list[str] | None,
    skip_empty: bool,
) -> AttrRows:
    rows = read_attr_rows(conn, run_pks)
    keep = np.ones(len(rows), bool)
    if paths is not None and len(rows):
        keep &= np.isin(np.asarray(rows.paths, dtype=object)[rows.path], paths)
    if types is not None:
        keep &= np.isin(rows.type, [TYPE_CODE[t] for t in types])
    if skip_empty:
        keep &= rows.count != 0
    return rows.take(keep)


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

    def read(self, conn: sqlite3.Connection, run_pks: list[int]) -> AttrRows:
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


class AttributeCache:
    """The rows earlier calls read, per (project, :class:`ReadSpec`), refreshed by run
    revision; safe to share between threads.

    A call never reads more than it needs to warm the cache: the first call of a kind reads
    only its runs, paths and columns (and keeps them); a repeated call re-reads only the runs
    written since. Entries are evicted least recently used past :data:`CACHE_MAX_ROWS` rows
    or :data:`CACHE_MAX_ENTRIES` entries.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, ReadSpec], _ProjectRows] = OrderedDict()

    def rows(
        self,
        conn: sqlite3.Connection,
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
        refreshed, covered = self._refresh(conn, cached, run_pks, spec)
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
        conn: sqlite3.Connection,
        cached: _ProjectRows | None,
        run_pks: list[int],
        spec: ReadSpec,
    ) -> tuple[_ProjectRows, bool]:
        """The entry brought up to date for ``run_pks`` (distinct), and whether it holds
        exactly those runs."""
        current = {
            pk: (revision, uuid)
            for pk, revision, uuid in conn.execute(
                "SELECT id, revision, uuid FROM runs WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(run_pks),),
            )
        }
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
        rows = cached.rows if cached is not None else _empty()
        if gone and len(rows):
            rows = rows.take(~np.isin(rows.run, np.asarray(gone, dtype=np.int64)))
        if stale:
            rows = AttrRows.concat([rows, spec.read(conn, stale)])
        dropped = set(gone)
        revisions = {pk: key for pk, key in old.items() if pk not in dropped}
        revisions.update((pk, current[pk]) for pk in stale)
        return _ProjectRows(revisions, rows), len(revisions) == len(current) == len(run_pks)

    def clear(self) -> None:
        """Forget every cached entry."""
        with self._lock:
            self._entries.clear()
