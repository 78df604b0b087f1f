"""Native read endpoints: ``despina.query`` against a server (docs/remote-api.md).

Each endpoint runs one snapshot operation of the query service on the server's store
(``state.retrieval.queries``), in one read transaction, and answers the same structures the
in-process snapshot returns: small ones as JSON, the rest as a column frame
(:mod:`despina.store.http.columns`). The client builds its DataFrames from them with the same
code as in-process, so remote frames equal in-process frames.

The compound operations (``/query/table``, ``/query/metrics``, ``/query/series``,
``/query/buckets``, ``/query/definitions``) search the containers and read their data in one
step: the intermediate structures (matched runs, a million series descriptors) never travel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from starlette.responses import Response

from despina.errors import InvalidQuery
from despina.query.points import StepRange
from despina.query.service import Container, Snapshot
from despina.server.auth import Principal
from despina.server.downloads import blob_response
from despina.server.errors import error_response
from despina.server.native.common import NativeRoute, native_endpoint, project_in
from despina.store.blobs import BlobNotFound
from despina.store.http import read_wire
from despina.store.http.columns import COLUMNS_TYPE

__all__ = ["ROUTES"]

_KINDS = ("experiment", "run")
_MODES = ("full", "experiment", "own")


@contextmanager
def _snapshot(state: Any, principal: Principal, body: Any) -> Iterator[Snapshot]:
    """The project's snapshot, after the access check (before any other field is read)."""
    with state.retrieval.queries.snapshot(project_in(principal, body)) as snap:
        yield snap


def _columns(data: bytes) -> Response:
    return Response(data, media_type=COLUMNS_TYPE)


def _field(body: Mapping[str, Any], name: str, check: Callable[[Any], bool], what: str) -> Any:
    value = body.get(name)
    if not check(value):
        raise InvalidQuery(f"the request's {name!r} must be {what} (got {value!r})")
    return value


def _kind(body: Mapping[str, Any]) -> Any:
    return _field(body, "kind", lambda v: v in _KINDS, "'experiment' or 'run'")


def _mode(body: Mapping[str, Any]) -> Any:
    return _field(body, "mode", lambda v: v in _MODES, "'full', 'experiment' or 'own'")


def _flag(body: Mapping[str, Any], name: str) -> bool:
    return bool(_field(body, name, lambda v: isinstance(v, bool), "true or false"))


def _count(body: Mapping[str, Any], name: str) -> int | None:
    return _field(
        body,
        name,
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
        "a positive integer or null",
    )


def _direction(body: Mapping[str, Any]) -> Any:
    return _field(body, "direction", lambda v: v in ("asc", "desc"), "'asc' or 'desc'")


def _step_range(body: Mapping[str, Any]) -> StepRange:
    return read_wire.step_range_from_wire(body.get("step_range"))


# -- endpoints --------------------------------------------------------------------------------


