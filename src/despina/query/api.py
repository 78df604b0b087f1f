"""The query functions behind ``despina.query`` and ``despina.query.runs``.

Each public function resolves its arguments in the reference's order (project, containers,
attributes, parameters; spec/query-api.md §2.3), then opens one read snapshot of the store,
infers filter types (§6) and reads. The store location is ``DESPINA_HOME`` (default
``~/.despina``), or whatever :func:`set_home` chose.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from despina.query import frames
from despina.query.exceptions import NeptuneUserError
from despina.query.filters import Filter
from despina.query.operations import SeriesRefs
from despina.query.points import LineageMode, StepRange
from despina.query.resolve import (
    EXPERIMENTS,
    FETCH_SERIES_TYPES,
    Kind,
    default_project,
    infer_filter_types,
    infer_sort_type,
    resolve_attributes,
    resolve_containers,
    resolve_project,
    resolve_sort_by,
    restrict_types,
    validate_include_time,
    validate_limit,
    validate_sort_direction,
    validate_step_range,
    validate_tail_limit,
)
from despina.query.service import Container, QueryService, Snapshot, prepare
from despina.query.types import File
from despina.store.urls import parse_store_url

__all__ = [
    "Context",
    "fetch_metrics",
    "fetch_series",
    "fetch_table",
    "get_home",
    "list_attributes",
    "list_containers",
    "open_snapshot",
    "set_api_token",
    "set_home",
    "set_store",
]


@dataclass(frozen=True)
class Context:
    """The process-wide query context: default project and API token (``set_api_token``)."""

    project: str | None = None
    api_token: str | None = None


_lock = threading.Lock()
_context = Context(default_project(), os.environ.get("NEPTUNE_API_TOKEN") or None)
_home: pathlib.Path | None = None
_store_url: str | None = None
_api_token: str | None = None
"""The token of :func:`set_api_token` (the environment's is read at each query)."""


def set_home(home: str | os.PathLike[str] | None) -> None:
    """Extension: read the store at ``home`` instead of ``DESPINA_HOME`` / ``~/.despina``.

    ``None`` goes back to the environment. Useful in tests and notebooks that keep several
    stores.
    """
    global _home
    with _lock:
        _home = None if home is None else pathlib.Path(home)


def set_store(url: str | os.PathLike[str] | None) -> None:
    """Extension: read the store at ``url`` (a directory, ``sqlite:///path`` or
    ``postgresql://user@host:port/db``) instead of ``DESPINA_STORE`` / the home directory.

    ``None`` goes back to the environment.

    Raises:
        ConfigError: the URL is malformed (nothing is opened until the first query).
    """
    global _store_url
    if url is not None:
        parse_store_url(url)
    with _lock:
        _store_url = None if url is None else str(url)
    prepare(url)  # this set-up call, not the first query, imports the store's driver


def get_home() -> pathlib.Path | None:
    """The store location chosen with :func:`set_home` (``None``: from the environment)."""
    return _home


def set_api_token(api_token: str) -> Context:
    """Read from the server ``api_token`` names from now on; return the process-wide context.

    Queries then go to that server (``despina serve``), unless :func:`set_home` or
    :func:`set_store` chose a local store, which wins. The token is checked for the format
    despina and Neptune mint (base64 JSON with ``api_url`` or ``api_address``) now; the server
    checks it on the first query.

    Raises:
        ValueError: the token is empty.
        neptune_api.errors.InvalidApiTokenException: the token is malformed.
    """
    global _context, _api_token
    if not api_token:
        raise ValueError("API token must be provided")
    _check_token_format(api_token)
    with _lock:
        _context = Context(_context.project, api_token)
        _api_token = api_token
    import despina.store.http.snapshot  # noqa: F401 (this set-up call pays for the import)

    return _context


def _check_token_format(api_token: str) -> None:
    """Neptune's own check of an API token (``Credentials.from_api_key``), with its exception:
    neptune_api is imported only to raise it (its import costs a first remote call 40 ms).

    Raises:
        neptune_api.errors.InvalidApiTokenException: not base64 JSON, or it names no server.
    """
    try:
        data = json.loads(base64.b64decode(api_token.strip().encode()).decode("utf-8"))
        named = bool(data.get("api_address") or data.get("api_url"))
        cause: Exception | None = None
    except Exception as exc:  # as neptune_api: anything undecodable is refused alike
        named, cause = False, exc
    if named:
        return
    from neptune_api.errors import InvalidApiTokenException, UnableToDeserializeApiKeyError

    if cause is None:
        raise InvalidApiTokenException("API key is missing required fields")
    undecodable = UnableToDeserializeApiKeyError()
    undecodable.__cause__ = cause
    raise InvalidApiTokenException("Unable to deserialize API key") from undecodable


def project_of(project: str | None) -> str:
    """``project`` or the default read at import (§2.2)."""
    return resolve_project(project, _context.project)


def explicit_api_token() -> str | None:
    """The token set with :func:`set_api_token` (``None``: none was set)."""
    return _api_token


def remote_token() -> str | None:
    """The API token queries go to a server with, or ``None`` for a local store: a store chosen
    with :func:`set_store` / :func:`set_home` wins, then the token of :func:`set_api_token`,
    then ``DESPINA_API_TOKEN`` / ``NEPTUNE_API_TOKEN``."""
    if _home is not None or _store_url is not None:
        return None
    from despina.store.http.tokens import token_from_environment

    return _api_token or token_from_environment()


def query_service() -> Any:
    """The query service reads go to: the server of :func:`remote_token` (a
    ``RemoteQueryService``), else the configured local store (``set_store``,
    ``DESPINA_STORE``, ``set_home``, ``DESPINA_HOME``, in that order)."""
    token = remote_token()
    if token is not None:
        from despina.store.http.snapshot import remote_service

        return remote_service(token)
    return QueryService.for_home(_home, url=_store_url)


def open_snapshot(project: str) -> Any:
    """A read snapshot of ``project`` in the store reads go to (a context manager yielding a
    :class:`Snapshot` or, against a server, a ``RemoteSnapshot`` with the same methods)."""
    return query_service().snapshot(project)


def _search(snap: Snapshot, kind: Kind, filter_: Filter | None, **sort: Any) -> list[Container]:
    inferred = infer_filter_types(filter_, snap.attribute_types)
    return snap.search(kind=kind.name, nql=inferred, **sort)


# -- listing ----------------------------------------------------------------------------------


def list_containers(*, project: str | None, containers: Any, kind: Kind) -> list[str]:
    """Sorted labels of the matched containers (§8.1)."""
    name = project_of(project)
    filter_ = resolve_containers(containers, kind)
    with open_snapshot(name) as snap:
        return sorted(c.label for c in _search(snap, kind, filter_))


def list_attributes(
    *, project: str | None, containers: Any, attributes: Any, kind: Kind
) -> list[str]:
    """Sorted attribute names of the matched containers (§8.2)."""
    name = project_of(project)
    filter_ = resolve_containers(containers, kind)
    selector = restrict_types(resolve_attributes(attributes), None)
    search = kind is EXPERIMENTS or filter_ is not None
    with open_snapshot(name) as snap:
        inferred = infer_filter_types(filter_, snap.attribute_types) if search else None
        found = snap.definitions_read(
            kind=kind.name, nql=inferred, selector=selector, search=search
        )
    return sorted({path for path, _ in found})


# -- tables -----------------------------------------------------------------------------------


def fetch_table(
    *,
    project: str | None,
    containers: Any,
    attributes: Any,
    sort_by: Any,
    sort_direction: Any,
    limit: Any,
    type_suffix_in_column_names: bool,
    kind: Kind,
) -> pd.DataFrame:
    """A table of the matched containers (§8.3)."""
    name = project_of(project)
    filter_ = resolve_containers(containers, kind)
    attribute_filter = resolve_attributes(attributes)
    sort_attribute = resolve_sort_by(sort_by)
    validate_limit(limit)
    direction = validate_sort_direction(sort_direction)
    selector = restrict_types(attribute_filter, None)
    with open_snapshot(name) as snap:
        inferred = infer_filter_types(filter_, snap.attribute_types)
        sort_attribute = infer_sort_type(sort_attribute, snap.attribute_types)
        data = snap.table_read(
            kind=kind.name,
            nql=inferred,
            sort_by=sort_attribute,
            direction=direction,
            limit=limit,
            selector=selector,
        )
    return frames.table_frame(data, kind=kind.name, type_suffix=type_suffix_in_column_names)


# -- series -----------------------------------------------------------------------------------


def lineage_mode(kind: Kind, lineage_to_the_root: bool) -> LineageMode:
    """§10.2: full lineage, or the same experiment's ancestors (experiments), or none (runs)."""
    if lineage_to_the_root:
        return "full"
    return "experiment" if kind is EXPERIMENTS else "own"


def long_points(
    containers: list[Container],
    series: SeriesRefs,
    offsets: Any,
    steps: Any,
    values: Any,
    names: list[str] | None = None,
) -> frames.LongPoints:
    """Frame input for points of ``series`` (labels from ``containers``)."""
    return frames.LongPoints(
        label_code=series.container,
        labels=[c.label for c in containers],
        name_code=series.path,
        names=list(series.paths) if names is None else names,
        offsets=offsets,
        steps=steps,
        values=values,
    )


def _series_arguments(
    project: str | None,
    containers: Any,
    attributes: Any,
    include_time: Any,
    step_range: Any,
    tail_limit: Any,
    kind: Kind,
) -> tuple[str, Any, Any]:
    """The project, container filter and attribute filter of a series call, every argument
    checked in the reference's order before any data is read."""
    name = project_of(project)
    filter_ = resolve_containers(containers, kind)
    attribute_filter = resolve_attributes(attributes)
    validate_step_range(step_range)
    validate_tail_limit(tail_limit)
    validate_include_time(include_time)
    return name, filter_, attribute_filter


def fetch_metrics(
    *,
    project: str | None,
    containers: Any,
    attributes: Any,
    include_time: Any,
    step_range: Any,
    lineage_to_the_root: bool,
    tail_limit: Any,
    type_suffix_in_column_names: bool,
    include_point_previews: bool,
    kind: Kind,
) -> pd.DataFrame:
    """Float series points per (container, step) (§8.4)."""
    name, filter_, attribute_filter = _series_arguments(
        project, containers, attributes, include_time, step_range, tail_limit, kind
    )
    selector = restrict_types(attribute_filter, ["float_series"])
    with open_snapshot(name) as snap:
        inferred = infer_filter_types(filter_, snap.attribute_types)
        read = snap.metrics_read(
            kind=kind.name,
            nql=inferred,
            selector=selector,
            mode=lineage_mode(kind, lineage_to_the_root),
            step_range=StepRange(*step_range),
            tail_limit=tail_limit,
            previews=include_point_previews,
            timestamps=include_time == "absolute",
        )
    matched, series, batch = read.containers, read.series, read.batch
    values: dict[str, Any] = {"value": batch.values}
    extras = []
    if include_time == "absolute":
        values["absolute_time"] = batch.timestamps
        extras.append("absolute_time")
    if include_point_previews:
        values["is_preview"] = batch.is_preview
        values["preview_completion"] = batch.completion
        extras += ["is_preview", "preview_completion"]
    names = list(series.paths)
    if type_suffix_in_column_names:
        names = [f"{p}:float_series" for p in names]
    points = long_points(matched, series, batch.offsets, batch.steps, values, names)
    return frames.metrics_frame(points, label=kind.name, extras=extras)


def fetch_series(
    *,
    project: str | None,
    containers: Any,
    attributes: Any,
    include_time: Any,
    step_range: Any,
    lineage_to_the_root: bool,
    tail_limit: Any,
    kind: Kind,
) -> pd.DataFrame:
    """String, histogram and file series points per (container, step) (§8.5)."""
    name, filter_, attribute_filter = _series_arguments(
        project, containers, attributes, include_time, step_range, tail_limit, kind
    )
    selector = restrict_types(attribute_filter, list(FETCH_SERIES_TYPES))
    with open_snapshot(name) as snap:
        inferred = infer_filter_types(filter_, snap.attribute_types)
        read = snap.points_read(
            kind=kind.name,
            nql=inferred,
            selector=selector,
            mode=lineage_mode(kind, lineage_to_the_root),
            step_range=StepRange(*step_range),
            tail_limit=tail_limit,
        )
    matched, series, rows = read.containers, read.series, read.rows
    cells: list[Any] = []
    steps: list[float] = []
    stamps: list[int] = []
    sizes = []
    for i, found in enumerate(rows):
        container = matched[int(series.container[i])]
        path = series.paths[int(series.path[i])]
        type_ = series.type_of(i)
        cells.extend(
            frames.series_cell(
                type_,
                value,
                project=container.project,
                label=container.label,
                kind=kind.name,
                path=path,
                step=step,
            )
            for step, value in zip(found.steps, found.values, strict=True)
        )
        steps.extend(found.steps)
        stamps.extend(found.timestamps)
        sizes.append(len(found.steps))
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    value_array = np.empty(len(cells), dtype=object)
    value_array[:] = cells
    values = {"value": value_array, "absolute_time": np.array(stamps, np.int64)}
    points = long_points(matched, series, offsets, np.array(steps, np.float64), values)
    return frames.series_frame(points, label=kind.name, include_time=include_time == "absolute")


def resolve_files(files: Any) -> list[File]:
    """The :class:`File` objects in ``files`` (§8.7).

    Raises:
        ValueError: ``files`` is not a File, Series, DataFrame or iterable.
    """
    if isinstance(files, File):
        return [files]
    if isinstance(files, pd.Series):
        return [f for f in files if isinstance(f, File)]
    if isinstance(files, pd.DataFrame):
        return [f for _, column in files.items() for f in column if isinstance(f, File)]
    if isinstance(files, Iterable):
        return [f for f in files if isinstance(f, File)]
    raise ValueError(
        "Invalid type for `files`. Expected File, DataFrame, Series, or iterable of Files, but "
        f"got {type(files)}."
    )


def check_file_labels(files: list[File], kind: Kind) -> None:
    """Raises NeptuneUserError when files of the other API were passed (§8.7)."""
    if kind is EXPERIMENTS and not all(f.experiment_name for f in files):
        raise NeptuneUserError(
            "Some files passed to nq.download_files don't have associated experiment names. "
            "This is likely because you passed files from the runs API. Please use files from "
            "the experiments API instead by fetching them with nq.fetch_series() or "
            "nq.fetch_experiments_table()."
        )
    if kind is not EXPERIMENTS and not all(f.run_id for f in files):
        raise NeptuneUserError(
            "Some files passed to runs.download_files don't have associated run IDs. This is "
            "likely because you passed files from the experiments API. Please use files from "
            "the runs API instead by fetching them with runs.fetch_series() or "
            "runs.fetch_runs_table()."
        )
