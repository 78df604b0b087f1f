"""Compound reads: what one public query call needs from one snapshot, in one step.

Each public function of ``despina.query`` makes a few dependent snapshot reads (search the
containers, select their series, read the points). In-process that chain costs nothing extra;
against a server every hop would be a round trip moving large intermediates (a million series
descriptors for 1k runs x 1k metrics). So the chain is one operation here, run by the local
:class:`~despina.query.service.Snapshot` directly and by the server for a remote snapshot
(``despina.store.http.snapshot``), in one read transaction either way. The results keep only
what the frames need, so local and remote frames are built from identical structures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from despina.query.buckets import BucketSet
from despina.query.filters import Attribute, Filter
from despina.query.points import FloatBatch, LineageMode, PointRows, SeriesSet, StepRange
from despina.query.resolve import Selector
from despina.store.schema import ATTRIBUTE_TYPES

if TYPE_CHECKING:
    from despina.query.service import Container, Snapshot, TableData

__all__ = [
    "BucketsRead",
    "MetricsRead",
    "PointsRead",
    "SeriesRefs",
    "read_buckets",
    "read_definitions",
    "read_metrics",
    "read_points",
    "read_table",
]

Kind = Literal["experiment", "run"]


@dataclass(frozen=True)
class SeriesRefs:
    """Which container and path each read series belongs to (a :class:`SeriesSet` without
    its row ids and aggregates, which only the reading side needs)."""

    container: npt.NDArray[np.int64]
    path: npt.NDArray[np.int64]
    paths: tuple[str, ...]
    type_code: npt.NDArray[np.int8]

    @classmethod
    def of(cls, series: SeriesSet) -> SeriesRefs:
        return cls(series.container, series.path, tuple(series.paths), series.type_code)

    def __len__(self) -> int:
        return len(self.container)

    def type_of(self, i: int) -> str:
        """The type name of series ``i``."""
        return ATTRIBUTE_TYPES[int(self.type_code[i])]


@dataclass(frozen=True)
class MetricsRead:
    """Float series points of the matched containers (``fetch_metrics``)."""

    containers: list[Container]
    series: SeriesRefs
    batch: FloatBatch


@dataclass(frozen=True)
class PointsRead:
    """String, histogram and file series points (``fetch_series``), one entry per series."""

    containers: list[Container]
    series: SeriesRefs
    rows: list[PointRows]


@dataclass(frozen=True)
class BucketsRead:
    """Buckets of the matched experiments' float series (``fetch_metric_buckets``)."""

    containers: list[Container]
    series: SeriesRefs
    buckets: BucketSet


def read_definitions(
    snap: Snapshot, *, kind: Kind, nql: Filter | None, selector: Selector, search: bool
) -> list[tuple[str, str]]:
    """``(path, type)`` of the matched containers' attributes (every run of the project when
    ``search`` is false), sorted."""
    matched = snap.search(kind=kind, nql=nql) if search else None
    return snap.definitions(matched, selector)


def read_table(
    snap: Snapshot,
    *,
    kind: Kind,
    nql: Filter | None,
    sort_by: Attribute,
    direction: Literal["asc", "desc"],
    limit: int | None,
    selector: Selector,
) -> TableData:
    """The table of the matched containers, sorted and limited."""
    matched = snap.search(kind=kind, nql=nql, sort_by=sort_by, direction=direction, limit=limit)
    return snap.table(matched, selector)


def read_metrics(
    snap: Snapshot,
    *,
    kind: Kind,
    nql: Filter | None,
    selector: Selector,
    mode: LineageMode,
    step_range: StepRange,
    tail_limit: int | None,
    previews: bool,
    timestamps: bool = True,
) -> MetricsRead:
    """Float series points of the matched containers (empty series too with ``previews``).

    ``timestamps=False`` says the caller will not read them: a remote read leaves them out of
    the answer; in-process they cost nothing and are kept."""
    matched = snap.search(kind=kind, nql=nql)
    series = snap.series(matched, selector, with_empty=previews)
    batch = snap.float_series(
        series, mode=mode, step_range=step_range, tail_limit=tail_limit, previews=previews
    )
    return MetricsRead(matched, SeriesRefs.of(series), batch)


def read_points(
    snap: Snapshot,
    *,
    kind: Kind,
    nql: Filter | None,
    selector: Selector,
    mode: LineageMode,
    step_range: StepRange,
    tail_limit: int | None,
) -> PointsRead:
    """String, histogram and file series points of the matched containers."""
    matched = snap.search(kind=kind, nql=nql)
    series = snap.series(matched, selector)
    rows = snap.point_series(series, mode=mode, step_range=step_range, tail_limit=tail_limit)
    return PointsRead(matched, SeriesRefs.of(series), rows)


def read_buckets(
    snap: Snapshot,
    *,
    nql: Filter | None,
    selector: Selector,
    limit: int,
    mode: LineageMode,
    previews: bool,
    include_min_max: bool,
) -> BucketsRead:
    """Buckets over the matched experiments' float series."""
    matched = snap.search(kind="experiment", nql=nql)
    series = snap.series(matched, selector, with_empty=previews)
    buckets = snap.buckets(
        series, limit=limit, mode=mode, previews=previews, include_min_max=include_min_max
    )
    return BucketsRead(matched, SeriesRefs.of(series), buckets)
