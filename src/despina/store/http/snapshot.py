"""The read side of the HTTP store: ``despina.query`` against the server an API token names.

:class:`RemoteQueryService` and :class:`RemoteSnapshot` stand in for the in-process
:class:`~despina.query.service.QueryService` and :class:`~despina.query.service.Snapshot`:
the same methods, the same result types. Each call is one request to a native read endpoint
(``/api/despina/v1/query/...``, :mod:`despina.server.native.reads`) that runs the same
snapshot operation on the server's store and answers columns; the public query functions
build their DataFrames from the results with the same code as in-process.

A public call makes one request for its data (the compound operations of
:mod:`despina.query.operations`: search and read in one server-side read transaction), plus
one small request for the types of untyped filter attributes when it has some. Separate
requests are separate read transactions: a remote "snapshot" groups calls, it does not pin
one state of the store across them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from despina.query.filters import Attribute, Filter
from despina.query.operations import BucketsRead, MetricsRead, PointsRead
from despina.query.points import LineageMode, StepRange
from despina.query.resolve import Selector
from despina.query.service import Container, TableData
from despina.store.http import read_wire
from despina.store.http.connection import NATIVE_PREFIX, ServerConnection, connection_for

__all__ = ["RemoteQueryService", "RemoteSnapshot", "remote_service"]


class RemoteQueryService:
    """The reads of the server behind one API token."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    @property
    def server(self) -> str:
        return self.connection.server

    @contextlib.contextmanager
    def snapshot(self, project: str) -> Iterator[RemoteSnapshot]:
        """Reads of ``project`` (the first one raises ``NeptuneProjectInaccessible`` when the
        server has no such project, as the in-process snapshot does on opening)."""
        yield RemoteSnapshot(self.connection, project)

    def projects(self) -> list[str]:
        """The server's projects this token may read, sorted."""
        return list(self.connection.post_json("/query/projects", {}))


def remote_service(token: str) -> RemoteQueryService:
    """The service of the server ``token`` names (its connection is shared in the process).

    Raises:
        ConfigError: the token does not name an http(s) server.
    """
    return RemoteQueryService(connection_for(token))


class RemoteSnapshot:
    """The reads of one project on a server (see the module docstring)."""

    def __init__(self, connection: ServerConnection, project: str) -> None:
        self.connection = connection
        self.project = project

    def _json(self, path: str, body: dict[str, Any]) -> Any:
        return self.connection.post_json(path, {"project": self.project, **body})

    def _columns(self, path: str, body: dict[str, Any]) -> bytearray:
        answer = self.connection.request(
            "POST", NATIVE_PREFIX + path, json_body={"project": self.project, **body}
        )
        return bytearray(answer.content)  # writable arrays, as in-process

    # -- primitives ----------------------------------------------------------------------------

    def search(
        self,
        *,
        kind: Literal["experiment", "run"],
        nql: Filter | str | None = None,
        sort_by: Attribute | None = None,
        direction: Literal["asc", "desc"] = "desc",
        limit: int | None = None,
    ) -> list[Container]:
        """As :meth:`despina.query.service.Snapshot.search` (sort keys with ``sort_by``)."""
        if isinstance(nql, str):
            nql = Filter.nql(nql)
        body = {
            "kind": kind,
            "nql": read_wire.filter_to_wire(nql),
            "sort_by": None if sort_by is None else read_wire.attribute_to_wire(sort_by),
            "direction": direction,
            "limit": limit,
            "sort_keys": sort_by is not None,
        }
        return read_wire.decode_containers(self.project, self._columns("/query/search", body))

    def attribute_types(self, names: Iterable[str]) -> dict[str, set[str]]:
        """As :meth:`despina.query.service.Snapshot.attribute_types`."""
        found = self._json("/query/attribute-types", {"names": list(names)})
        return {str(name): set(types) for name, types in found.items()}

    def table(self, containers: Sequence[Container], selector: Selector) -> TableData:
        """As :meth:`despina.query.service.Snapshot.table` (containers of this project)."""
        containers = list(containers)
        body = {"pks": [c.pk for c in containers], "selector": read_wire.selector_to_wire(selector)}
        return read_wire.decode_table(self.project, self._columns("/query/table", body), containers)

    def download(self, storage_key: str, target: Path) -> bool:
        """Write the content stored under ``storage_key`` to ``target``; ``False`` when the
        server holds none (nothing is written)."""
        return self.connection.download(
            "/query/file", {"project": self.project, "key": storage_key}, target
        )

    # -- compound reads (despina.query.operations) ---------------------------------------------

    def definitions_read(
        self, *, kind: str, nql: Filter | None, selector: Selector, search: bool
    ) -> list[tuple[str, str]]:
        body = {
            "kind": kind,
            "nql": read_wire.filter_to_wire(nql),
            "selector": read_wire.selector_to_wire(selector),
            "search": search,
        }
        return [(str(p), str(t)) for p, t in self._json("/query/definitions", body)]

    def table_read(
        self,
        *,
        kind: str,
        nql: Filter | None,
        sort_by: Attribute,
        direction: str,
        limit: int | None,
        selector: Selector,
    ) -> TableData:
        body = {
            "kind": kind,
            "nql": read_wire.filter_to_wire(nql),
            "sort_by": read_wire.attribute_to_wire(sort_by),
            "direction": direction,
            "limit": limit,
            "selector": read_wire.selector_to_wire(selector),
        }
        return read_wire.decode_table(self.project, self._columns("/query/table", body))

    def metrics_read(
        self,
        *,
        kind: str,
        nql: Filter | None,
        selector: Selector,
        mode: LineageMode,
        step_range: StepRange,
        tail_limit: int | None,
        previews: bool,
        timestamps: bool = True,
    ) -> MetricsRead:
        """As :func:`despina.query.operations.read_metrics`; ``timestamps=False`` leaves the
        timestamps out of the answer (zeros: for a frame without ``absolute_time``)."""
        body = {
            **self._series_body(kind, nql, selector, mode, step_range, tail_limit),
            "previews": previews,
            "timestamps": timestamps,
        }
        return read_wire.decode_metrics(self.project, self._columns("/query/metrics", body))

    def points_read(
        self,
        *,
        kind: str,
        nql: Filter | None,
        selector: Selector,
        mode: LineageMode,
        step_range: StepRange,
        tail_limit: int | None,
    ) -> PointsRead:
        body = self._series_body(kind, nql, selector, mode, step_range, tail_limit)
        return read_wire.decode_points(self.project, self._columns("/query/series", body))

    def buckets_read(
        self,
        *,
        nql: Filter | None,
        selector: Selector,
        limit: int,
        mode: LineageMode,
        previews: bool,
        include_min_max: bool,
    ) -> BucketsRead:
        body = {
            "nql": read_wire.filter_to_wire(nql),
            "selector": read_wire.selector_to_wire(selector),
            "limit": limit,
            "mode": mode,
            "previews": previews,
            "include_min_max": include_min_max,
        }
        return read_wire.decode_buckets(self.project, self._columns("/query/buckets", body))

    @staticmethod
    def _series_body(
        kind: str,
        nql: Filter | None,
        selector: Selector,
        mode: LineageMode,
        step_range: StepRange,
        tail_limit: int | None,
    ) -> dict[str, Any]:
        return {
            "kind": kind,
            "nql": read_wire.filter_to_wire(nql),
            "selector": read_wire.selector_to_wire(selector),
            "mode": mode,
            "step_range": [step_range.start, step_range.end],
            "tail_limit": tail_limit,
        }
