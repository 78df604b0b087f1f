"""``attributes`` rows of many runs as NumPy columns: what tables, attribute lists and series
listings of the query service read.

Row-by-row fetching costs a Python object per cell (about a second per million cells), so one
statement groups the wanted rows by run and packs each column into one value per run:

* SQLite: paths and types as ``group_concat`` strings (decoded once per distinct layout; runs
  usually share theirs), numbers through an aggregate whose step is a C-level ``append`` and whose
  result is the packed array's bytes; the few integers past 2**53 are read again exactly; text
  (strings, JSON) comes in a second statement, only for the rows of text types.
* PostgreSQL: the same grouping, with every numeric column packed on the server
  (``string_agg(float8send(...))``, ``int8send``) into ``bytea`` read in binary, integers exact in
  a column of their own, and text as one array per run: a run costs one row whatever its number
  of attributes (psycopg pays per row and per Python object).

Values stay exact on both: floats bit for bit (NaN, stored as NULL, as NaN), ints as int64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.store.schema import ATTRIBUTE_TYPES
from despina.store.sql import dialect_of

__all__ = [
    "READ_STATS",
    "STORE_PATHS_LIMIT",
    "TYPE_CODE",
    "AttrRows",
    "ReadStats",
    "read_attr_rows",
    "read_columns",
    "run_revisions",
    "store_paths",
]

TYPE_CODE = {name: code for code, name in enumerate(ATTRIBUTE_TYPES)}
"""Attribute type name → the small integer code used in :attr:`AttrRows.type`."""

_INT_TYPES = ("int", "bool", "datetime")
_INT_CODES = np.array([TYPE_CODE[t] for t in _INT_TYPES])
_TEXT_TYPES = tuple(
    name
    for name in ATTRIBUTE_TYPES
    if name not in ("float", "int", "bool", "datetime", "float_series")
)
"""Types whose value is ``attributes.text`` (strings, sets, files, string/histogram/file
series)."""
_TEXT_CODES = np.array([TYPE_CODE[t] for t in _TEXT_TYPES])

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
    def empty() -> AttrRows:
        """No rows."""
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

    @staticmethod
    def concat(parts: list[AttrRows]) -> AttrRows:
        """Rows of all ``parts``, with their path codes merged."""
        parts = [p for p in parts if len(p)] or parts[:1]
        if not parts:
            return AttrRows.empty()
        if len(parts) == 1:
            return parts[0]
        paths: dict[str, int] = {}
        mappings: dict[tuple[str, ...], npt.NDArray[np.int32]] = {}  # runs share their paths
        recoded = []
        for part in parts:
            mapping = mappings.get(part.paths)
            if mapping is None:
                mapping = np.array([paths.setdefault(p, len(paths)) for p in part.paths], np.int32)
                mappings[part.paths] = mapping
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


@dataclass
class ReadStats:
    """What the columnar reader read (tests check that a call reads only what it needs)."""

    statements: int = 0
    rows: int = 0
    packs: int = 0
    """Attribute packs decoded (``store/sql/attribute_packs.py``)."""


READ_STATS = ReadStats()
"""Process-wide counters of :func:`read_columns` and :func:`store_paths`: statements run and
attribute rows read."""

STORE_PATHS_LIMIT = 20_000
"""Past this many distinct paths in the store, :func:`store_paths` answers ``None``: a caller
then reads every path of its runs rather than listing them all first to name the ones it
wants."""

_SELECT_PATHS = """
WITH RECURSIVE p(path) AS (
    SELECT (SELECT min(path) FROM attributes)
    UNION ALL
    SELECT (SELECT min(path) FROM attributes WHERE path > p.path) FROM p WHERE p.path IS NOT NULL
) SELECT path FROM p WHERE path IS NOT NULL LIMIT ?
"""


def store_paths(conn: Any) -> list[str] | None:
    """Every distinct attribute path in the store, one index seek per path (a superset of a
    project's paths: callers combine it with a run filter); ``None`` past
    :data:`STORE_PATHS_LIMIT` paths."""
    READ_STATS.statements += 1
    found = [path for (path,) in conn.execute(_SELECT_PATHS, (STORE_PATHS_LIMIT + 1,))]
    return None if len(found) > STORE_PATHS_LIMIT else [str(p) for p in found]


def run_revisions(conn: Any, run_pks: list[int]) -> dict[int, tuple[int, str]]:
    """Per run row id among ``run_pks`` that exists: ``(revision, uuid)``.

    Every write to a run bumps its revision in the same transaction (``store/writer.py``); a
    run deleted and replaced gets a new uuid even if its row id is reused, so the pair tells
    whether rows read earlier are still current.
    """
    return {
        int(pk): (int(revision), str(uuid))
        for pk, revision, uuid in conn.execute(
            "SELECT id, revision, uuid FROM runs WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(run_pks),),
        )
    }


# -- row-wise reads ----------------------------------------------------------------------------

_TYPE_CASE = (
    "CASE a.type "
    + " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(ATTRIBUTE_TYPES))
    + " ELSE -1 END"
)
_ROW_COLUMNS = (
    f"a.id, a.run_id, a.path, {_TYPE_CASE}, a.num, a.text, ifnull(a.count, -1), "
    "ifnull(a.last_step, -1), ifnull(a.last_ts, 0)"
)


def _rows_to_columns(rows: list[tuple[Any, ...]]) -> AttrRows:
    if not rows:
        return AttrRows.empty()
    import pandas as pd  # not at import: closing a run (attribute packs) reads no pandas

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


def read_attr_rows(conn: Any, run_pks: list[int]) -> AttrRows:
    """Every ``attributes`` row of the given runs, every column, read row by row (the reference
    :func:`read_columns` is checked against, and its fallback)."""
    rows = conn.execute(
        f"SELECT {_ROW_COLUMNS} FROM attributes a "
        "WHERE a.run_id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(run_pks)),),
    ).fetchall()
    return _rows_to_columns(rows)


# -- columnar reads ----------------------------------------------------------------------------

_SEP = "\x01"
_EXACT_LIMIT = 2.0**53
"""Integers at or past this magnitude may not survive the trip through float64."""


class _PackFloats:
    """SQLite aggregate ``despina_f8(x)``: the group's values as float64 bytes (NULL → NaN)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.step = self.values.append  # a C call per row, no Python frame

    def finalize(self) -> bytes:
        return np.array(self.values, dtype=np.float64).tobytes()


def _type_list(types: list[str]) -> str:
    for name in types:
        if name not in TYPE_CODE:  # inlined: only our own fixed names may pass
            raise ValueError(f"not an attribute type: {name!r}")
    return ", ".join(f"'{name}'" for name in types)


def read_columns(
    conn: Any,
    run_pks: list[int],
    *,
    paths: list[str] | None = None,
    types: list[str] | None = None,
    values: bool = True,
    text: bool = True,
    series: bool = True,
    skip_empty: bool = False,
    packs: bool = True,
) -> AttrRows:
    """The ``attributes`` rows of ``run_pks`` (only ``paths`` and ``types``, if given) as
    columns, grouped by run.

    The rows of closed runs come from their attribute packs while those are current
    (:mod:`despina.store.sql.attribute_packs`; ``packs=False``: from the rows only), the others
    from the ``attributes`` table.

    Only the requested columns are read: ``values`` (``num_f``/``num_i``), ``text`` (``text``,
    and ``last_step`` of rows with text), ``series`` (``attr_id``, ``count``, ``last_step``,
    ``last_ts``); the others hold zeros (``count``: -1, which callers read as "not empty").
    ``skip_empty`` leaves out series without committed points.

    Raises:
        ValueError: ``types`` names something that is not an attribute type.
    """
    if not run_pks or (paths is not None and not paths) or (types is not None and not types):
        return AttrRows.empty()
    if types is not None:
        _type_list(types)  # refused before anything is read
    if packs:
        from despina.store.sql.attribute_packs import read_packs  # it builds on this module

        options = {"values": values, "text": text, "series": series, "skip_empty": skip_empty}
        packed, rest = read_packs(conn, run_pks, paths=paths, types=types, **options)
        if len(rest) < len(run_pks):
            if not rest:
                return packed
            others = read_columns(conn, rest, paths=paths, types=types, packs=False, **options)
            return AttrRows.concat([packed, others])
    where = "a.run_id IN (SELECT value FROM json_each(?))"
    params: list[Any] = [json.dumps(run_pks)]
    if paths is not None:
        where += " AND a.path IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(paths))
    if types is not None:
        where += f" AND a.type IN ({_type_list(types)})"
    if skip_empty:
        where += " AND (a.count IS NULL OR a.count != 0)"
    spec = _Spec(run_pks, paths, types, values, text, series, skip_empty, where, params)
    if dialect_of(conn) == "postgresql":
        return _read_postgres(conn, spec)
    return _read_sqlite(conn, spec)


@dataclass(frozen=True)
class _Spec:
    run_pks: list[int]
    paths: list[str] | None
    types: list[str] | None
    values: bool
    text: bool
    series: bool
    skip_empty: bool
    where: str
    params: list[Any]

    @property
    def one_type(self) -> bool:
        """Only one type is read: it needs no column."""
        return self.types is not None and len(self.types) == 1


class _Layouts:
    """Decodes the per-run path and type lists, once per distinct list."""

    def __init__(self) -> None:
        self.path_codes: dict[str, int] = {}
        self.paths: dict[str, npt.NDArray[np.int32]] = {}
        self.types: dict[str, npt.NDArray[np.int8]] = {}

    def path_layout(self, joined: str, size: int) -> npt.NDArray[np.int32] | None:
        """The path codes of one run's rows; None when a path holds the separator."""
        layout = self.paths.get(joined)
        if layout is None:
            names = joined.split(_SEP)
            if len(names) != size:
                return None
            codes = self.path_codes
            layout = np.array([codes.setdefault(p, len(codes)) for p in names], np.int32)
            self.paths[joined] = layout
        return layout

    def type_layout(self, joined: str) -> npt.NDArray[np.int8]:
        kinds = self.types.get(joined)
        if kinds is None:
            kinds = np.array([TYPE_CODE.get(t, -1) for t in joined.split(",")], np.int8)
            self.types[joined] = kinds
        return kinds


def _ints(parts: list[str | None]) -> I64:
    """Comma-separated integers (``group_concat`` of several groups) as one array."""
    joined = ",".join(p for p in parts if p)
    return np.fromstring(joined, dtype=np.int64, sep=",") if joined else np.empty(0, np.int64)


def _unpack(groups: list[Any], col: int, dtype: Any) -> npt.NDArray[Any]:
    """One packed column of every group, in native byte order (a writable copy)."""
    found = np.frombuffer(b"".join(g[col] for g in groups), dtype=dtype)
    return found.astype(found.dtype.newbyteorder("="))


def _read_sqlite(conn: Any, spec: _Spec) -> AttrRows:
    conn.create_aggregate("despina_f8", 1, _PackFloats)
    columns = ["a.run_id", "count(*)", "group_concat(a.path, char(1))"]
    columns.append("NULL" if spec.one_type else "group_concat(a.type)")
    if spec.values:
        columns.append("despina_f8(a.num)")
    if spec.series:
        columns += [
            "group_concat(a.id)",
            "group_concat(ifnull(a.count, -1))",
            "group_concat(ifnull(a.last_step, -1))",
            "group_concat(ifnull(a.last_ts, 0))",
        ]
    sql = f"SELECT {', '.join(columns)} FROM attributes a WHERE {spec.where} GROUP BY a.run_id"
    groups = conn.execute(sql, spec.params).fetchall()
    READ_STATS.statements += 1
    if not groups:
        return AttrRows.empty()
    found = _group_layout(groups, spec)
    if found is None:  # a path holding the separator: this read cannot split it
        return _row_wise(conn, spec)
    n, layouts, run, path, type_ = found
    paths_found = tuple(layouts.path_codes)
    num_f = np.full(n, np.nan)
    num_i = np.zeros(n, np.int64)
    col = 4
    if spec.values:
        num_f = _unpack(groups, col, np.float64)
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
    if spec.series:
        attr_id, count, last_step, last_ts = (_ints([g[col + i] for g in groups]) for i in range(4))
    cells = np.full(n, None, dtype=object)
    if spec.text:
        # text values, for the rows of text types only, in (run, path) order: the order of the
        # (run_id, path) index both statements walk; the main rows are put in that order too
        at = np.flatnonzero(np.isin(type_, _TEXT_CODES))
        if len(at):
            ranks = np.empty(len(paths_found), np.int64)
            ranks[np.argsort(np.array(paths_found, dtype=object))] = np.arange(len(paths_found))
            at = at[np.lexsort((ranks[path[at]], run[at]))]
            # only the paths that hold text: (run_id, path) index seeks, not a walk of each run
            # (a set, not np.unique: NumPy 2's unique imports numpy.ma on first use, ~13 ms of
            # the first run close in a process)
            text_paths = [paths_found[c] for c in sorted(set(path[at].tolist()))]
            found = conn.execute(
                "SELECT a.text, ifnull(a.last_step, -1) FROM attributes a "
                f"WHERE {spec.where} AND a.path IN (SELECT value FROM json_each(?)) "
                f"AND a.type IN ({_type_list(list(_TEXT_TYPES))}) ORDER BY a.run_id, a.path",
                [*spec.params, json.dumps(text_paths)],
            ).fetchall()
            READ_STATS.statements += 1
            if len(found) != len(at):  # one read transaction: the rows cannot differ
                raise RuntimeError("the text rows of an attribute read did not line up")
            cells[at] = [r[0] for r in found]
            last_step = last_step.copy()
            last_step[at] = np.fromiter((r[1] for r in found), np.int64, len(found))
    return AttrRows(
        attr_id, run, path, type_, num_f, num_i, cells, count, last_step, last_ts, paths_found
    )


# PostgreSQL: every numeric column packed per run on the server, big-endian (float8send,
# int8send), read through a binary cursor; ints exact in their own column (numeric to bigint)
_PG_NUM_F = "string_agg(float8send(COALESCE(a.num::float8, 'NaN'::float8)), ''::bytea)"
_PG_NUM_I = (
    "string_agg(int8send(CASE WHEN a.type IN ('int', 'bool', 'datetime') "
    "AND a.num BETWEEN -9223372036854775808 AND 9223372036854775807 "
    "THEN a.num::bigint ELSE 0 END), ''::bytea)"
)


def _pg_ints(column: str, default: int) -> str:
    return f"string_agg(int8send(COALESCE({column}, {default})), ''::bytea)"


def _read_postgres(conn: Any, spec: _Spec) -> AttrRows:
    columns = ["a.run_id", "count(*)", "string_agg(a.path, chr(1))"]
    columns.append("NULL" if spec.one_type else "string_agg(a.type, ',')")
    if spec.values:
        columns += [_PG_NUM_F, _PG_NUM_I]
    if spec.series:
        columns += [
            _pg_ints("a.id", 0),
            _pg_ints("a.count", -1),
            _pg_ints("a.last_ts", 0),
        ]
    if spec.series or spec.text:
        columns.append(_pg_ints("a.last_step", -1))
    if spec.text:
        columns.append(
            f"array_agg(a.text) FILTER (WHERE a.type IN ({_type_list(list(_TEXT_TYPES))}))"
        )
    where = spec.where.replace(
        "a.run_id IN (SELECT value FROM json_each(?))", "a.run_id = ANY(%s)"
    ).replace("a.path IN (SELECT value FROM json_each(?))", "a.path = ANY(%s)")
    sql = f"SELECT {', '.join(columns)} FROM attributes a WHERE {where} GROUP BY a.run_id"
    params = [json.loads(p) for p in spec.params]
    cursor = conn.raw.cursor(binary=True)
    groups = cursor.execute(sql, params).fetchall()
    READ_STATS.statements += 1
    if not groups:
        return AttrRows.empty()
    found = _group_layout(groups, spec)
    if found is None:  # a path holding the separator: this read cannot split it
        return _row_wise(conn, spec)
    n, layouts, run, path, type_ = found
    col = 4
    num_f = np.full(n, np.nan)
    num_i = np.zeros(n, np.int64)
    if spec.values:
        num_f = _unpack(groups, col, ">f8")
        num_i = _unpack(groups, col + 1, ">i8")
        col += 2
    zeros = np.zeros(n, np.int64)
    attr_id, count, last_step, last_ts = zeros, np.full(n, -1, np.int64), zeros - 1, zeros
    if spec.series:
        attr_id, count, last_ts = (
            _unpack(groups, col + i, ">i8").astype(np.int64) for i in range(3)
        )
        col += 3
    if spec.series or spec.text:
        step_all = _unpack(groups, col, ">i8")
        col += 1
        if spec.series:
            last_step = step_all
    cells = np.full(n, None, dtype=object)
    if spec.text:
        at = np.flatnonzero(np.isin(type_, _TEXT_CODES))
        if len(at):
            cells[at] = [cell for g in groups if g[col] for cell in g[col]]
            if not spec.series:
                last_step = last_step.copy()
                last_step[at] = step_all[at]
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
        tuple(layouts.path_codes),
    )


