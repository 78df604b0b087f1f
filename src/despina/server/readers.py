"""Reads behind the retrieval endpoints: runs, attributes, series and buckets, in batches.

The retrieval endpoints ask for thousands of runs × attributes per request, so everything here
works on batches: run identifiers are resolved with one query per project, attribute rows with
one query per few hundred runs, and float-series chunks with one range-join per batch. Every
function takes an open connection, so a request reads one consistent snapshot.

Semantics follow ``spec/query-api.md`` (lineage §10, previews §11, buckets §13) and
``spec/wire-protocol.md`` §6. This module is the server's own read layer until the shared query
service (``despina.query``) offers batch reads of the same shapes.
"""

from __future__ import annotations

import math
import re
import sqlite3
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from despina.store.access import ProjectInfo
from despina.store.codec import decode_floats, decode_ints
from despina.store.schema import CHUNK_BITS, SERIES_TYPES
from despina.store.series import LineageLink
from despina.store.sysattrs import SYS_COLUMNS

__all__ = [
    "LINEAGE_EXPERIMENT",
    "LINEAGE_FULL",
    "LINEAGE_OWN",
    "AttrValue",
    "FlatSeries",
    "FloatSeries",
    "RunRef",
    "Sort",
    "attribute_values",
    "definitions",
    "float_series_batch",
    "float_series_flat",
    "lineage_links",
    "parse_run_identifier",
    "point_series",
    "resolve_runs",
    "search_runs",
    "step_bound",
]

T = TypeVar("T")

MICRO = 1_000_000
BATCH = 400
"""Values bound per ``IN (...)`` list."""

LINEAGE_FULL = "full"
LINEAGE_EXPERIMENT = "experiment"
LINEAGE_OWN = "own"

Int64s = npt.NDArray[np.int64]
Float64s = npt.NDArray[np.float64]

_DOUBLE = struct.Struct("<d")


def _chunks(items: Sequence[T], size: int = BATCH) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def step_bound(step: float, *, lower: bool, strict: bool = False) -> int:
    """The micro-step bound of a float step: ``>= step`` (lower) or ``<= step`` (upper).

    Steps returned to clients are ``micro / 1e6``; a float within 1e-3 micro-steps of an
    integer micro-step is taken as that micro-step, so bounds round-trip exactly. ``strict``
    excludes the step itself.
    """
    scaled = step * MICRO
    if not math.isfinite(scaled):
        return -(2**62) if (scaled < 0) else 2**62
    nearest = round(scaled)
    if abs(scaled - nearest) < 1e-3:
        bound = int(nearest)
        if strict:
            bound += 1 if lower else -1
        return bound
    return math.ceil(scaled) if lower else math.floor(scaled)


# -- runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRef:
    """A run as the retrieval endpoints name it."""

    pk: int
    project: ProjectInfo
    run_id: str
    sys_id: str
    uuid: str
    experiment_name: str | None


_RUN_COLUMNS = (
    f"r.id, r.run_id, {SYS_COLUMNS['sys/id'].sql}, r.uuid, r.experiment_name, r.project_id"
)
_RUNS_FROM = "runs r JOIN projects p ON p.id = r.project_id"


