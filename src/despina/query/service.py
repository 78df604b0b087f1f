"""The query service: every read of the query API, HTTP-agnostic.

``despina.query`` calls it in-process through :class:`Snapshot`; the server's retrieval
endpoints call its batch API (:meth:`QueryService.batch`, ``batch.py``), which reads through
the same package, and only parse requests, check access, page and encode the answers.
Results are plain Python and NumPy structures; ``frames.py`` turns them into DataFrames.

Usage::

    from despina.query.filters import AttributeFilter
    from despina.query.resolve import restrict_types

    service = QueryService.for_home("~/.despina")
    with service.snapshot("ws/proj") as snap:          # one consistent read transaction
        heads = snap.search(kind="experiment", nql="`cfg/lr`:float > 0.1")
        table = snap.table(heads, restrict_types(AttributeFilter("cfg"), None))
        series = snap.series(heads, restrict_types(AttributeFilter("loss"), ["float_series"]))
        points = snap.float_series(series, mode="full")  # FloatBatch, series by series
    with service.batch() as reads:                       # many projects, wire-shaped batches
        runs = reads.resolve_runs(["ws/proj/PROJ-1"], {"ws/proj": project_info})

Raises (every method): ``NeptuneProjectInaccessible`` for a project that is not in the store,
``NeptuneUnexpectedResponseError`` for a filter rejected at evaluation.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from despina.errors import ConfigError, ProjectNotFound
from despina.nql import NQLError
from despina.nql import ast as nql_ast
from despina.query import attr_files, operations
from despina.query import buckets as _buckets
from despina.query.attrs import (
    TYPE_CODE,
    AttributeCache,
    AttrRows,
    ReadSpec,
    sorted_unique,
    store_paths,
)
from despina.query.batch import BatchReads
from despina.query.exceptions import NeptuneProjectInaccessible, NeptuneUnexpectedResponseError
from despina.query.filters import Attribute, Filter
from despina.query.points import (
    FloatBatch,
    LineageMode,
    PointRows,
    SeriesSet,
    StepRange,
    read_float_series,
    read_point_series,
)
from despina.query.resolve import Selector
from despina.query.table_memo import TableMemo
from despina.query.values import present_sys, sys_rows
from despina.store import Store
from despina.store.nql import compile_filter
from despina.store.opening import open_address, resolve_store
from despina.store.schema import ATTRIBUTE_TYPES, SERIES_TYPES
from despina.store.sql import attribute_reads, table_reads
from despina.store.sqlite import DB_FILE
from despina.store.sysattrs import SYS_COLUMNS
from despina.store.urls import parse_store_url

__all__ = ["Column", "Container", "QueryService", "Snapshot", "TableData", "prepare"]

ContainerKind = Literal["experiment", "run"]
_NUMERIC_SORT = frozenset({"float", "int", "bool", "datetime", "float_series"})
_TEXT_TYPES = frozenset(ATTRIBUTE_TYPES) - _NUMERIC_SORT
"""Types whose table cell comes from ``attributes.text``."""


@dataclass(frozen=True, slots=True)
class Container:
    """A matched run: its row id, label (experiment name or run ID) and lineage facts."""

    pk: int
    label: str
    project: str
    experiment_name: str | None
    parent_pk: int | None
    fork_step: int | None
    creation_ms: int = 0
    sort_key: Any = None


@dataclass(frozen=True)
class Column:
    """One (path, type) column of a table: the rows that have a value and the values.

    ``values`` is typed by ``type``: float64 for ``float``/``float_series`` (NaN as stored),
    int64 for ``int`` and ``datetime`` (epoch ms), bool for ``bool``, and an object array for
    the rest: ``str`` (string, string_series), ``list[str]`` (string_set, sorted), ``dict`` with
    ``path``/``size_bytes``/``mime_type`` (file, file_series) or ``type``/``edges``/``values``
    (histogram_series). ``steps`` holds the last step of file series (NaN elsewhere).
    """

    path: str
    type: str
    rows: npt.NDArray[np.int64]
    values: npt.NDArray[Any]
    steps: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True)
class TableData:
    """Table cells of ``containers`` (row order), column by column."""

    containers: list[Container]
    columns: list[Column]


class QueryService:
    """Reads of one store; cheap to keep for the life of the process (see :meth:`for_home`)."""

    _instances: ClassVar[dict[str, QueryService]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, store: Store, *, cache_dir: Path | None = None) -> None:
        self.store = store
        self.attributes = AttributeCache(cache_dir)
        self.tables = TableMemo()

    @classmethod
    def for_home(
        cls, home: str | Path | None = None, *, url: str | os.PathLike[str] | None = None
    ) -> QueryService:
        """The shared service of the store at ``home`` (``DESPINA_HOME``, ``~/.despina``).

        Raises:
            NeptuneProjectInaccessible: there is no store at that location.
        """
        address = resolve_store(home, url=url)
        with cls._instances_lock:
            service = cls._instances.get(address.key)
            if service is None:
                if address.location.kind == "sqlite" and not (Path(address.key) / DB_FILE).exists():
                    raise NeptuneProjectInaccessible(
                        f"There is no despina store at {address.key!r}; set DESPINA_HOME or call "
                        "despina.query.set_home() to point at the directory runs were logged to."
                    )
                service = cls._instances[address.key] = cls(
                    open_address(address),
                    cache_dir=attr_files.cache_directory(address.home, address.key),
                )
            return service

    @classmethod
    def for_store(cls, store: Store) -> QueryService:
        """A service over an open ``store`` keeping its attribute rows on disk as
        :meth:`for_home` does (in ``<home>/cache/attributes/``, the files an in-process reader
        of the same store uses): a restarted server's first read starts from them."""
        # the key resolve_store gives it: the embedded store's directory, or the database URL
        key = str(store.home) if store.dialect == "sqlite" else str(getattr(store, "url", ""))
        return cls(store, cache_dir=attr_files.cache_directory(store.home, key))

    @contextlib.contextmanager
    def snapshot(self, project: str) -> Iterator[Snapshot]:
        """A read transaction over ``project``.

        Raises:
            NeptuneProjectInaccessible: the project is not in the store.
        """
        try:
            project_id = self.store.project_id(project)
        except (ProjectNotFound, ConfigError) as exc:
            raise NeptuneProjectInaccessible(str(exc)) from None
        with self.store.read() as conn:
            yield Snapshot(self, conn, project, project_id)

    @contextlib.contextmanager
    def batch(self) -> Iterator[BatchReads]:
        """A read transaction over every project for the batch API (the server's retrieval
        endpoints); which projects a caller may read is the caller's check."""
        with self.store.read() as conn:
            yield BatchReads(conn)

    def projects(self) -> list[str]:
        """Every project of the store (``workspace/project``), sorted."""
        return self.store.list_projects()


