"""Runs across projects for the query service's batch API: identifiers, search, name filters.

The server's retrieval endpoints name runs by ``ws/p/<sys id>`` or ``CUSTOM/ws/p/<run id>``
and search several projects at once; every function takes an open connection, so a request
reads one consistent snapshot. Search semantics: spec/query-api.md §4 (sorting, NQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from despina.store.access import ProjectInfo
from despina.store.sql import table_reads
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
    conn: Any,
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
        for row in table_reads.runs_by_keys(conn, info.id, "short_no", list(shorts)):
            ref = RunRef(row.pk, info, row.run_id, row.sys_id, row.uuid, row.experiment_name)
            for identifier in shorts[row.short_no]:
                found[identifier] = ref
        for row in table_reads.runs_by_keys(conn, info.id, "run_id", list(customs)):
            ref = RunRef(row.pk, info, row.run_id, row.sys_id, row.uuid, row.experiment_name)
            for identifier in customs[row.run_id]:
                found[identifier] = ref
    return found


@dataclass(frozen=True, slots=True)
class Sort:
    """``sorting`` of a search: attribute, wire type, aggregate and direction."""

    name: str = "sys/creation_time"
    type: str | None = "datetime"
    aggregation: str = "last"
    descending: bool = True


def search_runs(
    conn: Any,
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
    return table_reads.search_run_page(
        conn,
        project_ids,
        where,
        leaders_only=leaders_only,
        sort_name=sort.name,
        sort_type=sort.type,
        aggregation=sort.aggregation,
        descending=sort.descending,
        offset=offset,
        limit=limit,
    )


def runs_by_pk(
    conn: Any, pks: Sequence[int], projects: dict[int, ProjectInfo]
) -> dict[int, RunRef]:
    """Runs by row id (their projects must be in ``projects``, keyed by project id)."""
    found: dict[int, RunRef] = {}
    for row in table_reads.runs_by_pks(conn, list(pks)):
        info = projects.get(row.project_id)
        if info is not None:
            found[row.pk] = RunRef(
                row.pk, info, row.run_id, row.sys_id, row.uuid, row.experiment_name
            )
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
