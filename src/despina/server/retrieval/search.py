"""Run search (#10) and global search (#11): a page of runs with the attributes asked for."""

from __future__ import annotations

import time
import uuid
from typing import Any

from neptune_api.proto.neptune_pb.api.v1.model.leaderboard_entries_pb2 import (
    ProtoAttributesDTO,
    ProtoLeaderboardEntriesSearchResultDTO,
)
from starlette.responses import Response

from despina.errors import NqlError
from despina.query.catalog import Sort
from despina.server.auth import Principal
from despina.server.encode import attribute_dto
from despina.server.errors import ApiError, bad_request
from despina.server.retrieval.base import RetrievalBase
from despina.server.retrieval.fields import (
    KNOWN_WIRE_TYPES,
    MAX_PAGE,
    count,
    field,
    json_body,
    protobuf,
    show,
)
from despina.store.access import ProjectInfo, list_project_infos

__all__ = ["SEARCH_RESPONSE_BYTES", "SEARCH_RUNS_PER_READ", "global_search", "search"]

SEARCH_RESPONSE_BYTES = 128 * 1024 * 1024
"""Bytes in one search page. The client stops at a page shorter than its limit, so a page
cannot end early: past this it is a 400 naming the limit."""
SEARCH_RUNS_PER_READ = 500
"""Runs whose attributes are read at a time while a page is built."""
_SYS_TABLE = ("sys/id", "sys/name", "sys/custom_run_id")


def search(
    service: RetrievalBase, principal: Principal, body: bytes, query: dict[str, str]
) -> Response:
    project = service.project(principal, query.get("projectIdentifier", ""))
    data = json_body(body)
    return _search(service, [project], data, global_search=False)


def global_search(
    service: RetrievalBase, principal: Principal, body: bytes, query: dict[str, str]
) -> Response:
    data = json_body(body)
    projects = [
        p
        for p in list_project_infos(service.store, principal.key.workspace)
        if principal.reaches(p.full_name)
    ]
    return _search(service, projects, data, global_search=True)


def _search(
    service: RetrievalBase,
    projects: list[ProjectInfo],
    data: dict[str, Any],
    *,
    global_search: bool,
) -> Response:
    where = "search"
    pagination = field(data, "pagination", dict, where) or {}
    offset = count(pagination, "offset", f"{where}.pagination", 0, 2**62)
    limit = count(pagination, "limit", f"{where}.pagination", MAX_PAGE, MAX_PAGE)
    leaders = bool(field(data, "experimentLeader", bool, where))
    sort = _sort(data)
    nql = field(data, "query", dict, where)
    text = field(nql, "query", str, f"{where}.query") if nql is not None else None
    projection: list[str] = list(_SYS_TABLE) if global_search else []
    filters = field(data, "attributeFilters", list, where) or []
    if len(filters) > 10_000:
        raise bad_request(f"{where}.attributeFilters has {len(filters)} paths; at most 10000")
    for item in filters:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise bad_request(
                f'{where}.attributeFilters must hold {{"path": <str>}}, got {show(item)}'
            )
        projection.append(item["path"])
    now_ms = int(time.time() * 1000)
    by_id = {p.id: p for p in projects}
    with service.queries.batch() as reads:
        # compiled in the read transaction: PostgreSQL evaluates regular expressions here
        compiled = (
            _compile(reads.conn, text, now_ms, list(by_id)) if text and text.strip() else None
        )
        total, pks = reads.search(
            list(by_id),
            compiled,
            leaders_only=leaders,
            sort=sort,
            offset=offset,
            limit=limit,
        )
        runs = reads.runs_by_pk(pks, by_id)
        result = ProtoLeaderboardEntriesSearchResultDTO(matching_item_count=total)
        size = 0
        # the page's attributes are read a slice of runs at a time, so a page past the
        # byte budget is refused having held about the budget, not the whole page
        for at in range(0, len(pks), SEARCH_RUNS_PER_READ):
            part = pks[at : at + SEARCH_RUNS_PER_READ]
            values = reads.attribute_values(part, names=projection) if projection else {}
            for pk in part:
                run = runs.get(pk)
                if run is None:
                    continue
                entry = ProtoAttributesDTO(
                    experiment_id=run.uuid,
                    type="run",
                    project_id=run.project.uuid,
                    organization_id=_organization_id(run.project.workspace),
                    project_name=run.project.name,
                    organization_name=run.project.workspace,
                    attributes=[attribute_dto(v) for v in values.get(pk, [])],
                )
                size += entry.ByteSize()
                if size > SEARCH_RESPONSE_BYTES:
                    raise bad_request(
                        f"{where}: a page of {len(pks)} runs with "
                        f"{len(set(projection))} attributes each exceeds "
                        f"{SEARCH_RESPONSE_BYTES} bytes; ask for fewer runs per page "
                        f"(pagination.limit {limit}; neptune-query: "
                        "NEPTUNE_QUERY_EXPERIMENT_SYS_ATTRS_BATCH_SIZE) or fewer attributes"
                    )
                result.entries.append(entry)
    return protobuf(result)


def _sort(data: dict[str, Any]) -> Sort:
    spec = field(data, "sorting", dict, "search")
    if spec is None:
        return Sort()
    direction = field(spec, "dir", str, "search.sorting") or "descending"
    if direction not in ("ascending", "descending"):
        raise bad_request(
            f"search.sorting.dir must be 'ascending' or 'descending', got {direction!r}"
        )
    by = field(spec, "sortBy", dict, "search.sorting") or {}
    name = field(by, "name", str, "search.sorting.sortBy") or "sys/creation_time"
    wire = field(by, "type", str, "search.sorting.sortBy")
    if wire is not None and wire not in KNOWN_WIRE_TYPES:
        raise bad_request(f"search.sorting.sortBy.type: unknown type {wire!r}")
    aggregation = (
        field(spec, "aggregationMode", str, "search.sorting")
        or field(by, "aggregationMode", str, "search.sorting.sortBy")
        or "last"
    )
    if aggregation not in ("last", "min", "max", "average", "variance", "auto", "none"):
        raise bad_request(f"search.sorting.aggregationMode: unknown mode {aggregation!r}")
    if aggregation in ("auto", "none"):
        aggregation = "last"
    return Sort(name, wire, aggregation, direction == "descending")


def _compile(
    conn: object, text: str, now_ms: int, project_ids: list[int]
) -> tuple[str, list[object]]:
    from despina.store.nql import compile_filter

    try:
        sql, params = compile_filter(conn, text, now_ms=now_ms, project_ids=project_ids)
    except NqlError as exc:
        title = getattr(exc, "title", "Invalid query")
        raise ApiError(
            400, str(exc), extra={"title": title, "position": getattr(exc, "start", 0)}
        ) from None
    return sql, list(params)


def _organization_id(workspace: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"despina-workspace:{workspace}"))