def _group_layout(
    groups: list[Any], spec: _Spec
) -> tuple[int, _Layouts, npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[np.int8]] | None:
    """The rows of per-run groups (run id, row count, joined paths, joined types, ...) as
    columns: their number, the path and type layouts, and per row its run, path code and type
    code; None when a path holds the separator (the caller then reads row by row)."""
    sizes = np.fromiter((g[1] for g in groups), np.int64, len(groups))
    n = int(sizes.sum())
    READ_STATS.rows += n
    layouts = _Layouts()
    path_parts, type_parts = [], []
    for g in groups:
        layout = layouts.path_layout(g[2], g[1])
        if layout is None:
            return None
        path_parts.append(layout)
        if not spec.one_type:
            type_parts.append(layouts.type_layout(g[3]))
    run = np.repeat(np.fromiter((g[0] for g in groups), np.int64, len(groups)), sizes)
    path = np.concatenate(path_parts)
    if spec.types is not None and spec.one_type:
        type_ = np.full(n, TYPE_CODE[spec.types[0]], np.int8)
    else:
        type_ = np.concatenate(type_parts)
    return n, layouts, run, path, type_


def _row_wise(conn: Any, spec: _Spec) -> AttrRows:
    rows = read_attr_rows(conn, spec.run_pks)
    keep = np.ones(len(rows), bool)
    if spec.paths is not None and len(rows):
        keep &= np.isin(np.asarray(rows.paths, dtype=object)[rows.path], spec.paths)
    if spec.types is not None:
        keep &= np.isin(rows.type, [TYPE_CODE[t] for t in spec.types])
    if spec.skip_empty:
        keep &= rows.count != 0
    return rows.take(keep)
