"""``despina.query.experimental``: tables across every project of the store
(mirrors ``neptune_query.experimental``; spec/query-api.md §8.9).

No type inference: every filter attribute and ``sort_by`` must carry a type. Rows are sorted
across projects and indexed by ``(project, label)``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from despina.query import frames
from despina.query.api import open_snapshot
from despina.query.filters import Attribute, BaseAttributeFilter, Filter
from despina.query.resolve import (
    EXPERIMENTS,
    RUNS,
    Kind,
    ensure_types_provided,
    resolve_attributes,
    resolve_containers,
    resolve_sort_by,
    restrict_types,
    validate_limit,
    validate_sort_direction,
)
from despina.query.service import Column, Container, TableData
from despina.query.warnings import ExperimentalWarning, emit

__all__ = ["fetch_experiments_table_global", "fetch_runs_table_global"]

_DEFAULT_SORT = Attribute("sys/creation_time", type="datetime")


def fetch_experiments_table_global(
    *,
    experiments: str | list[str] | Filter | None = None,
    attributes: str | list[str] | BaseAttributeFilter = [],  # noqa: B006 (as neptune)
    sort_by: Attribute = _DEFAULT_SORT,
    sort_direction: Literal["asc", "desc"] = "desc",
    limit: int | None = None,
    type_suffix_in_column_names: bool = False,
) -> pd.DataFrame:
    """The experiments table over every project, indexed by ``(project, experiment)``.

    Raises:
        NeptuneUserError: ``sort_by`` has no type.
        AttributeTypeInferenceError: a filter attribute has no type.
    """
    _warn("fetch_experiments_table_global")
    return _global_table(
        experiments,
        attributes,
        sort_by,
        sort_direction,
        limit,
        type_suffix_in_column_names,
        EXPERIMENTS,
    )


def fetch_runs_table_global(
    *,
    runs: str | list[str] | Filter | None = None,
    attributes: str | list[str] | BaseAttributeFilter = [],  # noqa: B006 (as neptune)
    sort_by: Attribute = _DEFAULT_SORT,
    sort_direction: Literal["asc", "desc"] = "desc",
    limit: int | None = None,
    type_suffix_in_column_names: bool = False,
) -> pd.DataFrame:
    """The runs table over every project, indexed by ``(project, run)``."""
    _warn("fetch_runs_table_global")
    return _global_table(
        runs, attributes, sort_by, sort_direction, limit, type_suffix_in_column_names, RUNS
    )


def _warn(name: str) -> None:
    emit(
        ExperimentalWarning(
            f"`despina.query.experimental.{name}` is experimental and might change or be "
            "removed in a future minor release. Use with caution in production code."
        ),
        stacklevel=4,
    )


def _global_table(
    containers: Any,
    attributes: Any,
    sort_by: Any,
    sort_direction: Any,
    limit: Any,
    type_suffix: bool,
    kind: Kind,
) -> pd.DataFrame:
    filter_ = resolve_containers(containers, kind)
    selector = restrict_types(resolve_attributes(attributes), None)
    sort_attribute = resolve_sort_by(sort_by)
    validate_limit(limit)
    direction = validate_sort_direction(sort_direction)
    ensure_types_provided(filter_, sort_attribute)
    from despina.query.api import query_service

    projects = query_service().projects()
    found: list[Container] = []
    for project in projects:
        with open_snapshot(project) as snap:
            found.extend(
                snap.search(
                    kind=kind.name, nql=filter_, sort_by=sort_attribute, direction=direction
                )
            )
    found.sort(key=lambda c: (c.creation_ms, c.project, c.pk))
    found.sort(
        key=lambda c: c.sort_key if c.sort_key is not None else 0, reverse=direction == "desc"
    )
    ordered = [c for c in found if c.sort_key is not None] + [
        c for c in found if c.sort_key is None
    ]
    if limit is not None:
        ordered = ordered[:limit]
    columns: dict[tuple[str, str], list[tuple[Column, np.ndarray]]] = {}
    for project in dict.fromkeys(c.project for c in ordered):
        positions = np.array([i for i, c in enumerate(ordered) if c.project == project], np.int64)
        with open_snapshot(project) as snap:
            data = snap.table([ordered[int(i)] for i in positions], selector)
        for column in data.columns:
            columns.setdefault((column.path, column.type), []).append((column, positions))
    merged = [_merge(path, type_, parts) for (path, type_), parts in columns.items()]
    return frames.table_frame(
        TableData(ordered, merged), kind=kind.name, type_suffix=type_suffix, global_=True
    )


def _merge(path: str, type_: str, parts: list[tuple[Column, np.ndarray]]) -> Column:
    rows = np.concatenate([positions[c.rows] for c, positions in parts])
    values = np.concatenate([c.values for c, _ in parts])
    steps = None
    if any(c.steps is not None for c, _ in parts):
        steps = np.concatenate(
            [c.steps if c.steps is not None else np.full(len(c.rows), np.nan) for c, _ in parts]
        )
    return Column(path, type_, rows, values, steps)