def parse_run_identifier(identifier: str) -> tuple[str, str, bool] | None:
    """``(project, id, is_custom)`` of ``ws/p/<sys id>`` or ``CUSTOM/ws/p/<run id>``.

    None when the identifier has neither form.
    """
    custom = identifier.startswith("CUSTOM/")
    rest = identifier[len("CUSTOM/") :] if custom else identifier
    parts = rest.split("/", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return f"{parts[0]}/{parts[1]}", parts[2], custom


def resolve_runs(
    conn: sqlite3.Connection,
    identifiers: Iterable[str],
    projects: dict[str, ProjectInfo],
) -> dict[str, RunRef]:
    """Runs named by identifiers of the projects in ``projects``; unknown ones are left out."""
    by_project: dict[str, tuple[dict[int, list[str]], dict[str, list[str]]]] = {}
    for identifier in set(identifiers):
        parsed = parse_run_identifier(identifier)
        if parsed is None or parsed[0] not in projects:
            continue
        project, key, custom = parsed
        shorts, customs = by_project.setdefault(project, ({}, {}))
        if custom:
            customs.setdefault(key, []).append(identifier)
        else:
            prefix, _, number = key.rpartition("-")
            if prefix == projects[project].project_key and number.isdigit():
                shorts.setdefault(int(number), []).append(identifier)
    found: dict[str, RunRef] = {}
    for project, (shorts, customs) in by_project.items():
        info = projects[project]
        for column, wanted in (("short_no", shorts), ("run_id", customs)):
            keys = list(wanted)
            for part in _chunks(keys):
                rows = conn.execute(
                    f"SELECT {_RUN_COLUMNS}, r.short_no FROM {_RUNS_FROM} WHERE r.project_id = ? "
                    f"AND r.kind = 'run' AND r.{column} IN ({_marks(len(part))})",
                    (info.id, *part),
                )
                for pk, run_id, sys_id, uuid, experiment, _, short_no in rows:
                    ref = RunRef(pk, info, run_id, sys_id, uuid, experiment)
                    for identifier in wanted[short_no if column == "short_no" else run_id]:
                        found[identifier] = ref
    return found


@dataclass(frozen=True, slots=True)
class Sort:
    """``sorting`` of a search: attribute, wire type, aggregate and direction."""

    name: str = "sys/creation_time"
    type: str | None = "datetime"
    aggregation: str = "last"
    descending: bool = True


_NUMERIC_TYPES = ("float", "int", "bool", "datetime")
_SORT_AGGREGATES = {
    "last": "a.num",
    "min": "a.fmin",
    "max": "a.fmax",
    "average": "(a.fsum / a.fcount)",
    "variance": "MAX(0.0, a.fsumsq / a.fcount - (a.fsum / a.fcount) * (a.fsum / a.fcount))",
}


def _sort_sql(sort: Sort) -> tuple[str, str, list[object]]:
    """(join, key expression, parameters) ordering runs by ``sort``."""
    column = SYS_COLUMNS.get(sort.name)
    if column is not None:
        return "", column.sql, []
    wire = sort.type
    if wire in ("float", "int"):
        types: tuple[str, ...] = ("float", "int")
        key = "a.num"
    elif wire in ("bool", "datetime"):
        types = (wire,)
        key = "a.num"
    elif wire == "floatSeries":
        types = ("float_series",)
        key = _SORT_AGGREGATES.get(sort.aggregation, "a.num")
    elif wire in ("stringSeries",):
        types = ("string_series",)
        key = "a.text"
    elif wire == "stringSet":
        types = ("string_set",)
        key = "a.text"
    elif wire in (None, "string"):
        types = ("string",)
        key = "a.text"
    else:
        types = ()
        key = "NULL"
    if not types:
        return "", "NULL", []
    join = (
        "LEFT JOIN attributes a ON a.run_id = r.id AND a.path = ? "
        f"AND a.type IN ({', '.join(repr(t) for t in types)})"
    )
    return join, key, [sort.name]


def search_runs(
    conn: sqlite3.Connection,
    project_ids: Sequence[int],
    where: tuple[str, list[object]] | None,
    *,
    leaders_only: bool,
    sort: Sort,
    offset: int,
    limit: int,
) -> tuple[int, list[int]]:
    """``(matching count, run row ids of the page)`` ordered by ``sort``.

    Runs without the sort attribute come last in both directions; ties go by creation order.
    """
    if not project_ids:
        return 0, []
    clauses = [
        f"r.project_id IN ({_marks(len(project_ids))})",
        "r.kind = 'run'",
        "r.trashed = 0",
    ]
    params: list[object] = list(project_ids)
    if leaders_only:
        clauses.append("r.is_head = 1")
    if where is not None:
        clauses.append(f"({where[0]})")
        params.extend(where[1])
    condition = " AND ".join(clauses)
    base = "FROM runs r JOIN projects p ON p.id = r.project_id"
    (total,) = conn.execute(f"SELECT COUNT(*) {base} WHERE {condition}", params).fetchone()
    if total == 0 or limit <= 0 or offset >= total:
        return int(total), []
    join, key, join_params = _sort_sql(sort)
    direction = "DESC" if sort.descending else "ASC"
    rows = conn.execute(
        f"SELECT r.id {base} {join} WHERE {condition} "
        f"ORDER BY ({key}) IS NULL, ({key}) {direction}, r.creation_ms, r.id LIMIT ? OFFSET ?",
        [*join_params, *params, limit, offset],
    )
    return int(total), [int(row[0]) for row in rows]


def runs_by_pk(
    conn: sqlite3.Connection, pks: Sequence[int], projects: dict[int, ProjectInfo]
) -> dict[int, RunRef]:
    """Runs by row id (their projects must be in ``projects``, keyed by project id)."""
    found: dict[int, RunRef] = {}
    for part in _chunks(list(pks)):
        for pk, run_id, sys_id, uuid, experiment, project_id in conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM {_RUNS_FROM} WHERE r.id IN ({_marks(len(part))})", part
        ):
            info = projects.get(project_id)
            if info is not None:
                found[pk] = RunRef(pk, info, run_id, sys_id, uuid, experiment)
    return found


# -- attributes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttrValue:
    """One attribute of one run, as stored (sys attributes carry their value in num/text)."""

    path: str
    type: str
    num: object = None
    text: str | None = None
    count: int | None = None
    last_step: int | None = None
    fmin: float | None = None
    fmax: float | None = None
    fsum: float | None = None
    fsumsq: float | None = None
    fcount: int | None = None
    has_preview: bool = False


