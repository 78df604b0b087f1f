"""Attribute definitions (#12, JSON out) and attribute values (#13), paged by keyset."""

from __future__ import annotations

from typing import Any

from neptune_api.proto.neptune_pb.api.v1.model.attributes_pb2 import (
    ProtoNextPageDTO,
    ProtoQueryAttributesExperimentResultDTO,
    ProtoQueryAttributesResultDTO,
)
from starlette.responses import JSONResponse, Response

from despina.server.auth import Principal
from despina.server.encode import WIRE_TYPES, attribute_dto
from despina.server.errors import access_denied
from despina.server.retrieval.base import RetrievalBase
from despina.server.retrieval.fields import (
    MAX_PAGE,
    count,
    field,
    json_body,
    name_filter,
    protobuf,
    strings,
    type_filter,
)
from despina.server.retrieval.tokens import key_token, make_key_token
from despina.store.access import ProjectInfo, find_project

__all__ = ["VALUES_RESPONSE_BYTES", "attributes", "definitions"]

VALUES_RESPONSE_BYTES = 32 * 1024 * 1024
"""Bytes of attributes in one attribute-values answer (values hold up to 64 KiB each); past
it the page ends early with a token, which the client follows."""


def definitions(
    service: RetrievalBase, principal: Principal, body: bytes, query: dict[str, str]
) -> Response:
    where = "definitions"
    data = json_body(body)
    project_names = strings(data, "projectIdentifiers", where) or []
    run_ids = strings(data, "experimentIdsFilter", where)
    types = type_filter(data, where)
    predicate, exact, nothing = name_filter(data, where)
    page = field(data, "nextPage", dict, where) or {}
    limit = count(page, "limit", f"{where}.nextPage", MAX_PAGE, MAX_PAGE) or MAX_PAGE
    key = key_token(page.get("nextPageToken"), f"{where}.nextPage", (str, str))
    after = None if key is None else (key[0], key[1])
    projects: dict[str, ProjectInfo] = {}
    for name in project_names:
        principal.require(name)
        info = find_project(service.store, name)
        if info is None:
            if run_ids is None:
                raise access_denied(f"project {name!r} does not exist", 404)
            continue
        projects[name] = info
    if run_ids is not None:
        projects.update(service.run_projects(principal, run_ids, where))
        allowed = {p.id for n, p in projects.items() if not project_names or n in project_names}
    entries: list[tuple[str, str]] = []
    if not nothing and projects:
        with service.queries.batch() as reads:
            project_ids: list[int] | None = [p.id for p in projects.values()]
            pks: list[int] | None = None
            if run_ids is not None:
                runs = reads.resolve_runs(run_ids, projects)
                pks = sorted({r.pk for r in runs.values() if r.project.id in allowed})
                project_ids = None
            if pks != []:
                # keyset paging: a page reads on from the last entry sent, one entry past
                # its end (which says that more follow)
                entries = reads.definitions(
                    project_ids=project_ids,
                    run_pks=pks,
                    exact_names=exact,
                    predicate=predicate,
                    types=types,
                    after=after,
                    limit=limit + 1,
                )
    chunk = entries[:limit]
    more = len(entries) > limit
    return JSONResponse(
        {
            "entries": [{"name": n, "type": WIRE_TYPES[t]} for n, t in chunk],
            "nextPage": {
                "nextPageToken": make_key_token(list(chunk[-1])) if more else None,
                "limit": limit,
            },
        }
    )


def attributes(
    service: RetrievalBase, principal: Principal, body: bytes, query: dict[str, str]
) -> Response:
    where = "attributes"
    data = json_body(body)
    name = query.get("projectIdentifier", "")
    if name:
        service.project(principal, name)
    run_ids = strings(data, "experimentIdsFilter", where) or []
    names = strings(data, "attributeNamesFilter", where)
    types = type_filter(data, where)
    predicate, exact, nothing = name_filter(data, where)
    page = field(data, "nextPage", dict, where) or {}
    limit = count(page, "limit", f"{where}.nextPage", MAX_PAGE, MAX_PAGE) or MAX_PAGE
    key = key_token(page.get("nextPageToken"), f"{where}.nextPage", (int, int, str))
    projects = service.run_projects(principal, run_ids, where)
    result = ProtoQueryAttributesResultDTO()
    last: list[Any] | None = None  # [run index, run pk, path] of the last entry sent
    more = False
    if run_ids and not nothing and names != []:
        with service.queries.batch() as reads:
            runs = reads.resolve_runs(run_ids, projects)
            ordered = list(dict.fromkeys(runs[i] for i in run_ids if i in runs))
            start, after_path = 0, None
            if key is not None:  # keyset paging: go on after the last entry sent
                index, pk, after_path = key
                start = next((i for i, r in enumerate(ordered) if r.pk == pk), -1)
                if start < 0:  # that run is gone since: go on from where it stood
                    start, after_path = max(0, index), None
            sent = size = 0
            step = 16
            i = start
            while i < len(ordered) and not more:
                part = ordered[i : i + step]
                values = reads.attribute_values(
                    [r.pk for r in part],
                    names=names if names is not None else exact,
                    predicate=predicate if names is None else None,
                    types=types,
                )
                for position, run in enumerate(part, start=i):
                    current: ProtoQueryAttributesExperimentResultDTO | None = None
                    skip_to = after_path if position == start else None
                    for value in sorted(values.get(run.pk, []), key=lambda v: v.path):
                        if skip_to is not None and value.path <= skip_to:
                            continue
                        dto = attribute_dto(value)
                        size += dto.ByteSize()
                        if sent >= limit or (sent and size > VALUES_RESPONSE_BYTES):
                            more = True
                            break
                        if current is None:
                            current = result.entries.add(
                                experimentId=run.uuid, experimentShortId=run.sys_id
                            )
                        current.attributes.append(dto)
                        sent += 1
                        last = [position, run.pk, value.path]
                    if more:
                        break
                i += len(part)
                step = min(step * 2, 1024)  # few reads for many small runs
    token = make_key_token(last) if more and last is not None else ""
    result.nextPage.CopyFrom(ProtoNextPageDTO(nextPageToken=token, limit=limit))
    return protobuf(result)
