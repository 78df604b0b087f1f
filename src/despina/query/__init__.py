"""``despina.query``: the ``neptune_query`` API over despina's store, as pandas DataFrames.

``import despina.query as nq`` is a drop-in for ``import neptune_query as nq``: the same calls
return equal frames (spec/query-api.md). Experiments are labelled by name and read through
their head runs; ``despina.query.runs`` works on every run, labelled by run ID.

The project comes from ``project=``, else ``DESPINA_PROJECT`` / ``NEPTUNE_PROJECT`` as set when
this package was imported. The store is ``DESPINA_HOME`` (default ``~/.despina``); the
extension :func:`set_home` points queries at another store directory, e.g. in tests::

    import despina.query as nq
    nq.set_home(tmp_path)
    nq.fetch_metrics(project="ws/proj", experiments=["exp-a"], attributes=r"^loss")

With an API token (:func:`set_api_token`, ``DESPINA_API_TOKEN`` or ``NEPTUNE_API_TOKEN``) every
call reads from the ``despina serve`` the token names, with the same results; a store chosen
with :func:`set_home` / :func:`set_store` wins over a token (docs/remote-api.md).

Extensions beyond ``neptune_query``: :func:`set_home`, :func:`set_store` (a store URL),
``Filter`` / ``AttributeFilter`` / ``Attribute`` at package level, ``Filter.nql(text)``, and
``include_min_max`` of :func:`fetch_metric_buckets`.

Behaviour the reference does not pin down (spec "Unverified"), as despina implements it:

* Sorting tables: containers without the ``sort_by`` attribute (or with a NaN value) come
  after all others in both directions; ties keep creation order, oldest first. A ``sort_by``
  whose type could not be inferred sorts as ``string``: attributes of other types count as
  missing.
* ``lineage_to_the_root=False`` in the experiments API (and in ``fetch_metric_buckets``) keeps
  the ancestors of the same experiment and stops at the first ancestor of another one.
* A forked run reports the series it inherited as its own attributes (listing, table columns
  with the last value seen through the full lineage, ``EXISTS``).
* Table cells of float series use committed points only; a series holding only previews is
  absent from tables and listings (``fetch_metrics`` with previews still returns it).
* Histograms logged with densities have ``type == "DENSITY"``.
* Results are read from one consistent snapshot of the store; runs being logged meanwhile
  appear with what was committed when the query started.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import Literal

import pandas as pd

from despina.query import api as _api
from despina.query import filters, types
from despina.query.api import get_home, set_api_token, set_home, set_store
from despina.query.filters import Attribute, AttributeFilter, Filter
from despina.query.resolve import EXPERIMENTS as _EXPERIMENTS
from despina.query.warnings import ExperimentalWarning as _ExperimentalWarning
from despina.query.warnings import emit as _emit

__all__ = [
    "download_files",
    "experimental",
    "fetch_experiments_table",
    "fetch_metric_buckets",
    "fetch_metrics",
    "fetch_series",
    "list_attributes",
    "list_experiments",
    "set_api_token",
]

# Extensions, importable but not part of ``__all__``.
_EXTENSIONS = (Attribute, AttributeFilter, Filter, filters, types, get_home, set_home, set_store)

_DEFAULT_SORT = Attribute("sys/creation_time", type="datetime")


def list_experiments(
    *,
    project: str | None = None,
    experiments: str | list[str] | Filter | None = None,
) -> list[str]:
    """Names of the experiments that match ``experiments``, sorted.

    Args:
        project: ``workspace/project``; default ``DESPINA_PROJECT`` / ``NEPTUNE_PROJECT``.
        experiments: a regex on the name (extended syntax), exact names, or a ``Filter``.

    Raises:
        NeptuneProjectNotProvided: no project anywhere.
        NeptuneProjectInaccessible: the project is not in the store.
        ValueError: ``experiments`` has an unsupported type or is an empty list.
    """
    return _api.list_containers(project=project, containers=experiments, kind=_EXPERIMENTS)


def list_attributes(
    *,
    project: str | None = None,
    experiments: str | list[str] | Filter | None = None,
    attributes: str | list[str] | filters.BaseAttributeFilter | None = None,
) -> list[str]:
    """Names of the attributes of the matched experiments that pass ``attributes``, sorted.

    Raises:
        NeptuneProjectNotProvided, NeptuneProjectInaccessible, ValueError: as
            :func:`list_experiments`.
    """
    return _api.list_attributes(
        project=project, containers=experiments, attributes=attributes, kind=_EXPERIMENTS
    )


def fetch_experiments_table(
    *,
    project: str | None = None,
    experiments: str | list[str] | Filter | None = None,
    attributes: str | list[str] | filters.BaseAttributeFilter = [],  # noqa: B006 (as neptune)
    sort_by: str | Attribute = _DEFAULT_SORT,
    sort_direction: Literal["asc", "desc"] = "desc",
    limit: int | None = None,
    type_suffix_in_column_names: bool = False,
) -> pd.DataFrame:
    """A table of experiments (rows, by name) and attributes (columns); series show their last
    value. The default ``attributes=[]`` gives no columns.

    Raises:
        ConflictingAttributeTypes: a path has several types and suffixes are off.
        AttributeTypeInferenceError: a filter attribute has several types in the project.
        ValueError: an invalid argument (raised before any data access).
    """
    return _api.fetch_table(
        project=project,
        containers=experiments,
        attributes=attributes,
        sort_by=sort_by,
        sort_direction=sort_direction,
        limit=limit,
        type_suffix_in_column_names=type_suffix_in_column_names,
        kind=_EXPERIMENTS,
    )


def fetch_metrics(
    *,
    project: str | None = None,
    experiments: str | list[str] | Filter,
    attributes: str | list[str] | filters.BaseAttributeFilter,
    include_time: Literal["absolute"] | None = None,
    step_range: tuple[float | None, float | None] = (None, None),
    lineage_to_the_root: bool = True,
    tail_limit: int | None = None,
    type_suffix_in_column_names: bool = False,
    include_point_previews: bool = False,
) -> pd.DataFrame:
    """Raw float-series values per (experiment, step).

    Args:
        project: ``workspace/project``; default ``DESPINA_PROJECT`` / ``NEPTUNE_PROJECT``.
        experiments: a regex on the name, exact names, or a ``Filter``.
        attributes: a regex on attribute names, exact names, or an ``AttributeFilter``
            (``float_series`` only).
        include_time: ``"absolute"`` adds each point's wall-clock time.
        step_range: inclusive ``(start, end)``; ``None`` ends are open.
        lineage_to_the_root: include points inherited from fork ancestors (``False``: only
            ancestors of the same experiment).
        tail_limit: keep the last ``tail_limit`` points of each series (after the range).
        type_suffix_in_column_names: name columns ``<path>:float_series``.
        include_point_previews: include preview points, with ``is_preview`` and
            ``preview_completion`` sub-columns.

    Raises:
        ValueError: an invalid argument (raised before any data access).
        AttributeTypeInferenceError, NeptuneUnexpectedResponseError: the filter cannot be
            evaluated.
    """
    return _api.fetch_metrics(
        project=project,
        containers=experiments,
        attributes=attributes,
        include_time=include_time,
        step_range=step_range,
        lineage_to_the_root=lineage_to_the_root,
        tail_limit=tail_limit,
        type_suffix_in_column_names=type_suffix_in_column_names,
        include_point_previews=include_point_previews,
        kind=_EXPERIMENTS,
    )


def fetch_metric_buckets(
    *,
    project: str | None = None,
    experiments: str | list[str] | Filter,
    x: Literal["step"] = "step",
    y: str | list[str] | filters.BaseAttributeFilter,
    limit: int = 1000,
    lineage_to_the_root: bool = True,
    include_point_previews: bool = False,
    include_min_max: bool = False,
) -> pd.DataFrame:
    """Float series split into at most ``limit`` step buckets, one point per bucket
    (experimental; the first bucket shows a series' first point, the others their last).

    Args:
        include_min_max: extension: add each bucket's smallest and largest finite value as
            ``min`` and ``max`` sub-columns, so that charts keep spikes.

    Raises:
        ValueError: an invalid argument (``x`` not ``"step"``, ``limit`` outside 1..1000, …).
    """
    _emit(
        _ExperimentalWarning(
            "`despina.query.fetch_metric_buckets` is experimental and might change or be "
            "removed in a future minor release. Use with caution in production code."
        )
    )
    from despina.query.bucket_api import fetch_metric_buckets as _fetch

    return _fetch(
        project=project,
        experiments=experiments,
        x=x,
        y=y,
        limit=limit,
        lineage_to_the_root=lineage_to_the_root,
        include_point_previews=include_point_previews,
        include_min_max=include_min_max,
    )


def fetch_series(
    *,
    project: str | None = None,
    experiments: str | list[str] | Filter,
    attributes: str | list[str] | filters.BaseAttributeFilter,
    include_time: Literal["absolute"] | None = None,
    step_range: tuple[float | None, float | None] = (None, None),
    lineage_to_the_root: bool = True,
    tail_limit: int | None = None,
) -> pd.DataFrame:
    """Values of string, histogram and file series per (experiment, step).

    Raises:
        ValueError: an invalid argument (raised before any data access).
    """
    return _api.fetch_series(
        project=project,
        containers=experiments,
        attributes=attributes,
        include_time=include_time,
        step_range=step_range,
        lineage_to_the_root=lineage_to_the_root,
        tail_limit=tail_limit,
        kind=_EXPERIMENTS,
    )


def download_files(
    *,
    files: types.File | Iterable[types.File] | pd.Series | pd.DataFrame,
    destination: str | pathlib.Path | None = None,
) -> pd.DataFrame:
    """Copy files (from ``fetch_series`` / ``fetch_experiments_table``) into ``destination``
    (default: the working directory); returns their paths per (experiment, step).

    Raises:
        NeptuneUserError: files from the runs API were passed.
        NeptuneFileDownloadError: a file could not be copied.
    """
    from despina.query.download import download_files as _download

    return _download(files=files, destination=destination, kind=_EXPERIMENTS)