class Snapshot:
    """The reads of one project inside one read transaction."""

    def __init__(self, service: QueryService, conn: Any, project: str, project_id: int) -> None:
        self.service = service
        self.conn = conn
        self.project = project
        self.project_id = project_id
        self.now_ms = int(time.time() * 1000)
        self._compiled: tuple[object, tuple[str, list[Any]]] | None = None

    # -- search ------------------------------------------------------------------------------

    def search(
        self,
        *,
        kind: ContainerKind,
        nql: Filter | str | nql_ast.Node | None = None,
        sort_by: Attribute | None = None,
        direction: Literal["asc", "desc"] = "desc",
        limit: int | None = None,
    ) -> list[Container]:
        """Experiment heads (``kind="experiment"``) or runs matching ``nql``, sorted.

        Rows without the sort attribute come last in both directions; ties keep creation
        order. ``sort_by=None`` sorts by ``sys/creation_time``.
        """
        # models and trashed runs never appear in the query API (as with Neptune's)
        where = None if nql is None else self._compile(nql)
        sort = sort_by or Attribute("sys/creation_time", "datetime")
        found = table_reads.search_containers(
            self.conn,
            self.project_id,
            experiments=kind == "experiment",
            where=where,
            sort_name=sort.name,
            sort_type=sort.type,
            descending=direction == "desc",
            limit=limit,
        )
        return [
            Container(
                row.pk,
                row.label,
                self.project,
                row.experiment_name,
                row.parent_pk,
                row.fork_step,
                row.creation_ms,
                row.sort_key,
            )
            for row in found
        ]

    def _compile(self, nql: Filter | str | nql_ast.Node) -> tuple[str, list[Any]]:
        # the last filter compiled is kept: table_read compiles it for its key, then searches
        if self._compiled is not None and self._compiled[0] is nql:
            return self._compiled[1]
        query = nql.to_ast() if isinstance(nql, Filter) else nql
        try:
            where = compile_filter(
                self.conn, query, now_ms=self.now_ms, project_ids=[self.project_id]
            )
        except NQLError as exc:
            raise NeptuneUnexpectedResponseError(
                f"the filter {str(nql)!r} cannot be evaluated: {exc}"
            ) from None
        self._compiled = (nql, where)
        return where

    # -- attribute definitions ---------------------------------------------------------------

    def attribute_types(self, names: Iterable[str]) -> dict[str, set[str]]:
        """The types each name has anywhere in the project (for type inference, §6)."""
        names = list(names)
        out = attribute_reads.attribute_types(self.conn, self.project_id, names)
        for name in names:
            if name in SYS_COLUMNS:
                out.setdefault(name, set()).add(SYS_COLUMNS[name].type)
        return out

    def rows(
        self,
        containers: Sequence[Container],
        selector: Selector | None = None,
        *,
        types: Sequence[str] | None = None,
        values: bool = True,
        text: bool = True,
        series: bool = True,
        skip_empty: bool = False,
    ) -> AttrRows:
        """The attribute rows of ``containers`` (user attributes, tags) whose path passes
        ``selector`` (all for ``None``) and whose type is in ``types``, with the columns asked
        for (see :func:`despina.query.attrs.read_columns`)."""
        spec = ReadSpec(
            self._paths_for(selector),
            None if types is None else tuple(sorted(types)),
            values,
            text,
            series,
            skip_empty,
        )
        pks = [c.pk for c in containers]
        return self.service.attributes.rows(self.conn, self.project_id, pks, spec)

    def _paths_for(self, selector: Selector | None) -> tuple[str, ...] | None:
        """The paths a read must cover for ``selector`` (``None``: every path)."""
        if selector is None or selector.accepts_every_name():
            return None
        exact = selector.exact_names()
        if exact is not None:
            return tuple(sorted(exact))
        candidates = store_paths(self.conn)
        if candidates is None:
            return None
        wanted = selector.wanted_paths(candidates)
        return None if len(wanted) == len(candidates) else tuple(wanted)

    def definitions(
        self,
        containers: Sequence[Container] | None,
        selector: Selector,
        *,
        with_empty_series: bool = False,
    ) -> list[tuple[str, str]]:
        """Distinct ``(path, type)`` of the containers' attributes (all runs of the project for
        ``None``) that pass ``selector``, ``sys/`` attributes included, sorted."""
        found: set[tuple[str, str]] = set()
        if containers is None:
            found.update(
                attribute_reads.project_definitions(
                    self.conn, self.project_id, with_empty_series=with_empty_series
                )
            )
        else:
            rows = self.rows(
                containers,
                selector,
                values=False,
                text=False,
                series=False,
                skip_empty=not with_empty_series,
            )
            pairs = sorted_unique(rows.path.astype(np.int64) * 16 + rows.type)
            found.update(
                (rows.paths[int(code) // 16], ATTRIBUTE_TYPES[int(code) % 16]) for code in pairs
            )
        found.update(self._sys_definitions(containers, selector))
        return sorted(d for d in found if selector.accepts(*d))

    def _sys_definitions(
        self, containers: Sequence[Container] | None, selector: Selector
    ) -> set[tuple[str, str]]:
        """The ``sys/`` columns that some container (or run of the project) has a value for."""
        if containers is not None and not containers:
            return set()
        present = present_sys(
            self.conn,
            [self.project_id],
            None if containers is None else [c.pk for c in containers],
            live_only=False,
        )
        types = {path: SYS_COLUMNS[path].type for path in present}
        return {(p, t) for p, t in types.items() if selector.accepts(p, t)}

    def _sys_values(self, containers: Sequence[Container], paths: list[str]) -> list[list[Any]]:
        """Per path, the values for each container (``None``: absent)."""
        by_pk = sys_rows(self.conn, [c.pk for c in containers], paths)
        return [[by_pk[c.pk][i] for c in containers] for i in range(len(paths))]

    # -- tables ------------------------------------------------------------------------------

    def table(self, containers: Sequence[Container], selector: Selector) -> TableData:
        """The cells of every (path, type) of ``containers`` that passes ``selector``; series
        give their last committed value (§7.1)."""
        containers = list(containers)
        text = any(t in _TEXT_TYPES for t in selector.types)
        # series without committed points are absent
        rows = self.rows(
            containers, selector, values=True, text=text, series=False, skip_empty=True
        )
        kept = np.arange(len(rows))
        row_of = np.zeros(len(rows), np.int64)
        row_of[kept] = _positions([c.pk for c in containers], rows.run[kept])
        keys = rows.path[kept].astype(np.int64) * 16 + rows.type[kept]
        order = kept[np.argsort(keys, kind="stable")]
        sorted_keys = np.sort(keys, kind="stable")
        starts = np.flatnonzero(np.diff(sorted_keys, prepend=-1) != 0)
        ends = np.append(starts[1:], len(order)) if len(starts) else starts
        columns = []
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            code = int(sorted_keys[start])
            path, type_ = rows.paths[code // 16], ATTRIBUTE_TYPES[code % 16]
            if not selector.accepts(path, type_):
                continue
            picked = order[start:end]
            columns.append(_column(path, type_, row_of[picked], rows, picked))
        wanted = [c.path for c in SYS_COLUMNS.values() if selector.accepts(c.path, c.type)]
        if wanted and containers:
            for path, values in zip(wanted, self._sys_values(containers, wanted), strict=True):
                present = np.array([i for i, v in enumerate(values) if v is not None], np.int64)
                if len(present):
                    picked_values = [values[i] for i in present]
                    columns.append(
                        _sys_column(path, SYS_COLUMNS[path].type, present, picked_values)
                    )
        return TableData(containers, columns)

    # -- series ------------------------------------------------------------------------------

    def series(
        self,
        containers: Sequence[Container],
        selector: Selector,
        *,
        with_empty: bool = False,
    ) -> SeriesSet:
        """The series attributes of ``containers`` that pass ``selector`` (in no particular
        order). ``with_empty`` keeps series without committed points."""
        series_types = [t for t in SERIES_TYPES if t in selector.types]
        rows = self.rows(
            containers,
            selector,
            types=series_types,
            values=True,
            text=False,
            series=True,
            skip_empty=not with_empty,
        )
        series_codes = [TYPE_CODE[t] for t in series_types]
        mask = np.isin(rows.type, series_codes)
        if not with_empty:
            mask &= rows.count != 0
        candidate = np.flatnonzero(mask)
        keys = rows.path[candidate].astype(np.int64) * 16 + rows.type[candidate]
        distinct = sorted_unique(keys)
        accepted = np.array(
            [
                selector.accepts(rows.paths[int(k) // 16], ATTRIBUTE_TYPES[int(k) % 16])
                for k in distinct.tolist()
            ],
            dtype=bool,
        )
        if len(candidate):
            candidate = candidate[accepted[np.searchsorted(distinct, keys)]]
        picked = candidate
        container = _positions([c.pk for c in containers], rows.run[picked])
        parents = np.array([-1 if c.parent_pk is None else c.parent_pk for c in containers])
        return SeriesSet(
            container=container,
            run=rows.run[picked],
            parent=parents[container] if len(container) else np.empty(0, np.int64),
            path=rows.path[picked].astype(np.int64),
            paths=rows.paths,
            type_code=rows.type[picked],
            attr_id=rows.attr_id[picked],
            count=rows.count[picked],
            last_step=rows.last_step[picked],
            last_value=rows.num_f[picked],
            last_ts=rows.last_ts[picked],
        )

    def float_series(
        self,
        series: SeriesSet,
        *,
        mode: LineageMode = "full",
        step_range: StepRange = StepRange(),  # noqa: B008 (immutable)
        tail_limit: int | None = None,
        previews: bool = False,
    ) -> FloatBatch:
        """Points of float series (see :func:`despina.query.points.read_float_series`)."""
        return read_float_series(
            self.conn,
            series,
            mode=mode,
            step_range=step_range,
            tail_limit=tail_limit,
            previews=previews,
        )

    def point_series(
        self,
        series: SeriesSet,
        *,
        mode: LineageMode = "full",
        step_range: StepRange = StepRange(),  # noqa: B008 (immutable)
        tail_limit: int | None = None,
    ) -> list[PointRows]:
        """Points of string, histogram and file series, per request."""
        return read_point_series(
            self.conn, series, mode=mode, step_range=step_range, tail_limit=tail_limit
        )

    def buckets(
        self,
        series: SeriesSet,
        *,
        limit: int,
        mode: LineageMode = "full",
        previews: bool = False,
        include_min_max: bool = False,
    ) -> _buckets.BucketSet:
        """``limit + 1`` buckets over the common step range of all ``series`` (§13.1)."""
        return _buckets.compute_buckets(
            self.conn,
            series,
            bucket_count=limit + 1,
            mode=mode,
            previews=previews,
            include_min_max=include_min_max,
        )

    # -- files -------------------------------------------------------------------------------

    def blob(self, storage_key: str) -> tuple[str, int] | None:
        """The key in the store's blob store (``store.blobs``) and the size of the content
        stored under ``storage_key``, or ``None`` when it is not in the store."""
        entry = table_reads.blob_entry(self.conn, self.project_id, storage_key)
        if entry is None or not self.service.store.blobs.exists(entry[0]):
            return None
        return entry

    # -- compound reads (one public call each; see operations.py) ------------------------------

    def definitions_read(self, **arguments: Any) -> list[tuple[str, str]]:
        """:func:`despina.query.operations.read_definitions` on this snapshot."""
        return operations.read_definitions(self, **arguments)

    def table_read(self, **arguments: Any) -> TableData:
        """:func:`despina.query.operations.read_table` on this snapshot; the same table again
        while nothing was written to the store (``table_memo.py``)."""
        version = self.service.store.read_version(self.conn)
        if version is None:
            return operations.read_table(self, **arguments)
        key = self._table_key(arguments)
        memo = self.service.tables
        owner = None if self.service.store.read_versions_shared else self.conn
        found = memo.get(key, owner, version)
        if found is None:
            found = operations.read_table(self, **arguments)
            memo.put(key, owner, version, found)
        return found

    def _table_key(self, arguments: dict[str, Any]) -> tuple[Any, ...]:
        """What a table read depends on besides the store's data: the compiled filter (the
        evaluation time among its parameters when it uses it), the other arguments (their
        ``repr``: selectors and attributes are not hashable) and the project's spelling,
        which labels the rows."""
        nql = arguments.get("nql")
        where = None if nql is None else self._compile(nql)
        rest = sorted((name, repr(value)) for name, value in arguments.items() if name != "nql")
        return (self.project_id, self.project, repr(where), tuple(rest))

    def metrics_read(self, **arguments: Any) -> operations.MetricsRead:
        """:func:`despina.query.operations.read_metrics` on this snapshot."""
        return operations.read_metrics(self, **arguments)

    def points_read(self, **arguments: Any) -> operations.PointsRead:
        """:func:`despina.query.operations.read_points` on this snapshot."""
        return operations.read_points(self, **arguments)

    def buckets_read(self, **arguments: Any) -> operations.BucketsRead:
        """:func:`despina.query.operations.read_buckets` on this snapshot."""
        return operations.read_buckets(self, **arguments)


def prepare(url: str | os.PathLike[str] | None = None) -> None:
    """Import what the first query on the store at ``url`` (``None``: ``DESPINA_STORE``)
    needs, so that a notebook's set-up cell pays for it rather than its first query: the
    PostgreSQL driver and its pool (a tenth of a second), the NQL compiler of the store's
    dialect, the parts of pyarrow pandas loads on its first string column. A URL that does not
    parse is left for the query to report."""
    import pyarrow.pandas_compat
    import pyarrow.vendored.version  # noqa: F401

    import despina.store.nql.compiler

    chosen = url if url not in (None, "") else os.environ.get("DESPINA_STORE") or None
    try:
        kind = "sqlite" if chosen is None else parse_store_url(chosen).kind
    except ConfigError:
        return
    if kind == "sqlite":
        import despina.store.nql.sqlite
    else:
        import despina.store.nql.postgres
        import despina.store.postgres.store  # noqa: F401


def _positions(pks: list[int], wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The index in ``pks`` of every element of ``wanted`` (all present)."""
    keys = np.asarray(pks, dtype=np.int64)
    if not len(wanted):
        return np.empty(0, np.int64)
    sorter = np.argsort(keys, kind="stable")
    return sorter[np.searchsorted(keys, wanted, sorter=sorter)].astype(np.int64)


def _column(
    path: str, type_: str, rows_at: npt.NDArray[np.int64], rows: AttrRows, picked: npt.NDArray[Any]
) -> Column:
    if type_ in ("float", "float_series"):
        return Column(path, type_, rows_at, rows.num_f[picked])
    if type_ in ("int", "datetime"):
        return Column(path, type_, rows_at, rows.num_i[picked])
    if type_ == "bool":
        return Column(path, type_, rows_at, rows.num_i[picked] != 0)
    texts = rows.text[picked]
    if type_ in ("string", "string_series"):
        return Column(path, type_, rows_at, texts)
    values = np.empty(len(texts), dtype=object)
    values[:] = [None if t is None else json.loads(t) for t in texts]
    steps = None
    if type_ == "file_series":
        steps = rows.last_step[picked] / 1e6
    return Column(path, type_, rows_at, values, steps)


def _sys_column(path: str, type_: str, rows_at: npt.NDArray[np.int64], values: list[Any]) -> Column:
    if type_ == "float":
        return Column(path, type_, rows_at, np.array(values, dtype=np.float64))
    if type_ in ("int", "datetime"):
        return Column(path, type_, rows_at, np.array(values, dtype=np.int64))
    if type_ == "bool":
        return Column(path, type_, rows_at, np.array(values, dtype=np.int64) != 0)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return Column(path, type_, rows_at, array)


prepare()
