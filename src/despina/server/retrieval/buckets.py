"""Timeseries buckets (#16, protobuf in and out): per-bucket statistics of float series for
charts, at most :data:`MAX_RESPONSE_BUCKETS` buckets in one answer."""

from __future__ import annotations

from neptune_api.proto.neptune_pb.api.v1.model.requests_pb2 import (
    ProtoGetTimeseriesBucketsRequest,
)
from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    FinitePoint,
    TimeseriesBucket,
    TimeseriesBuckets,
)
from starlette.responses import Response

from despina.query.bucket_stats import BucketStats
from despina.query.lineage import LINEAGE_EXPERIMENT, LINEAGE_FULL, LINEAGE_OWN
from despina.query.points import step_bound
from despina.server.auth import Principal
from despina.server.encode import buckets_response
from despina.server.errors import bad_request, parse_protobuf_body
from despina.server.retrieval.base import RetrievalBase
from despina.server.retrieval.fields import MAX_STEP_MICRO, PROTOBUF

__all__ = ["MAX_BUCKETS", "MAX_BUCKET_EXPRESSIONS", "MAX_RESPONSE_BUCKETS", "buckets"]

MAX_BUCKET_EXPRESSIONS = 1000
MAX_BUCKETS = 10_000
MAX_RESPONSE_BUCKETS = 1000 * 1002
"""Buckets in one answer (expressions × (maxBuckets + 1)): neptune-query sends at most 1000
expressions of maxBuckets = limit + 1 ≤ 1001, which this admits."""


def buckets(
    service: RetrievalBase, principal: Principal, body: bytes, query: dict[str, str]
) -> Response:
    request = parse_protobuf_body(ProtoGetTimeseriesBucketsRequest, body)
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
    projects = service.run_projects(principal, [e[1] for e in expressions], "buckets")
    with service.queries.batch() as reads:
        runs = reads.resolve_runs([e[1] for e in expressions], projects)
        unique: dict[tuple[int, str, str, bool], int] = {}  # a repeated series is read once
        which: dict[str, int] = {}
        for request_id, run_identifier, path, mode, preview in expressions:
            run = runs.get(run_identifier)
            if run is not None:
                which[request_id] = unique.setdefault((run.pk, path, mode, preview), len(unique))
        wanted = list(unique)
        x_from = getattr(view, "from") if view.HasField("from") else None
        x_to = view.to if view.HasField("to") else None
        # each series is encoded as it is bucketed: neither its points nor its statistics
        # are held past it
        encoded = [
            b"" if r is None else TimeseriesBuckets(bucket=_bucket_messages(r)).SerializeToString()
            for r in (reads.iter_buckets(wanted, lo, hi, n, x_from, x_to) if wanted else ())
        ]
    body = buckets_response(
        [
            (request_id, encoded[which[request_id]] if request_id in which else b"")
            for request_id, *_ in expressions
        ]
    )
    return Response(body, media_type=PROTOBUF)


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
