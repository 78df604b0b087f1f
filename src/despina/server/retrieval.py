"""Retrieval endpoints for neptune-query (wire-protocol.md §6): decode, authorise, read, encode.

Requests are JSON (buckets: protobuf); answers are protobuf (definitions: JSON). Each handler
validates its body field by field and answers 400 naming the bad value; projects outside the
token's reach answer 403 with ``errorType: ACCESS_DENIED``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from neptune_api.proto.neptune_pb.api.v1.model.attributes_pb2 import (
    ProtoNextPageDTO,
    ProtoQueryAttributesExperimentResultDTO,
    ProtoQueryAttributesResultDTO,
)
from neptune_api.proto.neptune_pb.api.v1.model.leaderboard_entries_pb2 import (
    ProtoAttributesDTO,
    ProtoLeaderboardEntriesSearchResultDTO,
)
from neptune_api.proto.neptune_pb.api.v1.model.requests_pb2 import (
    ProtoGetTimeseriesBucketsRequest,
)
from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    FinitePoint,
    ProtoPointValueDTO,
    ProtoSeriesPointValueObjectDTO,
    ProtoSeriesValuesDTO,
    ProtoSeriesValuesResponseDTO,
    ProtoSeriesValuesSearchAfterDTO,
    ProtoSeriesValuesSingleSeriesResponseDTO,
    TimeseriesBucket,
    TimeseriesBuckets,
)
from starlette.responses import JSONResponse, Response

from despina.errors import NqlError
from despina.query.bucket_stats import BucketStats
from despina.query.catalog import (
    Sort,
    compile_name_filter,
    literal_names,
    parse_run_identifier,
)
from despina.query.float_batch import FlatSeries
from despina.query.lineage import LINEAGE_EXPERIMENT, LINEAGE_FULL, LINEAGE_OWN
from despina.query.points import step_bound
from despina.query.service import QueryService
from despina.server.auth import Principal
from despina.server.encode import (
    WIRE_TYPES,
    attribute_dto,
    buckets_response,
    file_ref_message,
    float_series_flat_response,
    histogram_message,
)
from despina.server.errors import ApiError, access_denied, bad_request, parse_json_body
from despina.server.settings import ServerSettings
from despina.store.access import ProjectInfo, find_project, list_project_infos
from despina.store.sqlite import Store

__all__ = ["RetrievalService"]

PROTOBUF = "application/x-protobuf"
MAX_PAGE = 10_000
MAX_SERIES = 10_000
MAX_BUCKET_EXPRESSIONS = 1000
MAX_BUCKETS = 10_000
MAX_RESPONSE_BUCKETS = 1000 * 1002
"""Buckets in one answer (expressions × (maxBuckets + 1)): neptune-query sends at most 1000
expressions of maxBuckets = limit + 1 ≤ 1001, which this admits."""
SERIES_PAGE_POINTS = 10_000
MAX_RESPONSE_POINTS = 1_000_000
SERIES_RESPONSE_POINTS = 200_000
SERIES_RESPONSE_BYTES = 64 * 1024 * 1024
VALUES_RESPONSE_BYTES = 32 * 1024 * 1024
SEARCH_RESPONSE_BYTES = 128 * 1024 * 1024
"""Bytes in one search page. The client stops at a page shorter than its limit, so a page
cannot end early: past this it is a 400 naming the limit."""
SEARCH_RUNS_PER_READ = 500
"""Bytes of attributes in one attribute-values answer (values hold up to 64 KiB each); past
it the page ends early with a token, which the client follows."""
"""Points and value bytes in one string/histogram/file series answer, over all its series:
series past the budget come back unfinished with their token (the client pages on)."""
"""Points in one float-series answer: what neptune-query asks for at most (it sends
``perSeriesPointsLimit = 1_000_000 // series``). A series named many times counts each time."""
MAX_STEP_MICRO = 2**62
PYTHON_TYPES = {wire: name for name, wire in WIRE_TYPES.items()}
KNOWN_WIRE_TYPES = set(PYTHON_TYPES) | {"experimentState", "complex", "gitRef"}
_SYS_TABLE = ("sys/id", "sys/name", "sys/custom_run_id")


# -- JSON field access ---------------------------------------------------------------------------


def _json(body: bytes) -> dict[str, Any]:
    data = parse_json_body(body) if body else {}
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[key]`` if present and of ``kind`` (None when absent or null)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise bad_request(f"{where}.{key} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise bad_request(f"{where}.{key} must be {_kind_name(kind)}, got {_show(value)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(data: dict[str, Any], key: str, where: str) -> float | None:
    value = _field(data, key, (int, float), where)
    if value is None:
        return None
    if not _finite(value):
        raise bad_request(f"{where}.{key} must be a finite number, got {_show(value)}")
    return float(value)


def _finite(value: float) -> bool:
    """Finite and within the float range (a JSON integer may hold hundreds of digits)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _count(data: dict[str, Any], key: str, where: str, default: int, maximum: int) -> int:
    value = _number(data, key, where)
    if value is None:
        return default
    if value < 0:
        raise bad_request(f"{where}.{key} must not be negative, got {value:g}")
    return min(int(value), maximum)


def _strings(data: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = _field(data, key, list, where)
    if value is None:
        return None
    for item in value:
        if not isinstance(item, str):
            raise bad_request(f"{where}.{key} must hold strings, got {_show(item)}")
    return value


def _key_token(token: object, where: str, shape: tuple[type, ...]) -> list[Any] | None:
    """The sort key a continuation token carries (keyset paging), checked against ``shape``."""
    if token in (None, ""):
        return None
    if not isinstance(token, str):
        raise bad_request(f"{where}.nextPageToken must be a string, got {_show(token)}")
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        key = None
    if not (
        isinstance(key, list)
        and len(key) == len(shape)
        and all(type(k) is t for k, t in zip(key, shape, strict=True))
    ):
        raise bad_request(f"{where}.nextPageToken {token[:40]!r} is not a token this server issued")
    return key


def _make_key_token(key: list[Any]) -> str:
    text = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _protobuf(message: Any) -> Response:
    return Response(message.SerializeToString(), media_type=PROTOBUF)


# -- shared parsing ------------------------------------------------------------------------------


def _type_filter(data: dict[str, Any], where: str) -> set[str] | None:
    items = _field(data, "attributeFilter", list, where)
    if items is None:
        return None
    types: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise bad_request(f"{where}.attributeFilter must hold objects, got {_show(item)}")
        wire = item.get("attributeType")
        if not isinstance(wire, str) or wire not in KNOWN_WIRE_TYPES:
            raise bad_request(
                f"{where}.attributeFilter: unknown attributeType {_show(wire)}; expected one of "
                f"{', '.join(sorted(KNOWN_WIRE_TYPES))}"
            )
        if wire in PYTHON_TYPES:
            types.add(PYTHON_TYPES[wire])
    return types


def _name_filter(
    data: dict[str, Any], where: str
) -> tuple[Callable[[str], bool] | None, list[str] | None, bool]:
    """``(predicate, exact names, matches nothing)`` of ``attributeNameFilter``."""
    spec = _field(data, "attributeNameFilter", dict, where)
    regex = _field(data, "attributeNameRegex", str, where)
    alternatives: list[tuple[list[str], list[str]]] = []
    if spec is not None and "mustMatchAny" in spec and spec["mustMatchAny"] is not None:
        items = spec["mustMatchAny"]
        if not isinstance(items, list):
            raise bad_request(f"{where}.attributeNameFilter.mustMatchAny must be a list")
        if not items:
            return None, None, True
        for item in items:
            if not isinstance(item, dict):
                raise bad_request(f"{where}.attributeNameFilter.mustMatchAny must hold objects")
            must = _strings(item, "mustMatchRegexes", f"{where}.attributeNameFilter") or []
            must_not = _strings(item, "mustNotMatchRegexes", f"{where}.attributeNameFilter") or []
            alternatives.append((must, must_not))
    if regex is not None:
        alternatives = [([*must, regex], must_not) for must, must_not in alternatives] or [
            ([regex], [])
        ]
    if not alternatives:
        return None, None, False
    exact = None
    if len(alternatives) == 1 and not alternatives[0][1]:
        exact = literal_names(alternatives[0][0])
    try:
        predicate = compile_name_filter(alternatives)
    except re.error as exc:
        raise bad_request(f"{where}.attributeNameFilter has an invalid regex: {exc}") from None
    return predicate, exact, False


def _lineage_mode(lineage: object, entity: object, where: str) -> str:
    if lineage in (None, "FULL", 0):
        return LINEAGE_FULL
    if lineage in ("NONE", "ONLY_OWNED", 1):
        if entity in ("RUN", 1):
            return LINEAGE_OWN
        if entity in (None, "EXPERIMENT", 0):
            return LINEAGE_EXPERIMENT
        raise bad_request(
            f"{where}.lineageEntityType must be EXPERIMENT or RUN, got {_show(entity)}"
        )
    raise bad_request(f"{where}.lineage must be FULL or NONE, got {_show(lineage)}")


def _step_range(data: dict[str, Any], where: str) -> tuple[int, int]:
    spec = _field(data, "stepRange", dict, where)
    lo, hi = -1, MAX_STEP_MICRO
    if spec is not None:
        start = _number(spec, "from", f"{where}.stepRange")
        end = _number(spec, "to", f"{where}.stepRange")
        if start is not None:
            lo = max(lo, step_bound(start, lower=True))
        if end is not None:
            hi = min(hi, step_bound(end, lower=False))
    return lo, hi


def _order(data: dict[str, Any], where: str, default: str) -> bool:
    order = _field(data, "order", str, where) or default
    if order not in ("ascending", "descending"):
        raise bad_request(f"{where}.order must be 'ascending' or 'descending', got {order!r}")
    return order == "descending"


# -- the service ---------------------------------------------------------------------------------


class RetrievalService:
    """Answers the retrieval endpoints from the store."""

    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        self.queries = QueryService(store)  # reads go through the query service's batch API

    # projects and runs

    def _project(self, principal: Principal, name: str) -> ProjectInfo:
        if not name:
            raise access_denied("projectIdentifier is missing; expected 'workspace/project'", 400)
        principal.require(name)
        info = find_project(self.store, name)
        if info is None:
            raise access_denied(f"project {name!r} does not exist", 404)
        return info

    def _run_projects(
        self, principal: Principal, identifiers: Iterable[str], where: str
    ) -> dict[str, ProjectInfo]:
        """Projects named by run identifiers: refused outside the token, skipped if missing."""
        names: set[str] = set()
        for identifier in identifiers:
            parsed = parse_run_identifier(identifier)
            if parsed is None:
                raise bad_request(
                    f"{where}: run identifier {identifier[:100]!r} is neither "
                    "'workspace/project/<sys/id>' nor 'CUSTOM/workspace/project/<run id>'"
                )
            names.add(parsed[0])
        out: dict[str, ProjectInfo] = {}
        for name in names:
            principal.require(name)
            info = find_project(self.store, name)
            if info is not None:
                out[name] = info
        return out

    # #10, #11 search

    def search(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        project = self._project(principal, query.get("projectIdentifier", ""))
        data = _json(body)
        return self._search([project], data, global_search=False)

    def global_search(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        data = _json(body)
        projects = [
            p
            for p in list_project_infos(self.store, principal.key.workspace)
            if principal.reaches(p.full_name)
        ]
        return self._search(projects, data, global_search=True)

    def _search(
        self, projects: list[ProjectInfo], data: dict[str, Any], *, global_search: bool
    ) -> Response:
        where = "search"
        pagination = _field(data, "pagination", dict, where) or {}
        offset = _count(pagination, "offset", f"{where}.pagination", 0, 2**62)
        limit = _count(pagination, "limit", f"{where}.pagination", MAX_PAGE, MAX_PAGE)
        leaders = bool(_field(data, "experimentLeader", bool, where))
        sort = self._sort(data)
        nql = _field(data, "query", dict, where)
        text = _field(nql, "query", str, f"{where}.query") if nql is not None else None
        projection: list[str] = list(_SYS_TABLE) if global_search else []
        filters = _field(data, "attributeFilters", list, where) or []
        if len(filters) > 10_000:
            raise bad_request(f"{where}.attributeFilters has {len(filters)} paths; at most 10000")
        for item in filters:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise bad_request(
                    f'{where}.attributeFilters must hold {{"path": <str>}}, got {_show(item)}'
                )
            projection.append(item["path"])
        now_ms = int(time.time() * 1000)
        compiled = self._compile(text, now_ms) if text and text.strip() else None
        by_id = {p.id: p for p in projects}
        with self.queries.batch() as reads:
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
        return _protobuf(result)

    def _sort(self, data: dict[str, Any]) -> Sort:
        spec = _field(data, "sorting", dict, "search")
        if spec is None:
            return Sort()
        direction = _field(spec, "dir", str, "search.sorting") or "descending"
        if direction not in ("ascending", "descending"):
            raise bad_request(
                f"search.sorting.dir must be 'ascending' or 'descending', got {direction!r}"
            )
        by = _field(spec, "sortBy", dict, "search.sorting") or {}
        name = _field(by, "name", str, "search.sorting.sortBy") or "sys/creation_time"
        wire = _field(by, "type", str, "search.sorting.sortBy")
        if wire is not None and wire not in KNOWN_WIRE_TYPES:
            raise bad_request(f"search.sorting.sortBy.type: unknown type {wire!r}")
        aggregation = (
            _field(spec, "aggregationMode", str, "search.sorting")
            or _field(by, "aggregationMode", str, "search.sorting.sortBy")
            or "last"
        )
        if aggregation not in ("last", "min", "max", "average", "variance", "auto", "none"):
            raise bad_request(f"search.sorting.aggregationMode: unknown mode {aggregation!r}")
        if aggregation in ("auto", "none"):
            aggregation = "last"
        return Sort(name, wire, aggregation, direction == "descending")

    @staticmethod
    def _compile(text: str, now_ms: int) -> tuple[str, list[object]]:
        from despina.nql import compile_query

        try:
            sql, params = compile_query(text, now_ms=now_ms)
        except NqlError as exc:
            title = getattr(exc, "title", "Invalid query")
            raise ApiError(
                400, str(exc), extra={"title": title, "position": getattr(exc, "start", 0)}
            ) from None
        return sql, list(params)

    # #12 definitions (JSON out)

    def definitions(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        where = "definitions"
        data = _json(body)
        project_names = _strings(data, "projectIdentifiers", where) or []
        run_ids = _strings(data, "experimentIdsFilter", where)
        types = _type_filter(data, where)
        predicate, exact, nothing = _name_filter(data, where)
        page = _field(data, "nextPage", dict, where) or {}
        limit = _count(page, "limit", f"{where}.nextPage", MAX_PAGE, MAX_PAGE) or MAX_PAGE
        key = _key_token(page.get("nextPageToken"), f"{where}.nextPage", (str, str))
        after = None if key is None else (key[0], key[1])
        projects: dict[str, ProjectInfo] = {}
        for name in project_names:
            principal.require(name)
            info = find_project(self.store, name)
            if info is None:
                if run_ids is None:
                    raise access_denied(f"project {name!r} does not exist", 404)
                continue
            projects[name] = info
        if run_ids is not None:
            projects.update(self._run_projects(principal, run_ids, where))
            allowed = {p.id for n, p in projects.items() if not project_names or n in project_names}
        entries: list[tuple[str, str]] = []
        if not nothing and projects:
            with self.queries.batch() as reads:
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
                    "nextPageToken": _make_key_token(list(chunk[-1])) if more else None,
                    "limit": limit,
                },
            }
        )

    # #13 attribute values

    def attributes(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        where = "attributes"
        data = _json(body)
        name = query.get("projectIdentifier", "")
        if name:
            self._project(principal, name)
        run_ids = _strings(data, "experimentIdsFilter", where) or []
        names = _strings(data, "attributeNamesFilter", where)
        types = _type_filter(data, where)
        predicate, exact, nothing = _name_filter(data, where)
        page = _field(data, "nextPage", dict, where) or {}
        limit = _count(page, "limit", f"{where}.nextPage", MAX_PAGE, MAX_PAGE) or MAX_PAGE
        key = _key_token(page.get("nextPageToken"), f"{where}.nextPage", (int, int, str))
        projects = self._run_projects(principal, run_ids, where)
        result = ProtoQueryAttributesResultDTO()
        last: list[Any] | None = None  # [run index, run pk, path] of the last entry sent
        more = False
        if run_ids and not nothing and names != []:
            with self.queries.batch() as reads:
                runs = reads.resolve_runs(run_ids, projects)
                ordered = list(dict.fromkeys(runs[i] for i in run_ids if i in runs))
                start, after_path = 0, None
                if key is not None:  # keyset paging: go on after the last entry sent
                    index, pk, after_path = key
                    start = next((i for i, r in enumerate(ordered) if r.pk == pk), -1)
                    if start < 0:  # that run is gone since: go on from where it stood
                        start, after_path = max(0, index), None
                count = size = 0
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
                            if count >= limit or (count and size > VALUES_RESPONSE_BYTES):
                                more = True
                                break
                            if current is None:
                                current = result.entries.add(
                                    experimentId=run.uuid, experimentShortId=run.sys_id
                                )
                            current.attributes.append(dto)
                            count += 1
                            last = [position, run.pk, value.path]
                        if more:
                            break
                    i += len(part)
                    step = min(step * 2, 1024)  # few reads for many small runs
        token = _make_key_token(last) if more and last is not None else ""
        result.nextPage.CopyFrom(ProtoNextPageDTO(nextPageToken=token, limit=limit))
        return _protobuf(result)

    # #14 float series

    def float_series(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        where = "floatSeries"
        data = _json(body)
        requests = _field(data, "requests", list, where) or []
        if len(requests) > MAX_SERIES:
            raise bad_request(
                f"{where}: {len(requests)} series in one request; at most {MAX_SERIES}"
            )
        limit = _count(data, "perSeriesPointsLimit", where, 1_000_000, 1_000_000)
        descending = _order(data, where, "ascending")
        lo, hi = _step_range(data, where)
        parsed = _float_requests(requests, where)
        projects = self._run_projects(principal, {p[1] for p in parsed}, where)
        with self.queries.batch() as reads:
            runs = reads.resolve_runs([p[1] for p in parsed], projects)
            # a series named many times in one request is read once (finding 3 of issue #12)
            unique: dict[tuple[int, str, str, bool, float | None], int] = {}
            which: list[int] = []
            present = []
            for i, (_, identifier, attribute, mode, preview, after) in enumerate(parsed):
                run = runs.get(identifier)
                if run is not None:
                    key = (run.pk, attribute, mode, preview, after)
                    which.append(unique.setdefault(key, len(unique)))
                    present.append(i)
            wanted = [key[:4] for key in unique]
            afters = [parsed[i][5] for i in present]
            read_lo, read_hi = lo, hi
            if not any(w[3] for w in wanted):  # previews are kept relative to what is read
                read_lo, read_hi = _after_bounds(lo, hi, afters, descending=descending)
            # only the first `limit` points of each series' window are read (its tail when
            # descending), not whole series
            windows = [_after_bounds(lo, hi, [key[4]], descending=descending) for key in unique]
            flat = reads.float_series_flat(
                wanted, read_lo, read_hi, windows=windows, limit=limit, descending=descending
            )
        index = np.asarray(which, dtype=np.int64)
        starts, kept = _series_windows(flat, index, afters, descending=descending, limit=limit)
        total = int(kept.sum())
        if total > MAX_RESPONSE_POINTS:
            raise bad_request(
                f"{where}: this request would return {total} points in one response; at most "
                f"{MAX_RESPONSE_POINTS}. Lower perSeriesPointsLimit ({limit}) to at most "
                f"{max(1, MAX_RESPONSE_POINTS // max(1, len(present)))} for {len(present)} "
                "series and page with afterStep"
            )
        shaped = _gather(flat, index, starts, kept, descending=descending)
        return Response(
            float_series_flat_response([parsed[i][0] for i in present], shaped),
            media_type=PROTOBUF,
        )

    # #15 string, histogram and file series

    def series(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        where = "series"
        data = _json(body)
        requests = _field(data, "requests", list, where) or []
        if len(requests) > MAX_SERIES:
            raise bad_request(
                f"{where}: {len(requests)} series in one request; at most {MAX_SERIES}"
            )
        descending = _order(data, where, "ascending")
        lo, hi = _step_range(data, where)
        total_cap = _count(data, "perSeriesPointsLimit", where, 2**62, 2**62)
        parsed = []
        for i, request in enumerate(requests):
            at = f"{where}.requests[{i}]"
            request_id, _, identifier, attribute, mode = _series_request(request, at)
            after = _field(request, "searchAfter", dict, at)
            token = _series_token(after, at)
            parsed.append((request_id, identifier, attribute, mode, token))
        projects = self._run_projects(principal, [p[1] for p in parsed], where)
        result = ProtoSeriesValuesResponseDTO()
        budget = (SERIES_RESPONSE_POINTS, SERIES_RESPONSE_BYTES)
        points_left, bytes_left = budget
        with self.queries.batch() as reads:
            runs = reads.resolve_runs([p[1] for p in parsed], projects)
            modes: dict[str, set[int]] = {}
            for _, identifier, _, mode, _ in parsed:
                if identifier in runs:
                    modes.setdefault(mode, set()).add(runs[identifier].pk)
            links = {m: reads.lineage_links(pks, m) for m, pks in modes.items()}
            for request_id, identifier, attribute, mode, token in parsed:
                run = runs.get(identifier)
                if run is None:
                    continue
                sent, last = token
                s_lo, s_hi = lo, hi
                if last is not None:
                    if descending:
                        s_hi = min(s_hi, last - 1)
                    else:
                        s_lo = max(s_lo, last + 1)
                remaining = max(0, total_cap - sent)
                # the response's budget: once spent, series come back empty and unfinished,
                # and the client asks for them again with their token
                page = min(SERIES_PAGE_POINTS, remaining, points_left)
                found = reads.point_series(
                    links[mode].get(run.pk, []),
                    attribute,
                    s_lo,
                    s_hi,
                    descending=descending,
                    limit=page + 1 if remaining else 0,
                    max_bytes=bytes_left,
                )
                if found is None:
                    continue
                type_, rows = found
                keep = _within(rows, page, bytes_left, at_least_one=points_left == budget[0])
                # reading stops at the row that spends the bytes: whether more follow is
                # then unknown, and the series stays unfinished (the next page tells)
                cut_by_bytes = sum(len(row[2]) for row in rows) > bytes_left
                more = len(rows) > keep or cut_by_bytes
                rows = rows[:keep]
                points_left -= keep
                bytes_left = max(0, bytes_left - sum(len(row[2]) for row in rows))
                single = ProtoSeriesValuesSingleSeriesResponseDTO(requestId=request_id)
                values = ProtoSeriesValuesDTO()
                for step, ts, value in rows:
                    values.values.append(_point_value(type_, step, ts, value))
                single.seriesValues.CopyFrom(values)
                new_last = rows[-1][0] if rows else last
                finished = not more or sent + len(rows) >= total_cap
                single.searchAfter.CopyFrom(
                    ProtoSeriesValuesSearchAfterDTO(
                        finished=finished,
                        token=_make_series_token(sent + len(rows), new_last),
                    )
                )
                result.series.append(single)
        return _protobuf(result)

    # #16 buckets (protobuf in)

    def buckets(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        request = ProtoGetTimeseriesBucketsRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise bad_request(
                f"the body is not a ProtoGetTimeseriesBucketsRequest: {exc}"
            ) from None
        if len(request.expressions) > MAX_BUCKET_EXPRESSIONS:
            raise bad_request(
                f"{len(request.expressions)} expressions in one request; at most "
                f"{MAX_BUCKET_EXPRESSIONS}"
            )
        view = request.view
        n = int(view.maxBuckets)
        if not 2 <= n <= MAX_BUCKETS:  # the layout needs two edges; clients send limit + 1
            raise bad_request(
                f"view.maxBuckets must be in 2..{MAX_BUCKETS} (a chart of limit points asks "
                f"for limit + 1), got {n}"
            )
        axis = view.xAxis.WhichOneof("value") if view.HasField("xAxis") else None
        if axis not in (None, "steps"):
            raise bad_request(f"only the 'steps' x axis is supported, got {axis!r}")
        if view.xScale != 0 or view.yScale != 0:
            raise bad_request("only linear scales are supported")
        lo, hi = -1, MAX_STEP_MICRO
        if view.HasField("pointFilters") and view.pointFilters.HasField("stepRange"):
            step_range = view.pointFilters.stepRange
            if step_range.HasField("from"):
                lo = step_bound(getattr(step_range, "from"), lower=True)
            if step_range.HasField("to"):
                hi = step_bound(step_range.to, lower=False)
        expressions = []
        for i, expression in enumerate(request.expressions):
            path = _formula_path(expression.customYFormula, f"expressions[{i}]")
            if expression.lineage == 0:
                mode = LINEAGE_FULL
            else:
                mode = LINEAGE_OWN if expression.entityType == 1 else LINEAGE_EXPERIMENT
            preview = expression.includePreview if expression.HasField("includePreview") else False
            expressions.append((expression.requestId, expression.runId, path, mode, preview))
        if len(expressions) * (n + 1) > MAX_RESPONSE_BUCKETS:
            raise bad_request(
                f"buckets: {len(expressions)} expressions of up to {n + 1} buckets each exceed "
                f"{MAX_RESPONSE_BUCKETS} buckets in one response; send at most "
                f"{max(1, MAX_RESPONSE_BUCKETS // (n + 1))} expressions per request with "
                f"maxBuckets {n}"
            )
        projects = self._run_projects(principal, [e[1] for e in expressions], "buckets")
        with self.queries.batch() as reads:
            runs = reads.resolve_runs([e[1] for e in expressions], projects)
            unique: dict[tuple[int, str, str, bool], int] = {}  # a repeated series is read once
            which: dict[str, int] = {}
            for request_id, run_identifier, path, mode, preview in expressions:
                run = runs.get(run_identifier)
                if run is not None:
                    which[request_id] = unique.setdefault(
                        (run.pk, path, mode, preview), len(unique)
                    )
            wanted = list(unique)
            x_from = getattr(view, "from") if view.HasField("from") else None
            x_to = view.to if view.HasField("to") else None
            results = reads.buckets(wanted, lo, hi, n, x_from, x_to) if wanted else []
        encoded = [
            b"" if r is None else TimeseriesBuckets(bucket=_bucket_messages(r)).SerializeToString()
            for r in results
        ]
        body = buckets_response(
            [
                (request_id, encoded[which[request_id]] if request_id in which else b"")
                for request_id, *_ in expressions
            ]
        )
        return Response(body, media_type=PROTOBUF)


# -- helpers -------------------------------------------------------------------------------------


def _organization_id(workspace: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"despina-workspace:{workspace}"))


_MODES = {
    (None, None): LINEAGE_FULL,
    ("FULL", "EXPERIMENT"): LINEAGE_FULL,
    ("FULL", "RUN"): LINEAGE_FULL,
    ("FULL", None): LINEAGE_FULL,
    ("NONE", "EXPERIMENT"): LINEAGE_EXPERIMENT,
    ("NONE", None): LINEAGE_EXPERIMENT,
    ("NONE", "RUN"): LINEAGE_OWN,
}

FloatRequest = tuple[str, str, str, str, bool, float | None]


def _float_requests(requests: list[Any], where: str) -> list[FloatRequest]:
    """``(requestId, holder, attribute, lineage mode, includePreview, afterStep)`` per request.

    Well-formed requests (the clients' thousands) take a quick path; anything else is checked
    field by field for a precise 400.
    """
    out: list[FloatRequest] = []
    append = out.append
    for i, request in enumerate(requests):
        try:
            series = request["series"]
            request_id = request["requestId"]
            identifier = series["holder"]["identifier"]
            attribute = series["attribute"]
            mode = _MODES[(series.get("lineage"), series.get("lineageEntityType"))]
            preview = series.get("includePreview", False)
            after = request.get("afterStep")
        except (KeyError, TypeError, AttributeError):
            append(_float_request_checked(request, f"{where}.requests[{i}]"))
            continue
        if (
            type(request_id) is not str
            or type(identifier) is not str
            or type(attribute) is not str
            or type(preview) is not bool
            or not (after is None or type(after) in (int, float))
        ):
            append(_float_request_checked(request, f"{where}.requests[{i}]"))
            continue
        if after is not None and not _finite(after):
            raise bad_request(
                f"{where}.requests[{i}].afterStep must be a finite number, got {_show(after)}"
            )
        append((request_id, identifier, attribute, mode, preview, after))
    return out


def _series_request(request: Any, at: str) -> tuple[str, dict[str, Any], str, str, Any]:
    """``(requestId, series, holder identifier, attribute, lineage mode)`` of one series
    request, checked.

    Raises:
        ApiError: a missing or ill-typed field (400).
    """
    if not isinstance(request, dict):
        raise bad_request(f"{at} must be an object, got {_show(request)}")
    request_id = _field(request, "requestId", str, at)
    series = _field(request, "series", dict, at)
    if request_id is None or series is None:
        raise bad_request(f"{at} needs requestId and series")
    holder = _field(series, "holder", dict, f"{at}.series") or {}
    identifier = _field(holder, "identifier", str, f"{at}.series.holder")
    attribute = _field(series, "attribute", str, f"{at}.series")
    if identifier is None or attribute is None:
        raise bad_request(f"{at}.series needs holder.identifier and attribute")
    mode = _lineage_mode(series.get("lineage"), series.get("lineageEntityType"), at)
    return request_id, series, identifier, attribute, mode


def _float_request_checked(request: Any, at: str) -> FloatRequest:
    request_id, series, identifier, attribute, mode = _series_request(request, at)
    preview = bool(_field(series, "includePreview", bool, f"{at}.series"))
    after = _number(request, "afterStep", at)
    return request_id, identifier, attribute, mode, preview, after


def _after_bounds(
    lo: int, hi: int, afters: list[float | None], *, descending: bool
) -> tuple[int, int]:
    """The step range to read when every series continues after its ``afterStep``.

    A continuation page (the client re-sends only the series that filled their page, each
    with an ``afterStep``) then reads only steps some series still needs, instead of whole
    series that :func:`_series_windows` would cut down to nothing.
    """
    if not afters or any(after is None for after in afters):
        return lo, hi
    if descending:
        bound = max(step_bound(a, lower=False, strict=True) for a in afters if a is not None)
        return lo, min(hi, bound)
    bound = min(step_bound(a, lower=True, strict=True) for a in afters if a is not None)
    return max(lo, bound), hi


def _series_windows(
    flat: FlatSeries,
    which: npt.NDArray[np.int64],
    afters: list[float | None],
    *,
    descending: bool,
    limit: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Where the points of request ``i`` (series ``which[i]`` of ``flat``) start and how many
    are kept after its ``afterStep``, the order and the per-series limit: nothing is copied,
    so the size of the answer is known before it is built."""
    starts = flat.starts[which]
    counts = flat.counts[which]
    for i, after in enumerate(afters):
        if after is None or not counts[i]:
            continue
        a, n = int(starts[i]), int(counts[i])
        steps = flat.steps[a : a + n]
        if descending:
            counts[i] = int(
                np.searchsorted(steps, step_bound(after, lower=False, strict=True), side="right")
            )
        else:
            cut = int(
                np.searchsorted(steps, step_bound(after, lower=True, strict=True), side="left")
            )
            starts[i] += cut
            counts[i] -= cut
    kept = np.minimum(counts, limit)
    if descending:
        starts = starts + counts - kept  # the highest steps come first
    return starts, kept


def _gather(
    flat: FlatSeries,
    which: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    kept: npt.NDArray[np.int64],
    *,
    descending: bool,
) -> FlatSeries:
    """The points of :func:`_series_windows` as one :class:`FlatSeries`, one series per
    request, in the requested order."""
    total = int(kept.sum())
    out_starts = np.zeros(len(kept), np.int64)
    if len(kept):
        out_starts[1:] = np.cumsum(kept)[:-1]
    series = np.repeat(np.arange(len(kept)), kept)
    offsets = np.arange(total, dtype=np.int64) - out_starts[series]
    source = starts[series] + kept[series] - 1 - offsets if descending else starts[series] + offsets
    return FlatSeries(
        flat.steps[source],
        flat.values[source],
        flat.timestamps[source],
        None if flat.preview is None else flat.preview[source],
        None if flat.completion is None else flat.completion[source],
        out_starts,
        kept,
        flat.exists[which],
    )


def _series_token(after: dict[str, Any] | None, where: str) -> tuple[int, int | None]:
    """``(points sent so far, last step sent)`` from a ``searchAfter``."""
    if after is None:
        return 0, None
    token = after.get("token")
    if token in (None, ""):
        return 0, None
    if not isinstance(token, str):
        raise bad_request(f"{where}.searchAfter.token must be a string")
    try:
        sent_text, _, last_text = (
            base64.urlsafe_b64decode(token.encode() + b"==").decode().partition(":")
        )
        sent = int(sent_text)
        last = int(last_text) if last_text else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request(
            f"{where}.searchAfter.token {token[:40]!r} is not a token this server issued"
        ) from None
    return max(0, sent), last


def _within(
    rows: list[tuple[int, int, str]], page: int, byte_budget: int, *, at_least_one: bool
) -> int:
    """How many of ``rows`` fit ``page`` points and ``byte_budget`` bytes of values (one at
    least when ``at_least_one``, so every response makes progress)."""
    size = 0
    for kept, row in enumerate(rows[:page]):
        size += len(row[2])
        if size > byte_budget:
            return max(kept, 1 if at_least_one else 0)
    return min(len(rows), page)


def _make_series_token(sent: int, last: int | None) -> str:
    text = f"{sent}:{'' if last is None else last}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _point_value(type_: str, step: int, ts: int, value: str) -> ProtoPointValueDTO:
    point = ProtoPointValueDTO(
        timestamp_millis=ts, step=step / 1e6, is_preview=False, completion_ratio=1.0
    )
    if type_ == "string_series":
        point.object.CopyFrom(ProtoSeriesPointValueObjectDTO(stringValue=value))
    elif type_ == "histogram_series":
        point.object.CopyFrom(ProtoSeriesPointValueObjectDTO(histogram=histogram_message(value)))
    else:
        point.object.CopyFrom(ProtoSeriesPointValueObjectDTO(fileRef=file_ref_message(value)))
    return point


def _formula_path(formula: str, where: str) -> str:
    """The attribute path of ``${path}`` (``\\``, ``$``, ``{``, ``}`` escaped by a backslash)."""
    if not (formula.startswith("${") and formula.endswith("}")) or len(formula) < 3:
        raise bad_request(
            f"{where}.customYFormula must be '${{<attribute path>}}', got {formula[:100]!r}"
        )
    body = formula[2:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in "\\${}":
            out.append(body[i + 1])
            i += 2
            continue
        if ch in "${}":
            raise bad_request(
                f"{where}.customYFormula: only a single '${{path}}' is supported, "
                f"got {formula[:100]!r}"
            )
        out.append(ch)
        i += 1
    return "".join(out)


def _bucket_messages(stats: BucketStats) -> list[TimeseriesBucket]:
    """The wire form of one series' buckets (first/last/min/max/sum only where finite)."""
    out: list[TimeseriesBucket] = []
    columns = zip(
        stats.index.tolist(),
        stats.from_x.tolist(),
        stats.to_x.tolist(),
        stats.finite.tolist(),
        stats.nan.tolist(),
        stats.pos_inf.tolist(),
        stats.neg_inf.tolist(),
        stats.first_x.tolist(),
        stats.first_y.tolist(),
        stats.last_x.tolist(),
        stats.last_y.tolist(),
        stats.y_min.tolist(),
        stats.y_max.tolist(),
        stats.y_sum.tolist(),
        strict=True,
    )
    for i, lo, hi, count, nan, pos, neg, fx, fy, lx, ly, y_min, y_max, y_sum in columns:
        bucket = TimeseriesBucket(index=i, fromX=lo, toX=hi)
        bucket.nanCount = nan
        bucket.positiveInfCount = pos
        bucket.negativeInfCount = neg
        bucket.finitePointCount = count
        if count:
            bucket.first.CopyFrom(FinitePoint(x=fx, y=fy))
            bucket.last.CopyFrom(FinitePoint(x=lx, y=ly))
            bucket.localMin = y_min
            bucket.localMax = y_max
            bucket.localSum = y_sum
        out.append(bucket)
    return out
