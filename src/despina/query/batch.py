"""The query service's batch read API: many runs, attributes and series in one read transaction.

:class:`Snapshot` answers the in-process API one project at a time; :class:`BatchReads`
answers the shapes the retrieval endpoints ask for (runs named by identifier across projects,
thousands of series per call, micro-step bounds, wire-style paging left to the caller). Both
read through the same functions of this package (``catalog``, ``values``, ``lineage``,
``float_batch``, ``points``), so the server and ``despina.query`` share one read layer.

Usage::

    service = QueryService.for_home("~/.despina")
    with service.batch() as reads:
        runs = reads.resolve_runs(["ws/p/P-1"], {"ws/p": project_info})
        flat = reads.float_series_flat([(runs["ws/p/P-1"].pk, "loss", "full", False)], -1, 2**62)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from despina.query.bucket_stats import BucketStats, bucket_many
from despina.query.catalog import (
    NamePredicate,
    RunRef,
    Sort,
    resolve_runs,
    runs_by_pk,
    search_runs,
)
from despina.query.float_batch import FlatSeries, FloatSeries, float_series_batch, float_series_flat
from despina.query.lineage import lineage_links
from despina.query.points import POINT_SERIES_TYPES, point_series
from despina.query.values import AttrValue, attribute_values, definitions
from despina.store.access import ProjectInfo
from despina.store.series import LineageLink

__all__ = ["BatchReads", "SeriesWant"]

SeriesWant = tuple[int, str, str, bool]
"""One float series of a batch: ``(run row id, path, lineage mode, include previews)``."""


class BatchReads:
    """Batch reads inside one read transaction (see :meth:`QueryService.batch`)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    # -- runs ----------------------------------------------------------------------------------

    def resolve_runs(
        self, identifiers: Iterable[str], projects: dict[str, ProjectInfo]
    ) -> dict[str, RunRef]:
        """Runs named by identifiers of ``projects`` (by full name); unknown ones left out."""
        return resolve_runs(self.conn, identifiers, projects)

    def runs_by_pk(self, pks: Sequence[int], projects: dict[int, ProjectInfo]) -> dict[int, RunRef]:
        """Runs by row id whose projects are in ``projects`` (keyed by project id)."""
        return runs_by_pk(self.conn, pks, projects)

    def search(
        self,
        project_ids: Sequence[int],
        where: tuple[str, list[object]] | None,
        *,
        leaders_only: bool,
        sort: Sort,
        offset: int,
        limit: int,
    ) -> tuple[int, list[int]]:
        """``(matching count, run row ids of the page)``; ``where`` is compiled NQL."""
        return search_runs(
            self.conn,
            project_ids,
            where,
            leaders_only=leaders_only,
            sort=sort,
            offset=offset,
            limit=limit,
        )

    # -- attributes ----------------------------------------------------------------------------

    def attribute_values(
        self,
        pks: Sequence[int],
        *,
        names: Iterable[str] | None = None,
        predicate: NamePredicate | None = None,
        types: set[str] | None = None,
    ) -> dict[int, list[AttrValue]]:
        """Attributes of runs (``sys/`` included) by exact names and/or a name predicate."""
        return attribute_values(self.conn, pks, names=names, predicate=predicate, types=types)

    def definitions(
        self,
        *,
        project_ids: Sequence[int] | None,
        run_pks: Sequence[int] | None,
        exact_names: list[str] | None,
        predicate: NamePredicate | None,
        types: set[str] | None,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, str]]:
        """Distinct ``(path, type)`` of the runs (or of every run of the projects), sorted;
        with ``after``/``limit``, one keyset page of them."""
        return definitions(
            self.conn,
            project_ids=project_ids,
            run_pks=run_pks,
            exact_names=exact_names,
            predicate=predicate,
            types=types,
            after=after,
            limit=limit,
        )

    # -- series --------------------------------------------------------------------------------

    def lineage_links(self, run_pks: Iterable[int], mode: str) -> dict[int, list[LineageLink]]:
        """Per run, the runs whose points it shows under ``mode``, itself first."""
        return lineage_links(self.conn, run_pks, mode)

    def float_series(
        self, wanted: Sequence[SeriesWant], lo: int, hi: int
    ) -> list[FloatSeries | None]:
        """Points of float series within micro-steps ``[lo, hi]``; None: no such series."""
        return float_series_batch(self.conn, wanted, lo, hi)

    def buckets(
        self,
        wanted: Sequence[SeriesWant],
        lo: int,
        hi: int,
        count: int,
        x_from: float | None,
        x_to: float | None,
    ) -> list[BucketStats | None]:
        """``count`` buckets of each float series (points within micro-steps ``[lo, hi]``) on
        their common x range (ends not given are the data's); None for a series that does not
        exist or has no point in range."""
        return list(self.iter_buckets(wanted, lo, hi, count, x_from, x_to))

    def iter_buckets(
        self,
        wanted: Sequence[SeriesWant],
        lo: int,
        hi: int,
        count: int,
        x_from: float | None,
        x_to: float | None,
    ) -> Iterator[BucketStats | None]:
        """:meth:`buckets` one series at a time, reading a few series at once: consume it
        inside the batch (:func:`despina.query.bucket_stats.bucket_many`)."""
        return bucket_many(self.conn, wanted, lo, hi, count, x_from, x_to)

    def float_series_flat(
        self,
        wanted: Sequence[SeriesWant],
        lo: int,
        hi: int,
        *,
        windows: Sequence[tuple[int, int]] | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> FlatSeries:
        """:meth:`float_series` as one set of flat arrays (fast for thousands of series);
        with ``windows`` and ``limit``, reading only what each window's first ``limit``
        points need (:func:`despina.query.float_batch.float_series_flat`)."""
        return float_series_flat(
            self.conn, wanted, lo, hi, windows=windows, limit=limit, descending=descending
        )

    def point_series(
        self,
        links: list[LineageLink],
        path: str,
        lo: int,
        hi: int,
        *,
        descending: bool,
        limit: int,
        types: Sequence[str] = POINT_SERIES_TYPES,
        max_bytes: int | None = None,
    ) -> tuple[str, list[tuple[int, int, str]]] | None:
        """``(type, [(step, ts, value)])`` of a string/histogram/file series along ``links``
        (``max_bytes``: see :func:`despina.query.points.point_series`)."""
        return point_series(
            self.conn,
            links,
            path,
            lo,
            hi,
            descending=descending,
            limit=limit,
            types=types,
            max_bytes=max_bytes,
        )
