"""Frames built by ``neptune_query``'s own builders from the data despina's service read.

Each function reads with :class:`despina.query.service.QueryService` exactly what the public
function reads, converts it to the reference's retrieval structures and calls
``neptune_query.internal.output_format``. A test then compares that frame with despina's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
from typing import Any

import numpy as np
import pandas as pd
from neptune_query.internal import identifiers as ids
from neptune_query.internal import output_format as of
from neptune_query.internal.retrieval import attribute_types as at
from neptune_query.internal.retrieval.attribute_values import AttributeValue
from neptune_query.internal.retrieval.metric_buckets import TimeseriesBucket
from neptune_query.internal.retrieval.search import ContainerType
from neptune_query.internal.retrieval.series import SeriesValue

from despina.query import api, frames
from despina.query import types as dtypes
from despina.query.buckets import BucketSet
from despina.query.points import FloatBatch, PointRows, SeriesSet
from despina.query.service import Container, TableData


def _run_id(project: str, container: Container) -> ids.RunIdentifier:
    return ids.RunIdentifier(ids.ProjectIdentifier(project), ids.SysId(f"S-{container.pk}"))


def _container_type(kind: str) -> ContainerType:
    return ContainerType.EXPERIMENT if kind == "experiment" else ContainerType.RUN


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Object cells holding despina's or neptune_query's File/Histogram as comparable tuples."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = type(value).__name__
            return (
                name,
                *[tuple(v) if isinstance(v, list) else v for v in dataclasses.astuple(value)],
            )
        return value

    out = frame.copy()
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if column.dtype == object:
            out.isetitem(i, column.map(convert, na_action="ignore").astype(object))
    return out


def table(data: TableData, *, kind: str, type_suffix: bool, global_: bool = False) -> pd.DataFrame:
    """``create_runs_table`` (or the multiproject variant) over despina's table data."""
    rows: list[list[AttributeValue]] = [[] for _ in data.containers]
    for column in data.columns:
        for i, (r, value) in enumerate(zip(column.rows.tolist(), column.values, strict=True)):
            container = data.containers[r]
            step = None if column.steps is None else float(column.steps[i])
            rows[r].append(
                AttributeValue(
                    ids.AttributeDefinition(column.path, column.type),
                    _table_value(column.type, value, step),
                    _run_id(container.project, container),
                )
            )
    table_rows = [
        of.TableRow(
            values=values, label=c.label, project_identifier=ids.ProjectIdentifier(c.project)
        )
        for c, values in zip(data.containers, rows, strict=True)
    ]
    build = of.create_runs_table_multiproject if global_ else of.create_runs_table
    return build(
        table_rows, type_suffix_in_column_names=type_suffix, container_type=_container_type(kind)
    )


def _table_value(type_: str, value: Any, step: float | None) -> Any:
    if type_ == "float_series":
        v = float(value)
        return at.FloatSeriesAggregations(last=v, min=v, max=v, average=v, variance=0.0)
    if type_ == "float":
        return float(value)
    if type_ == "int":
        return int(value)
    if type_ == "bool":
        return bool(value)
    if type_ == "datetime":
        return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)
    if type_ == "string_set":
        return set(value)
    if type_ == "string":
        return value
    if type_ == "string_series":
        return at.StringSeriesAggregations(last=value, last_step=None)
    if type_ == "file":
        return at.File(value["path"], value["size_bytes"], value["mime_type"])
    if type_ == "file_series":
        return at.FileSeriesAggregations(
            last=at.File(value["path"], value["size_bytes"], value["mime_type"]), last_step=step
        )
    if type_ == "histogram_series":
        return at.HistogramSeriesAggregations(
            last=at.Histogram(value["type"], value["edges"], value["values"]), last_step=None
        )
    raise AssertionError(type_)


def _labels(containers: list[Container]) -> dict[Any, str]:
    return {ids.SysId(f"S-{c.pk}"): c.label for c in containers}