NamePredicate = Callable[[str], bool]


def _sys_values(
    conn: sqlite3.Connection, pks: Sequence[int], paths: Sequence[str]
) -> dict[int, list[AttrValue]]:
    out: dict[int, list[AttrValue]] = {}
    if not paths:
        return out
    columns = [SYS_COLUMNS[p] for p in paths]
    select = ", ".join(c.sql for c in columns)
    for part in _chunks(list(pks)):
        for row in conn.execute(
            f"SELECT r.id, {select} FROM runs r JOIN projects p ON p.id = r.project_id "
            f"WHERE r.id IN ({_marks(len(part))})",
            part,
        ):
            values = out.setdefault(int(row[0]), [])
            for column, value in zip(columns, row[1:], strict=True):
                if value is None:
                    continue
                if column.type == "string":
                    values.append(AttrValue(column.path, column.type, text=str(value)))
                else:
                    values.append(AttrValue(column.path, column.type, num=value))
    return out


def attribute_values(
    conn: sqlite3.Connection,
    pks: Sequence[int],
    *,
    names: Iterable[str] | None = None,
    predicate: NamePredicate | None = None,
    types: set[str] | None = None,
) -> dict[int, list[AttrValue]]:
    """Attributes of runs, sys attributes included, filtered by exact names or a predicate.

    A series without any committed point does not exist for readers.
    """
    wanted = None if names is None else set(names)

    def keep(path: str, type_: str) -> bool:
        if types is not None and type_ not in types:
            return False
        if wanted is not None and path not in wanted:
            return False
        return predicate is None or predicate(path)

    sys_paths = [c.path for c in SYS_COLUMNS.values() if keep(c.path, c.type)]
    out = _sys_values(conn, pks, sys_paths)
    columns = (
        "a.run_id, a.path, a.type, a.num, a.text, a.count, a.last_step, a.fmin, a.fmax, a.fsum, "
        "a.fsumsq, a.fcount, a.id"
    )
    exact = wanted is not None and len(wanted) <= 4 * BATCH
    for part in _chunks(list(pks)):
        if exact:
            assert wanted is not None
            rows: list[tuple[object, ...]] = []
            names_list = sorted(wanted)
            for names_part in _chunks(names_list):
                rows.extend(
                    conn.execute(
                        f"SELECT {columns} FROM attributes a WHERE a.run_id IN "
                        f"({_marks(len(part))}) AND a.path IN ({_marks(len(names_part))})",
                        (*part, *names_part),
                    )
                )
        else:
            rows = conn.execute(
                f"SELECT {columns} FROM attributes a WHERE a.run_id IN ({_marks(len(part))})",
                part,
            ).fetchall()
        float_ids: list[int] = []
        pending: list[tuple[int, tuple[object, ...]]] = []
        for row in rows:
            path, type_ = str(row[1]), str(row[2])
            if type_ in SERIES_TYPES and not row[5]:
                continue
            if not keep(path, type_):
                continue
            pending.append((int(row[0]), row))  # type: ignore[call-overload]
            if type_ == "float_series":
                float_ids.append(int(row[12]))  # type: ignore[call-overload]
        previews = _attrs_with_previews(conn, float_ids)
        for run_pk, row in pending:
            out.setdefault(run_pk, []).append(
                AttrValue(
                    str(row[1]),
                    str(row[2]),
                    row[3],
                    None if row[4] is None else str(row[4]),
                    row[5],  # type: ignore[arg-type]
                    row[6],  # type: ignore[arg-type]
                    row[7],  # type: ignore[arg-type]
                    row[8],  # type: ignore[arg-type]
                    row[9],  # type: ignore[arg-type]
                    row[10],  # type: ignore[arg-type]
                    row[11],  # type: ignore[arg-type]
                    int(row[12]) in previews,  # type: ignore[call-overload]
                )
            )
    return out


def _attrs_with_previews(conn: sqlite3.Connection, attr_ids: list[int]) -> set[int]:
    found: set[int] = set()
    for part in _chunks(attr_ids):
        found.update(
            int(row[0])
            for row in conn.execute(
                f"SELECT DISTINCT attr_id FROM previews WHERE attr_id IN ({_marks(len(part))})",
                part,
            )
        )
    return found


