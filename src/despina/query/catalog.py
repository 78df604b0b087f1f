"""Runs across projects for the query service's batch API: identifiers, search, name filters.

The server's retrieval endpoints name runs by ``ws/p/<sys id>`` or ``CUSTOM/ws/p/<run id>``
and search several projects at once; every function takes an open connection, so a request
reads one consistent snapshot. Search semantics: spec/query-api.md §4 (sorting, NQL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from despina.query.lineage import in_chunks, marks
from despina.store.access import ProjectInfo
from despina.store.sysattrs import SYS_COLUMNS
from despina.userregex import compile_user_regex

__all__ = [
    "NamePredicate",
    "RunRef",
    "Sort",
    "compile_name_filter",
    "literal_names",
    "parse_run_identifier",
    "resolve_runs",
    "runs_by_pk",
    "search_runs",
]

NamePredicate = Callable[[str], bool]


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
            for part in in_chunks(keys):
                rows = conn.execute(
                    f"SELECT {_RUN_COLUMNS}, r.short_no FROM {_RUNS_FROM} WHERE r.project_id = ? "
                    f"AND r.kind = 'run' AND r.{column} IN ({marks(len(part))})",
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
        f"r.project_id IN ({marks(len(project_ids))})",
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
    for part in in_chunks(list(pks)):
        for pk, run_id, sys_id, uuid, experiment, project_id in conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM {_RUNS_FROM} WHERE r.id IN ({marks(len(part))})", part
        ):
            info = projects.get(project_id)
            if info is not None:
                found[pk] = RunRef(pk, info, run_id, sys_id, uuid, experiment)
    return found


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
    matching and none of its must-not-match regexes (unanchored RE2 search: linear time, see
    ``despina.userregex``).

    Raises:
        InvalidPattern: a regex is too long or not valid RE2 syntax (the server answers 400).
    """
    compiled = [
        ([compile_user_regex(p) for p in must], [compile_user_regex(p) for p in must_not])
        for must, must_not in alternatives
    ]

    def predicate(name: str) -> bool:
        return any(
            all(r.search(name) for r in must) and not any(r.search(name) for r in must_not)
            for must, must_not in compiled
        )

    return predicate