def query_projects(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    """The projects of the store the token may read."""
    return [p for p in state.retrieval.queries.projects() if principal.reaches(p)]


def query_attribute_types(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    """``{name: [type, ...]}`` of the project's attributes named in ``names`` (inference)."""
    with _snapshot(state, principal, body) as snap:
        names = _field(
            body,
            "names",
            lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
            "a list of attribute names",
        )
        found = snap.attribute_types(names)
    return {name: sorted(types) for name, types in found.items()}


def query_search(state: Any, principal: Principal, body: Any, params: Any) -> Response:
    """The matched containers, sorted and limited (their sort keys with ``sort_keys``)."""
    with _snapshot(state, principal, body) as snap:
        sort_by = body.get("sort_by")
        found = snap.search(
            kind=_kind(body),
            nql=read_wire.filter_from_wire(body.get("nql")),
            sort_by=None if sort_by is None else read_wire.attribute_from_wire(sort_by),
            direction=_direction(body),
            limit=_count(body, "limit"),
        )
    return _columns(read_wire.encode_containers(found, sort_keys=_flag(body, "sort_keys")))


def query_definitions(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    """``[[path, type], ...]`` of the matched containers (or of the project)."""
    with _snapshot(state, principal, body) as snap:
        found = snap.definitions_read(
            kind=_kind(body),
            nql=read_wire.filter_from_wire(body.get("nql")),
            selector=read_wire.selector_from_wire(body.get("selector")),
            search=_flag(body, "search"),
        )
    return [list(d) for d in found]


def query_table(state: Any, principal: Principal, body: Any, params: Any) -> Response:
    """The table of the matched containers, or of the row ids in ``pks`` (in that order)."""
    with _snapshot(state, principal, body) as snap:
        selector = read_wire.selector_from_wire(body.get("selector"))
        pks = body.get("pks")
        if pks is not None:
            if not isinstance(pks, list) or not all(
                isinstance(p, int) and not isinstance(p, bool) for p in pks
            ):
                raise InvalidQuery("the request's 'pks' must be a list of row ids")
            named = [Container(pk, "", snap.project, None, None, None) for pk in pks]
            return _columns(
                read_wire.encode_table(snap.table(named, selector), with_containers=False)
            )
        data = snap.table_read(
            kind=_kind(body),
            nql=read_wire.filter_from_wire(body.get("nql")),
            sort_by=read_wire.attribute_from_wire(body.get("sort_by")),
            direction=_direction(body),
            limit=_count(body, "limit"),
            selector=selector,
        )
    return _columns(read_wire.encode_table(data))


def query_metrics(state: Any, principal: Principal, body: Any, params: Any) -> Response:
    """Float series points of the matched containers (``fetch_metrics``)."""
    with _snapshot(state, principal, body) as snap:
        previews = _flag(body, "previews")
        read = snap.metrics_read(
            kind=_kind(body),
            nql=read_wire.filter_from_wire(body.get("nql")),
            selector=read_wire.selector_from_wire(body.get("selector")),
            mode=_mode(body),
            step_range=_step_range(body),
            tail_limit=_count(body, "tail_limit"),
            previews=previews,
        )
    return _columns(
        read_wire.encode_metrics(read, timestamps=_flag(body, "timestamps"), previews=previews)
    )


def query_series(state: Any, principal: Principal, body: Any, params: Any) -> Response:
    """String, histogram and file series points (``fetch_series``)."""
    with _snapshot(state, principal, body) as snap:
        read = snap.points_read(
            kind=_kind(body),
            nql=read_wire.filter_from_wire(body.get("nql")),
            selector=read_wire.selector_from_wire(body.get("selector")),
            mode=_mode(body),
            step_range=_step_range(body),
            tail_limit=_count(body, "tail_limit"),
        )
    return _columns(read_wire.encode_points(read))


def query_buckets(state: Any, principal: Principal, body: Any, params: Any) -> Response:
    """Buckets of the matched experiments' float series (``fetch_metric_buckets``)."""
    with _snapshot(state, principal, body) as snap:
        read = snap.buckets_read(
            nql=read_wire.filter_from_wire(body.get("nql")),
            selector=read_wire.selector_from_wire(body.get("selector")),
            limit=_field(
                body, "limit", lambda v: isinstance(v, int) and v > 0, "a positive integer"
            ),
            mode=_mode(body),
            previews=_flag(body, "previews"),
            include_min_max=_flag(body, "include_min_max"),
        )
    return _columns(read_wire.encode_buckets(read))


def query_file(state: Any, principal: Principal, body: Any, params: Any) -> Response:
    """The content of the file stored under ``key`` (404 with ``missing`` when there is none)."""
    with _snapshot(state, principal, body) as snap:
        key = _field(body, "key", lambda v: isinstance(v, str) and v != "", "a storage key")
        entry = snap.blob(key)
    if entry is not None:
        try:
            return blob_response(
                state.store.blobs, entry[0], entry[1], "application/octet-stream", "file"
            )
        except BlobNotFound:
            pass
    return error_response(
        404, f"nothing is stored under {key!r} in {snap.project!r}", extra={"missing": True}
    )


ROUTES: list[NativeRoute] = [
    native_endpoint("/query/projects", query_projects),
    native_endpoint("/query/attribute-types", query_attribute_types),
    native_endpoint("/query/search", query_search),
    native_endpoint("/query/definitions", query_definitions),
    native_endpoint("/query/table", query_table),
    native_endpoint("/query/metrics", query_metrics),
    native_endpoint("/query/series", query_series),
    native_endpoint("/query/buckets", query_buckets),
    native_endpoint("/query/file", query_file),
]
"""The read routes (``POST /api/despina/v1/query/...``)."""
