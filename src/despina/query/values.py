"""Attribute values and definitions of many runs for the query service's batch API.

Values come back per run as :class:`AttrValue` (``sys/`` attributes included, read from the
``runs`` row); a series without any committed point does not exist for readers.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from despina.query.catalog import NamePredicate
from despina.query.float_batch import attrs_with_previews
from despina.store.schema import SERIES_TYPES
from despina.store.sql import attribute_reads
from despina.store.sql.attribute_reads import present_sys
from despina.store.sysattrs import SYS_COLUMNS

__all__ = [
    "AttrValue",
    "attribute_values",
    "definitions",
    "present_sys",
    "sys_rows",
    "sys_values",
]

_EXACT_NAMES_LIMIT = 1600
"""Up to this many exact names, a read names them to the store; past it, it reads every row of
its runs and filters here."""


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


def sys_rows(conn: Any, pks: Sequence[int], paths: Sequence[str]) -> dict[int, tuple[object, ...]]:
    """Per run row id, the values of the ``sys/`` attributes ``paths`` (None: no value)."""
    return attribute_reads.sys_attribute_rows(conn, pks, paths)


def sys_values(conn: Any, pks: Sequence[int], paths: Sequence[str]) -> dict[int, list[AttrValue]]:
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
    conn: Any,
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
    exact = wanted is not None and len(wanted) <= _EXACT_NAMES_LIMIT
    paths = sorted(wanted) if exact and wanted is not None else None
    rows = attribute_reads.attribute_rows(conn, pks, paths)  # no rows for no paths
    float_ids: list[int] = []
    pending: list[attribute_reads.AttributeRow] = []
    for row in rows:
        if row.type in SERIES_TYPES and not row.point_count:
            continue
        if not keep(row.path, row.type):
            continue
        pending.append(row)
        if row.type == "float_series":
            float_ids.append(row.attr_id)
    previews = attrs_with_previews(conn, float_ids)
    for row in pending:
        out.setdefault(row.run_pk, []).append(
            AttrValue(
                row.path,
                row.type,
                row.num,
                row.text,
                row.point_count,
                row.last_step,
                row.fmin,
                row.fmax,
                row.fsum,
                row.fsumsq,
                row.fcount,
                row.attr_id in previews,
            )
        )
    return out


def definitions(
    conn: Any,
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
    streams = attribute_reads.definition_streams(
        conn,
        project_ids=project_ids,
        run_pks=run_pks,
        exact_names=exact_names,
        after=after,
        ordered=limit is not None,
    )
    # sys attributes: those with a value on at least one of the runs
    if run_pks is not None or project_ids:
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