def definitions(
    conn: sqlite3.Connection,
    *,
    project_ids: Sequence[int] | None,
    run_pks: Sequence[int] | None,
    exact_names: list[str] | None,
    predicate: NamePredicate | None,
    types: set[str] | None,
) -> list[tuple[str, str]]:
    """Distinct ``(path, type)`` of the runs (or of every run of the projects), sorted."""
    found: set[tuple[str, str]] = set()
    scope_sql: str
    scope_params: list[object]
    scopes: list[tuple[str, list[object]]] = []
    if run_pks is not None:
        for part in _chunks(list(run_pks)):
            scopes.append((f"a.run_id IN ({_marks(len(part))})", list(part)))
    elif project_ids:
        scopes.append(
            (
                f"a.run_id IN (SELECT id FROM runs WHERE project_id IN "
                f"({_marks(len(project_ids))}) AND kind = 'run' AND trashed = 0)",
                list(project_ids),
            )
        )
    for scope_sql, scope_params in scopes:
        if exact_names is not None:
            for names_part in _chunks(exact_names):
                rows = conn.execute(
                    f"SELECT DISTINCT a.path, a.type FROM attributes a WHERE "
                    f"a.path IN ({_marks(len(names_part))}) AND {scope_sql} "
                    "AND (a.count IS NULL OR a.count > 0)",
                    (*names_part, *scope_params),
                )
                found.update((str(p), str(t)) for p, t in rows)
        else:
            rows = conn.execute(
                f"SELECT DISTINCT a.path, a.type FROM attributes a WHERE {scope_sql} "
                "AND (a.count IS NULL OR a.count > 0)",
                scope_params,
            )
            found.update((str(p), str(t)) for p, t in rows)
    # sys attributes: those with a value on at least one of the runs
    if scopes:
        for path in _present_sys(conn, project_ids, run_pks):
            found.add((path, SYS_COLUMNS[path].type))
    wanted = None if exact_names is None else set(exact_names)
    return sorted(
        (p, t)
        for p, t in found
        if (types is None or t in types)
        and (wanted is None or p in wanted)
        and (predicate is None or predicate(p))
    )


def _present_sys(
    conn: sqlite3.Connection, project_ids: Sequence[int] | None, run_pks: Sequence[int] | None
) -> set[str]:
    """The sys attributes that have a value on at least one of the runs."""
    scopes: list[tuple[str, list[object]]] = []
    if run_pks is not None:
        scopes = [(f"r.id IN ({_marks(len(p))})", list(p)) for p in _chunks(list(run_pks))]
    elif project_ids:
        scopes = [
            (
                f"r.project_id IN ({_marks(len(project_ids))}) AND r.kind = 'run' "
                "AND r.trashed = 0",
                list(project_ids),
            )
        ]
    columns = list(SYS_COLUMNS.values())
    select = ", ".join(f"MAX(({c.sql}) IS NOT NULL)" for c in columns)
    present: set[str] = set()
    for sql, params in scopes:
        row = conn.execute(f"SELECT {select} FROM {_RUNS_FROM} WHERE {sql}", params).fetchone()
        present.update(c.path for c, flag in zip(columns, row, strict=True) if flag)
    return present


# -- lineage -------------------------------------------------------------------------------------


def lineage_links(
    conn: sqlite3.Connection,
    run_pks: Iterable[int],
    mode: str,
) -> dict[int, list[LineageLink]]:
    """Per run, the runs whose points it shows (itself first), each bounded by a fork step.

    ``mode``: ``full`` (every ancestor), ``experiment`` (stop at the first ancestor of another
    experiment) or ``own`` (the run alone).
    """
    info: dict[int, tuple[int | None, int | None, str | None]] = {}
    todo = set(run_pks)
    while todo:
        part = list(todo)[: 4 * BATCH]
        todo.difference_update(part)
        for pk, parent, fork_step, experiment in conn.execute(
            "SELECT id, parent_id, fork_step, experiment_name FROM runs "
            f"WHERE id IN ({_marks(len(part))})",
            part,
        ):
            info[pk] = (parent, fork_step, experiment)
            if mode != LINEAGE_OWN and parent is not None and parent not in info:
                todo.add(parent)
    out: dict[int, list[LineageLink]] = {}
    for pk in run_pks:
        if pk not in info:
            continue
        own_experiment = info[pk][2]
        links: list[LineageLink] = []
        current: int | None = pk
        upper: int | None = None
        seen: set[int] = set()
        while current is not None and current in info and current not in seen:
            seen.add(current)
            parent, fork_step, experiment = info[current]
            if links and mode == LINEAGE_EXPERIMENT and experiment != own_experiment:
                break
            links.append(LineageLink(current, experiment, upper))
            if mode == LINEAGE_OWN:
                break
            current, upper = parent, fork_step
        out[pk] = links
    return out


# -- float series --------------------------------------------------------------------------------


@dataclass(slots=True)
class FloatSeries:
    """Points of one float series in ascending step order (previews last)."""

    steps: Int64s
    values: Float64s
    timestamps: Int64s
    preview: npt.NDArray[np.bool_] | None = None
    completion: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def take(self, index: slice | npt.NDArray[np.intp]) -> FloatSeries:
        return FloatSeries(
            self.steps[index],
            self.values[index],
            self.timestamps[index],
            None if self.preview is None else self.preview[index],
            None if self.completion is None else self.completion[index],
        )


_EMPTY = FloatSeries(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))


