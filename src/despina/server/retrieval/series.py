"""String, histogram and file series (#15), paged on a budget of points and value bytes per
answer: series past it come back unfinished with their token, and the client pages on."""

from __future__ import annotations

from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    ProtoPointValueDTO,
    ProtoSeriesPointValueObjectDTO,
    ProtoSeriesValuesDTO,
    ProtoSeriesValuesResponseDTO,
    ProtoSeriesValuesSearchAfterDTO,
    ProtoSeriesValuesSingleSeriesResponseDTO,
)
from starlette.responses import Response

from despina.server.auth import Principal
from despina.server.encode import file_ref_message, histogram_message
from despina.server.retrieval.base import RetrievalBase
from despina.server.retrieval.fields import (
    count,
    field,
    json_body,
    order,
    protobuf,
    series_request,
    series_requests,
    step_range,
)
from despina.server.retrieval.tokens import make_series_token, series_token

__all__ = ["SERIES_PAGE_POINTS", "SERIES_RESPONSE_BYTES", "SERIES_RESPONSE_POINTS", "series"]

SERIES_PAGE_POINTS = 10_000
"""Points of one series in one answer."""
SERIES_RESPONSE_POINTS = 200_000
SERIES_RESPONSE_BYTES = 64 * 1024 * 1024
"""Points and value bytes in one string/histogram/file series answer, over all its series:
series past the budget come back unfinished with their token (the client pages on)."""


def series(
    service: RetrievalBase, principal: Principal, body: bytes, query: dict[str, str]
) -> Response:
    where = "series"
    data = json_body(body)
    requests = series_requests(data, where)
    descending = order(data, where, "ascending")
    lo, hi = step_range(data, where)
    total_cap = count(data, "perSeriesPointsLimit", where, 2**62, 2**62)
    parsed = []
    for i, request in enumerate(requests):
        at = f"{where}.requests[{i}]"
        request_id, _, identifier, attribute, mode = series_request(request, at)
        after = field(request, "searchAfter", dict, at)
        token = series_token(after, at)
        parsed.append((request_id, identifier, attribute, mode, token))
    projects = service.run_projects(principal, [p[1] for p in parsed], where)
    result = ProtoSeriesValuesResponseDTO()
    budget = (SERIES_RESPONSE_POINTS, SERIES_RESPONSE_BYTES)
    points_left, bytes_left = budget
    with service.queries.batch() as reads:
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
                    token=make_series_token(sent + len(rows), new_last),
                )
            )
            result.series.append(single)
    return protobuf(result)


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