def metrics(
    containers: list[Container],
    series: SeriesSet,
    batch: FloatBatch,
    *,
    kind: str,
    include_time: bool,
    previews: bool,
    type_suffix: bool,
) -> pd.DataFrame:
    """``create_metrics_dataframe`` over the points despina read."""
    data: dict[ids.RunAttributeDefinition, list[Any]] = {}
    for i in range(len(series)):
        container = containers[int(series.container[i])]
        key = ids.RunAttributeDefinition(
            _run_id(container.project, container),
            ids.AttributeDefinition(series.paths[int(series.path[i])], "float_series"),
        )
        lo, hi = int(batch.offsets[i]), int(batch.offsets[i + 1])
        data[key] = [
            (
                int(batch.timestamps[j]),
                float(batch.steps[j]),
                float(batch.values[j]),
                bool(batch.is_preview[j]),
                float(batch.completion[j]),
            )
            for j in range(lo, hi)
        ]
    return of.create_metrics_dataframe(
        data,
        _labels(containers),
        type_suffix_in_column_names=type_suffix,
        include_point_previews=previews,
        index_column_name=kind,
        timestamp_column_name="absolute_time" if include_time else None,
    )


def series_frame(
    containers: list[Container],
    series: SeriesSet,
    rows: list[PointRows],
    *,
    kind: str,
    include_time: bool,
) -> pd.DataFrame:
    """``create_series_dataframe`` over the points despina read."""
    import json

    data: dict[ids.RunAttributeDefinition, list[SeriesValue]] = {}
    for i, found in enumerate(rows):
        container = containers[int(series.container[i])]
        type_ = series.type_of(i)
        key = ids.RunAttributeDefinition(
            _run_id(container.project, container),
            ids.AttributeDefinition(series.paths[int(series.path[i])], type_),
        )
        values = []
        for step, ts, text in zip(found.steps, found.timestamps, found.values, strict=True):
            value: Any = text
            if type_ == "histogram_series":
                v = json.loads(text)
                value = at.Histogram(v["type"], v["edges"], v["values"])
            elif type_ == "file_series":
                v = json.loads(text)
                value = at.File(v["path"], v["size_bytes"], v["mime_type"])
            values.append(SeriesValue(step, value, ts))
        data[key] = values
    return of.create_series_dataframe(
        data,
        "ws/p",
        _labels(containers),
        index_column_name=kind,
        timestamp_column_name="absolute_time" if include_time else None,
    )


def buckets(containers: list[Container], series: SeriesSet, found: BucketSet) -> pd.DataFrame:
    """``create_metric_buckets_dataframe`` over the buckets despina computed."""
    data: dict[ids.RunAttributeDefinition, list[TimeseriesBucket]] = {}

    def opt(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    for i in range(len(series)):
        container = containers[int(series.container[i])]
        key = ids.RunAttributeDefinition(
            _run_id(container.project, container),
            ids.AttributeDefinition(series.paths[int(series.path[i])], "float_series"),
        )
        lo, hi = int(found.offsets[i]), int(found.offsets[i + 1])
        data[key] = [
            TimeseriesBucket(
                int(found.index[j]),
                float(found.from_x[j]),
                float(found.to_x[j]),
                opt(found.first_x[j]),
                opt(found.first_y[j]),
                opt(found.last_x[j]),
                opt(found.last_y[j]),
            )
            for j in range(lo, hi)
        ]
    return of.create_metric_buckets_dataframe(
        data, _labels(containers), container_column_name="experiment"
    )


def files(results: dict[dtypes.File, pathlib.Path | None], kind: str) -> pd.DataFrame:
    """``create_files_dataframe`` over despina's downloads (neptune ``File`` objects)."""
    from neptune_query import types as ntypes

    converted = {ntypes.File(**dataclasses.asdict(f)): p for f, p in results.items()}
    return of.create_files_dataframe(converted, _container_type(kind))


__all__ = ["api", "buckets", "files", "frames", "metrics", "normalize", "series_frame", "table"]
