"""Attribute values and definitions of many runs for the query service's batch API.

Values come back per run as :class:`AttrValue` (``sys/`` attributes included, read from the
``runs`` row); a series without any committed point does not exist for readers.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from despina.query.catalog import NamePredicate
from despina.query.float_batch import attrs_with_previews
from despina.query.lineage import BATCH, in_chunks, marks
from despina.store.schema import SERIES_TYPES
from despina.store.sysattrs import SYS_COLUMNS

__all__ = [
    "AttrValue",
    "attribute_values",
    "definitions",
    "present_sys",
    "sys_rows",
    "sys_values",
]

_RUNS_FROM = "runs r JOIN projects p ON p.id = r.project_id"


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


def sys_rows(
    conn: sqlite3.Connection, pks: Sequence[int], paths: Sequence[str]
) -> dict[int, tuple[object, ...]]:
    """Per run row id, the values of the ``sys/`` attributes ``paths`` (None: no value)."""
    out: dict[int, tuple[object, ...]] = {}
    if not paths:
        return out
    select = ", ".join(SYS_COLUMNS[p].sql for p in paths)
    for part in in_chunks(list(pks)):
        for row in conn.execute(
            f"SELECT r.id, {select} FROM {_RUNS_FROM} WHERE r.id IN ({marks(len(part))})", part
        ):
            out[int(row[0])] = row[1:]
    return out


def sys_values(
    conn: sqlite3.Connection, pks: Sequence[int], paths: Sequence[str]
) -> dict[int, list[AttrValue]]:
    """Per run row id, its ``sys/`` attributes among ``paths`` that have a value."""
    columns = [SYS_COLUMNS[p] for p in paths]
    out: dict[int, list[AttrValue]] = {}
    for pk, row in sys_rows(conn, pks, paths).items():
        values = out.setdefault(pk, [])
        for column, value in zip(columns, row, strict=True):
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
    out = sys_values(conn, pks, sys_paths)
    columns = (
        "a.run_id, a.path, a.type, a.num, a.text, a.count, a.last_step, a.fmin, a.fmax, a.fsum, "
        "a.fsumsq, a.fcount, a.id"
    )
    exact = wanted is not None and len(wanted) <= 4 * BATCH
    for part in in_chunks(list(pks)):
        if exact:
            assert wanted is not None
            rows: list[tuple[object, ...]] = []
            names_list = sorted(wanted)
            for names_part in in_chunks(names_list):
                rows.extend(
                    conn.execute(
                        f"SELECT {columns} FROM attributes a WHERE a.run_id IN "
                        f"({marks(len(part))}) AND a.path IN ({marks(len(names_part))})",
                        (*part, *names_part),
                    )
                )
        else:
            rows = conn.execute(
                f"SELECT {columns} FROM attributes a WHERE a.run_id IN ({marks(len(part))})",
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
        previews = attrs_with_previews(conn, float_ids)
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


def definitions(
    conn: sqlite3.Connection,
    *,
    project_ids: Sequence[int] | None,
    run_pks: Sequence[int] | None,
    exact_names: list[str] | None,
    predicate: NamePredicate | None,
    types: set[str] | None,
    after: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """Distinct ``(path, type)`` of the runs (or of every run of the projects), sorted.

    ``after`` and ``limit`` read one page: the first ``limit`` entries after ``after``
    (keyset paging). The statements then walk ``(path, type)`` in order and stop when the page
    is full, so a page costs what it returns rather than the whole list.
    """
    scopes: list[tuple[str, list[object]]] = []
    if run_pks is not None:
        for part in in_chunks(list(run_pks)):
            scopes.append((f"a.run_id IN ({marks(len(part))})", list(part)))
    elif project_ids:
        scopes.append(
            (
                f"a.run_id IN (SELECT id FROM runs WHERE project_id IN "
                f"({marks(len(project_ids))}) AND kind = 'run' AND trashed = 0)",
                list(project_ids),
            )
        )
    keyset = "" if after is None else " AND (a.path, a.type) > (?, ?)"
    keys: list[object] = [] if after is None else [after[0], after[1]]
    order = "" if limit is None else " ORDER BY a.path, a.type"
    streams: list[Iterable[tuple[str, str]]] = []
    for scope_sql, scope_params in scopes:
        name_parts: list[list[str] | None] = (
            [list(p) for p in in_chunks(exact_names)] if exact_names is not None else [None]
        )
        for names_part in name_parts:
            names_sql = "" if names_part is None else f"a.path IN ({marks(len(names_part))}) AND "
            streams.append(
                conn.execute(
                    f"SELECT DISTINCT a.path, a.type FROM attributes a WHERE {names_sql}"
                    f"{scope_sql} AND (a.count IS NULL OR a.count > 0){keyset}{order}",
                    (*(names_part or ()), *scope_params, *keys),
                )
            )
    # sys attributes: those with a value on at least one of the runs
    if scopes:
        present = sorted((p, SYS_COLUMNS[p].type) for p in present_sys(conn, project_ids, run_pks))
        streams.append([e for e in present if after is None or e > after])
    wanted = None if exact_names is None else set(exact_names)

    def keep(entry: tuple[str, str]) -> bool:
        p, t = entry
        return (
            (types is None or t in types)
            and (wanted is None or p in wanted)
            and (predicate is None or predicate(p))
        )

    if limit is None:
        found = {(str(p), str(t)) for stream in streams for p, t in stream}
        return sorted(e for e in found if keep(e))
    out: list[tuple[str, str]] = []
    previous: tuple[str, str] | None = None
    for entry in heapq.merge(*streams):
        if entry == previous:
            continue
        previous = entry
        if keep(entry):
            out.append(entry)
            if len(out) >= limit:
                break
    return out


def present_sys(
    conn: sqlite3.Connection,
    project_ids: Sequence[int] | None,
    run_pks: Sequence[int] | None,
    *,
    live_only: bool = True,
) -> set[str]:
    """The sys attributes that have a value on at least one of the runs (``run_pks``, else
    every run of the projects: with ``live_only``, only runs that are neither models nor
    trashed). One statement of ``EXISTS`` per batch: each column stops at its first hit."""
    scopes: list[tuple[str, list[object]]] = []
    if run_pks is not None:
        scopes = [(f"r.id IN ({marks(len(p))})", list(p)) for p in in_chunks(list(run_pks))]
    elif project_ids:
        live = " AND r.kind = 'run' AND r.trashed = 0" if live_only else ""
        scopes = [(f"r.project_id IN ({marks(len(project_ids))}){live}", list(project_ids))]
    columns = list(SYS_COLUMNS.values())
    present: set[str] = set()
    for sql, params in scopes:
        select = ", ".join(
            f"EXISTS (SELECT 1 FROM {_RUNS_FROM} WHERE {sql} AND ({c.sql}) IS NOT NULL)"
            for c in columns
        )
        row = conn.execute(f"SELECT {select}", params * len(columns)).fetchone()
        present.update(c.path for c, flag in zip(columns, row, strict=True) if flag)
    return present