def _attribute_ids(
    conn: sqlite3.Connection, pairs: set[tuple[int, str]], type_: str
) -> dict[tuple[int, str], int]:
    """Attribute ids of ``(run pk, path)`` pairs of one type."""
    runs = sorted({pk for pk, _ in pairs})
    paths = sorted({path for _, path in pairs})
    found: dict[tuple[int, str], int] = {}
    for run_part in _chunks(runs):
        for path_part in _chunks(paths):
            for attr_id, run_pk, path in conn.execute(
                f"SELECT id, run_id, path FROM attributes WHERE run_id IN "
                f"({_marks(len(run_part))}) AND path IN ({_marks(len(path_part))}) AND type = ?",
                (*run_part, *path_part, type_),
            ):
                key = (run_pk, path)
                if key in pairs:
                    found[key] = attr_id
    return found


def _chunk_ranges(attr_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Chunk row-id ranges covering the series ``attr_ids``, in order, with consecutive ids
    merged into one range (the series of a run are usually numbered consecutively, so a
    request for thousands of them scans a handful of ranges)."""
    ranges: list[tuple[int, int]] = []
    start = end = -2
    for attr_id in sorted(attr_ids):
        if attr_id == end + 1:
            end = attr_id
            continue
        if start >= 0:
            ranges.append((start << CHUNK_BITS, ((end + 1) << CHUNK_BITS) - 1))
        start = end = attr_id
    if start >= 0:
        ranges.append((start << CHUNK_BITS, ((end + 1) << CHUNK_BITS) - 1))
    return ranges


def _read_chunks(
    conn: sqlite3.Connection, attr_ids: Sequence[int], lo: int, hi: int
) -> dict[int, list[tuple[int, int, Int64s | int, Float64s | float, Int64s | int]]]:
    """Chunks of many series within ``[lo, hi]``: per attribute id, ``(first, last, steps,
    values, timestamps)`` in order; single-point chunks come back as scalars."""
    out: dict[int, list[tuple[int, int, Int64s | int, Float64s | float, Int64s | int]]] = {}
    for part in _chunks(_chunk_ranges(attr_ids), 200):
        values_sql = ", ".join("(?, ?)" for _ in part)
        params = [bound for pair in part for bound in pair]
        rows = conn.execute(
            f"WITH w(lo, hi) AS (VALUES {values_sql}) "
            "SELECT c.id, c.n, c.step_first, c.step_last, c.ts_first, c.steps, c.vals, c.ts "
            "FROM w JOIN chunks c ON c.id BETWEEN w.lo AND w.hi "
            "WHERE c.step_last >= ? AND c.step_first <= ? ORDER BY c.id",
            (*params, lo, hi),
        )
        for chunk_id, n, first, last, ts_first, steps, vals, ts in rows:
            attr_id = chunk_id >> CHUNK_BITS
            if n == 1:
                entry = (first, last, first, _DOUBLE.unpack_from(vals)[0], ts_first)
            else:
                entry = (
                    first,
                    last,
                    decode_ints(steps, n),
                    decode_floats(vals, n),
                    decode_ints(ts, n),
                )
            out.setdefault(attr_id, []).append(entry)
    return out


@dataclass(slots=True)
class _Chunks:
    """Chunks of many series: single-point chunks as parallel lists, the rest per attribute."""

    single_attr: list[int]
    single_step: list[int]
    single_ts: list[int]
    single_vals: list[bytes]
    multi: dict[int, list[tuple[int, int, Int64s | int, Float64s | float, Int64s | int]]]


def _read_chunks_split(
    conn: sqlite3.Connection, attr_ids: Sequence[int], lo: int, hi: int
) -> _Chunks:
    """Like :func:`_read_chunks`, keeping single-point chunks of single-chunk series apart."""
    result = _Chunks([], [], [], [], {})
    rows: list[tuple[Any, ...]] = []
    for part in _chunks(_chunk_ranges(attr_ids), 200):
        values_sql = ", ".join("(?, ?)" for _ in part)
        params = [bound for pair in part for bound in pair]
        rows.extend(
            conn.execute(
                f"WITH w(lo, hi) AS (VALUES {values_sql}) "
                "SELECT c.id >> ?, c.n, c.step_first, c.step_last, c.ts_first, "
                "CASE WHEN c.n > 1 THEN c.steps END, c.vals, CASE WHEN c.n > 1 THEN c.ts END "
                "FROM w JOIN chunks c ON c.id BETWEEN w.lo AND w.hi "
                "WHERE c.step_last >= ? AND c.step_first <= ? ORDER BY c.id",
                (*params, CHUNK_BITS, lo, hi),
            )
        )
    if not rows:
        return result
    attrs = [row[0] for row in rows]
    counts: dict[int, int] = {}
    for attr_id in attrs:
        counts[attr_id] = counts.get(attr_id, 0) + 1
    for attr_id, n, first, last, ts_first, steps, vals, ts in rows:
        if n == 1 and counts[attr_id] == 1:
            result.single_attr.append(attr_id)
            result.single_step.append(first)
            result.single_ts.append(ts_first)
            result.single_vals.append(vals)
        elif n == 1:
            result.multi.setdefault(attr_id, []).append(
                (first, last, first, _DOUBLE.unpack_from(vals)[0], ts_first)
            )
        else:
            result.multi.setdefault(attr_id, []).append(
                (first, last, decode_ints(steps, n), decode_floats(vals, n), decode_ints(ts, n))
            )
    return result


def _assemble(
    chunks: list[tuple[int, int, Int64s | int, Float64s | float, Int64s | int]],
    lo: int,
    hi: int,
) -> FloatSeries:
    if len(chunks) == 1 and isinstance(chunks[0][2], int):
        first, _, step, value, stamp = chunks[0]
        if lo <= first <= hi:
            return FloatSeries(
                np.array([step], np.int64),
                np.array([value], np.float64),
                np.array([stamp], np.int64),
            )
        return _EMPTY
    steps_parts: list[Int64s] = []
    values_parts: list[Float64s] = []
    ts_parts: list[Int64s] = []
    for first, last, steps, values, stamps in chunks:
        if isinstance(steps, int):
            if lo <= steps <= hi:
                steps_parts.append(np.array([steps], np.int64))
                values_parts.append(np.array([values], np.float64))
                ts_parts.append(np.array([stamps], np.int64))
            continue
        assert not isinstance(values, float) and not isinstance(stamps, int)
        if first < lo or last > hi:
            keep = (steps >= lo) & (steps <= hi)
            steps, values, stamps = steps[keep], values[keep], stamps[keep]
        steps_parts.append(steps)
        values_parts.append(values)
        ts_parts.append(stamps)
    if not steps_parts:
        return _EMPTY
    if len(steps_parts) == 1:
        return FloatSeries(steps_parts[0], values_parts[0], ts_parts[0])
    return FloatSeries(
        np.concatenate(steps_parts), np.concatenate(values_parts), np.concatenate(ts_parts)
    )


def _previews(
    conn: sqlite3.Connection, attr_ids: Sequence[int], lo: int, hi: int
) -> dict[int, list[tuple[int, int, float | None, float]]]:
    out: dict[int, list[tuple[int, int, float | None, float]]] = {}
    for part in _chunks(list(attr_ids)):
        for attr_id, step, ts, value, completion in conn.execute(
            "SELECT attr_id, step, ts, value, completion FROM previews WHERE attr_id IN "
            f"({_marks(len(part))}) AND step BETWEEN ? AND ? ORDER BY attr_id, step",
            (*part, lo, hi),
        ):
            out.setdefault(int(attr_id), []).append((step, ts, value, completion))
    return out


def float_series_batch(
    conn: sqlite3.Connection,
    wanted: Sequence[tuple[int, str, str, bool]],
    lo: int,
    hi: int,
) -> list[FloatSeries | None]:
    """Points of many float series ``(run pk, path, lineage mode, include previews)``.

    Steps are in micro-steps, within ``[lo, hi]``. None marks a series that does not exist for
    the run (not even through its lineage).
    """
    modes: dict[str, set[int]] = {}
    for pk, _, mode, _ in wanted:
        modes.setdefault(mode, set()).add(pk)
    links_by_mode = {mode: lineage_links(conn, pks, mode) for mode, pks in modes.items()}
    pairs: set[tuple[int, str]] = set()
    for pk, path, mode, _ in wanted:
        for link in links_by_mode[mode].get(pk, []):
            pairs.add((link.run_pk, path))
    ids = _attribute_ids(conn, pairs, "float_series")
    chunks = _read_chunks(conn, sorted(set(ids.values())), lo, hi)
    preview_ids = sorted({ids[(pk, path)] for pk, path, _, p in wanted if p and (pk, path) in ids})
    previews = _previews(conn, preview_ids, lo, hi) if preview_ids else {}
    out: list[FloatSeries | None] = []
    for pk, path, mode, with_previews in wanted:
        links = links_by_mode[mode].get(pk, [])
        parts: list[FloatSeries] = []
        exists = False
        for link in reversed(links):  # ancestors hold the earlier steps
            attr_id = ids.get((link.run_pk, path))
            if attr_id is None:
                continue
            exists = True
            upper = hi if link.upper_step is None else min(hi, link.upper_step)
            found = chunks.get(attr_id)
            if found and upper >= lo:
                series = _assemble(found, lo, upper)
                if len(series):
                    parts.append(series)
        if not exists:
            out.append(None)
            continue
        own_id = ids.get((pk, path))
        extra = previews.get(own_id) if (with_previews and own_id is not None) else None
        if len(parts) == 1 and not extra:
            result = parts[0]
        elif not parts and not extra:
            result = _EMPTY
        else:
            result = FloatSeries(
                np.concatenate([p.steps for p in parts]) if parts else np.empty(0, np.int64),
                np.concatenate([p.values for p in parts]) if parts else np.empty(0, np.float64),
                np.concatenate([p.timestamps for p in parts]) if parts else np.empty(0, np.int64),
            )
        if with_previews:
            committed = len(result)
            preview = np.zeros(committed + len(extra or ()), np.bool_)
            completion = np.ones(committed + len(extra or ()), np.float32)
            if extra:
                last_committed = int(result.steps[-1]) if committed else -1
                extra = [p for p in extra if p[0] > last_committed]
                preview = preview[: committed + len(extra)]
                completion = completion[: committed + len(extra)]
                result = FloatSeries(
                    np.concatenate([result.steps, np.array([p[0] for p in extra], np.int64)]),
                    np.concatenate(
                        [
                            result.values,
                            np.array(
                                [math.nan if p[2] is None else p[2] for p in extra], np.float64
                            ),
                        ]
                    ),
                    np.concatenate([result.timestamps, np.array([p[1] for p in extra], np.int64)]),
                )
                preview[committed:] = True
                completion[committed:] = [p[3] for p in extra]
            result.preview = preview
            result.completion = completion
        out.append(result)
    return out


@dataclass(slots=True)
class FlatSeries:
    """Points of many float series in one set of arrays: series ``i`` holds the points
    ``[starts[i], starts[i] + counts[i])``; ``exists[i]`` is false for a missing series."""

    steps: Int64s
    values: Float64s
    timestamps: Int64s
    preview: npt.NDArray[np.bool_] | None
    completion: npt.NDArray[np.float32] | None
    starts: Int64s
    counts: Int64s
    exists: npt.NDArray[np.bool_]

    def series(self, i: int) -> FloatSeries:
        a, n = int(self.starts[i]), int(self.counts[i])
        return FloatSeries(
            self.steps[a : a + n],
            self.values[a : a + n],
            self.timestamps[a : a + n],
            None if self.preview is None else self.preview[a : a + n],
            None if self.completion is None else self.completion[a : a + n],
        )

    @staticmethod
    def of(series: Sequence[FloatSeries | None]) -> FlatSeries:
        present = [s for s in series if s is not None]
        counts = np.array([0 if s is None else len(s) for s in series], np.int64)
        starts = np.zeros(len(series), np.int64)
        if len(series):
            starts[1:] = np.cumsum(counts)[:-1]
        with_preview = any(s.preview is not None for s in present)

        def cat(arrays: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
            return np.concatenate(arrays) if arrays else np.empty(0, dtype)

        return FlatSeries(
            cat([s.steps for s in present], np.int64),
            cat([s.values for s in present], np.float64),
            cat([s.timestamps for s in present], np.int64),
            cat(
                [
                    s.preview if s.preview is not None else np.zeros(len(s), np.bool_)
                    for s in present
                ],
                np.bool_,
            )
            if with_preview
            else None,
            cat(
                [
                    s.completion if s.completion is not None else np.ones(len(s), np.float32)
                    for s in present
                ],
                np.float32,
            )
            if with_preview
            else None,
            starts,
            counts,
            np.array([s is not None for s in series], np.bool_),
        )


def float_series_flat(
    conn: sqlite3.Connection,
    wanted: Sequence[tuple[int, str, str, bool]],
    lo: int,
    hi: int,
) -> FlatSeries:
    """:func:`float_series_batch` as flat arrays, with a fast path for many small series.

    The fast path (no previews, no run of the request has inherited points) reads every
    single-point chunk of the request without a NumPy call per series: thousands of one-step
    series (a sweep of many runs) cost microseconds each.
    """
    fast = not any(preview for *_, preview in wanted)
    if fast:
        modes: dict[str, set[int]] = {}
        for pk, _, mode, _ in wanted:
            modes.setdefault(mode, set()).add(pk)
        for mode, pks in modes.items():
            if mode != LINEAGE_OWN and any(
                len(links) > 1 for links in lineage_links(conn, pks, mode).values()
            ):
                fast = False
                break
    if not fast:
        return FlatSeries.of(float_series_batch(conn, wanted, lo, hi))
    pairs = {(pk, path) for pk, path, _, _ in wanted}
    ids = _attribute_ids(conn, pairs, "float_series")
    chunks = _read_chunks_split(conn, sorted(set(ids.values())), lo, hi)
    single_at = dict(zip(chunks.single_attr, range(len(chunks.single_attr)), strict=True))
    n = len(wanted)
    exists = np.zeros(n, np.bool_)
    counts = np.zeros(n, np.int64)
    picks: list[int] = []
    arrays: dict[int, FloatSeries] = {}
    for i, (pk, path, _, _) in enumerate(wanted):
        attr_id = ids.get((pk, path))
        if attr_id is None:
            continue
        exists[i] = True
        at = single_at.get(attr_id)
        if at is not None:
            counts[i] = 1
            picks.append(at)
            continue
        found = chunks.multi.get(attr_id)
        if found:
            series = _assemble(found, lo, hi)
            counts[i] = len(series)
            arrays[i] = series
    index = np.asarray(picks, dtype=np.int64)
    scalar_steps = np.asarray(chunks.single_step, dtype=np.int64)[index]
    scalar_ts = np.asarray(chunks.single_ts, dtype=np.int64)[index]
    scalar_values = (
        np.frombuffer(b"".join(chunks.single_vals), dtype="<f8").astype(np.float64)[index]
        if chunks.single_vals
        else np.empty(0, np.float64)
    )
    starts = np.zeros(n, np.int64)
    if n:
        starts[1:] = np.cumsum(counts)[:-1]
    if not arrays:
        return FlatSeries(
            scalar_steps, scalar_values, scalar_ts, None, None, starts, counts, exists
        )
    series_list: list[FloatSeries | None] = []
    k = 0
    for i in range(n):
        if not exists[i]:
            series_list.append(None)
        elif i in arrays:
            series_list.append(arrays[i])
        elif counts[i]:
            series_list.append(
                FloatSeries(scalar_steps[k : k + 1], scalar_values[k : k + 1], scalar_ts[k : k + 1])
            )
            k += 1
        else:
            series_list.append(_EMPTY)
    return FlatSeries.of(series_list)


# -- string, histogram and file series -----------------------------------------------------------

POINT_SERIES_TYPES = ("string_series", "histogram_series", "file_series")


def point_series(
    conn: sqlite3.Connection,
    links: list[LineageLink],
    path: str,
    lo: int,
    hi: int,
    *,
    descending: bool,
    limit: int,
) -> tuple[str, list[tuple[int, int, str]]] | None:
    """``(type, [(step, ts, value)])`` of a string/histogram/file series, up to ``limit`` points
    in the requested order; None when the series does not exist for the run."""
    if not links:
        return None
    type_: str | None = None
    ids: list[tuple[LineageLink, int]] = []
    marks = _marks(len(POINT_SERIES_TYPES))
    for link in links:
        row = conn.execute(
            f"SELECT id, type FROM attributes WHERE run_id = ? AND path = ? AND type IN ({marks})",
            (link.run_pk, path, *POINT_SERIES_TYPES),
        ).fetchone()
        if row is None:
            continue
        if type_ is None:
            type_ = str(row[1])
        if str(row[1]) == type_:
            ids.append((link, int(row[0])))
    if type_ is None:
        return None
    order = "DESC" if descending else "ASC"
    out: list[tuple[int, int, str]] = []
    # links run child → root: descending order reads the child first
    sequence = ids if descending else list(reversed(ids))
    for link, attr_id in sequence:
        if len(out) >= limit:
            break
        upper = hi if link.upper_step is None else min(hi, link.upper_step)
        if upper < lo:
            continue
        out.extend(
            conn.execute(
                f"SELECT step, ts, value FROM points WHERE attr_id = ? AND step BETWEEN ? AND ? "
                f"ORDER BY step {order} LIMIT ?",
                (attr_id, lo, upper, limit - len(out)),
            )
        )
    return type_, out


def literal_names(patterns: Sequence[str]) -> list[str] | None:
    """The exact names a list of regexes accepts, when each is ``^name$`` or ``^(a|b)$`` with
    only escaped or plain characters (how neptune-query sends exact names); else None."""
    if len(patterns) != 1:
        return None
    pattern = patterns[0]
    if not (pattern.startswith("^") and pattern.endswith("$")) or pattern.endswith("\\$"):
        return None
    body = pattern[1:-1]
    if body.startswith("(") and body.endswith(")") and not body.endswith("\\)"):
        body = body[1:-1]
    names: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum():
                return None  # \d, \w, … are classes, not literals
            current.append(body[i + 1])
            i += 2
            continue
        if ch == "|":
            names.append("".join(current))
            current = []
        elif ch in ".^$*+?()[]{}":
            return None
        else:
            current.append(ch)
        i += 1
    names.append("".join(current))
    return names


def compile_name_filter(alternatives: list[tuple[list[str], list[str]]]) -> NamePredicate:
    """A predicate for ``mustMatchAny``: some alternative has all its must-match regexes
    matching and none of its must-not-match regexes (unanchored search).

    Raises:
        re.error: a regex does not compile.
    """
    compiled = [
        ([re.compile(p) for p in must], [re.compile(p) for p in must_not])
        for must, must_not in alternatives
    ]

    def predicate(name: str) -> bool:
        return any(
            all(r.search(name) for r in must) and not any(r.search(name) for r in must_not)
            for must, must_not in compiled
        )

    return predicate
