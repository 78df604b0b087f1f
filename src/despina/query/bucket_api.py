"""``fetch_metric_buckets`` (spec/query-api.md §8.6, §13): arguments, reads and the frame."""

from __future__ import annotations

from typing import Any

import pandas as pd

from despina.query import frames
from despina.query.api import lineage_mode, open_snapshot, project_of
from despina.query.resolve import (
    EXPERIMENTS,
    infer_filter_types,
    resolve_attributes,
    resolve_containers,
    restrict_types,
    validate_bucket_limit,
    validate_x,
)

__all__ = ["fetch_metric_buckets"]


def fetch_metric_buckets(
    *,
    project: str | None,
    experiments: Any,
    x: Any,
    y: Any,
    limit: Any,
    lineage_to_the_root: bool,
    include_point_previews: bool,
    include_min_max: bool,
) -> pd.DataFrame:
    """The bucket frame of the matched experiments' float series (the ``ExperimentalWarning``
    is the caller's)."""
    name = project_of(project)
    filter_ = resolve_containers(experiments, EXPERIMENTS)
    y_filter = resolve_attributes(y)
    validate_x(x)
    validate_bucket_limit(limit)
    selector = restrict_types(y_filter, ["float_series"])
    with open_snapshot(name) as snap:
        inferred = infer_filter_types(filter_, snap.attribute_types)
        read = snap.buckets_read(
            nql=inferred,
            selector=selector,
            limit=limit,
            mode=lineage_mode(EXPERIMENTS, lineage_to_the_root),
            previews=include_point_previews,
            include_min_max=include_min_max,
        )
    matched, series, buckets = read.containers, read.series, read.buckets
    labels = [matched[int(c)].label for c in series.container]
    names = [series.paths[int(p)] for p in series.path]
    return frames.buckets_frame(
        buckets, labels, names, label="experiment", include_min_max=include_min_max
    )
