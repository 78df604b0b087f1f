"""``despina.query.runs``: the query API over every run, labelled by run ID
(mirrors ``neptune_query.runs``; spec/query-api.md §1, §2.1).

``Filter.name(...)`` still targets ``sys/name`` here: it selects runs by experiment name.
``lineage_to_the_root=False`` keeps only a run's own points.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import Literal

import pandas as pd

from despina.query import api as _api
from despina.query import filters, types
from despina.query.filters import Attribute, Filter
from despina.query.resolve import RUNS as _RUNS

__all__ = [
    "download_files",
    "fetch_metrics",
    "fetch_runs_table",
    "fetch_series",
    "list_attributes",
    "list_runs",
]

_DEFAULT_SORT = Attribute("sys/creation_time", type="datetime")


def list_runs(
    *,
    project: str | None = None,
    runs: str | list[str] | Filter | None = None,
) -> list[str]:
    """IDs of the runs that match ``runs`` (a regex on the ID, exact IDs or a ``Filter``),
    sorted.

    Raises:
        NeptuneProjectNotProvided, NeptuneProjectInaccessible, ValueError: see
            ``despina.query.list_experiments``.
    """
    return _api.list_containers(project=project, containers=runs, kind=_RUNS)


def list_attributes(
    *,
    project: str | None = None,
    runs: str | list[str] | Filter | None = None,
    attributes: str | list[str] | filters.BaseAttributeFilter | None = None,
) -> list[str]:
    """Attribute names of the matched runs (every run of the project for ``runs=None``)."""
    return _api.list_attributes(project=project, containers=runs, attributes=attributes, kind=_RUNS)


def fetch_runs_table(
    *,
    project: str | None = None,
    runs: str | list[str] | Filter | None = None,
    attributes: str | list[str] | filters.BaseAttributeFilter = [],  # noqa: B006 (as neptune)
    sort_by: str | Attribute = _DEFAULT_SORT,
    sort_direction: Literal["asc", "desc"] = "desc",
    limit: int | None = None,
    type_suffix_in_column_names: bool = False,
) -> pd.DataFrame:
    """A table of runs (rows, by run ID) and attributes (columns); series show their last
    value. See ``despina.query.fetch_experiments_table``."""
    return _api.fetch_table(
        project=project,
        containers=runs,
        attributes=attributes,
        sort_by=sort_by,
        sort_direction=sort_direction,
        limit=limit,
        type_suffix_in_column_names=type_suffix_in_column_names,
        kind=_RUNS,
    )


def fetch_metrics(
    *,
    project: str | None = None,
    runs: str | list[str] | Filter,
    attributes: str | list[str] | filters.BaseAttributeFilter,
    include_time: Literal["absolute"] | None = None,
    step_range: tuple[float | None, float | None] = (None, None),
    lineage_to_the_root: bool = True,
    tail_limit: int | None = None,
    type_suffix_in_column_names: bool = False,
    include_point_previews: bool = False,
) -> pd.DataFrame:
    """Raw float-series values per (run, step); ``lineage_to_the_root=False`` keeps only each
    run's own points. See ``despina.query.fetch_metrics``."""
    return _api.fetch_metrics(
        project=project,
        containers=runs,
        attributes=attributes,
        include_time=include_time,
        step_range=step_range,
        lineage_to_the_root=lineage_to_the_root,
        tail_limit=tail_limit,
        type_suffix_in_column_names=type_suffix_in_column_names,
        include_point_previews=include_point_previews,
        kind=_RUNS,
    )


def fetch_series(
    *,
    project: str | None = None,
    runs: str | list[str] | Filter,
    attributes: str | list[str] | filters.BaseAttributeFilter,
    include_time: Literal["absolute"] | None = None,
    step_range: tuple[float | None, float | None] = (None, None),
    lineage_to_the_root: bool = True,
    tail_limit: int | None = None,
) -> pd.DataFrame:
    """String, histogram and file series values per (run, step)."""
    return _api.fetch_series(
        project=project,
        containers=runs,
        attributes=attributes,
        include_time=include_time,
        step_range=step_range,
        lineage_to_the_root=lineage_to_the_root,
        tail_limit=tail_limit,
        kind=_RUNS,
    )


def download_files(
    *,
    files: types.File | Iterable[types.File] | pd.Series | pd.DataFrame,
    destination: str | pathlib.Path | None = None,
) -> pd.DataFrame:
    """Copy files from the runs API into ``destination``; returns their paths per (run, step).

    Raises:
        NeptuneUserError: files from the experiments API were passed.
    """
    from despina.query.download import download_files as _download

    return _download(files=files, destination=destination, kind=_RUNS)
