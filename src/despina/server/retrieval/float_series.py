"""Float series (#14): each request's window of points, read once per distinct series and
bounded to :data:`MAX_RESPONSE_POINTS` points in one answer."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.responses import Response

from despina.query.float_batch import FlatSeries
from despina.query.lineage import LINEAGE_EXPERIMENT, LINEAGE_FULL, LINEAGE_OWN
from despina.query.points import step_bound
from despina.server.auth import Principal
from despina.server.encode import float_series_flat_response
from despina.server.errors import bad_request
from despina.server.retrieval.base import RetrievalBase
from despina.server.retrieval.fields import (
    PROTOBUF,
    count,
    field,
    finite,
    json_body,
    number,
    order,
    series_request,
    series_requests,
    show,
    step_range,
)

__all__ = ["MAX_RESPONSE_POINTS", "float_series"]

MAX_RESPONSE_POINTS = 1_000_000
"""Points in one float-series answer: what neptune-query asks for at most (it sends
``perSeriesPointsLimit = 1_000_000 // series``). A series named many times counts each time."""

FloatRequest = tuple[str, str, str, str, bool, float | None]

_MODES = {
    (None, None): LINEAGE_FULL,
    ("FULL", "EXPERIMENT"): LINEAGE_FULL,
    ("FULL", "RUN"): LINEAGE_FULL,
    ("FULL", None): LINEAGE_FULL,
    ("NONE", "EXPERIMENT"): LINEAGE_EXPERIMENT,
    ("NONE", None): LINEAGE_EXPERIMENT,
    ("NONE", "RUN"): LINEAGE_OWN,
}


def float_series(
    service: RetrievalBase, principal: Principal, body: bytes, query: dict[str, str]
) -> Response:
    where = "floatSeries"
    data = json_body(body)
    requests = series_requests(data, where)
    limit = count(data, "perSeriesPointsLimit", where, 1_000_000, 1_000_000)
    descending = order(data, where, "ascending")
    lo, hi = step_range(data, where)
    parsed = _float_requests(requests, where)
    projects = service.run_projects(principal, {p[1] for p in parsed}, where)
    with service.queries.batch() as reads:
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
        if after is not None and not finite(after):
            raise bad_request(
                f"{where}.requests[{i}].afterStep must be a finite number, got {show(after)}"
            )
        append((request_id, identifier, attribute, mode, preview, after))
    return out


def _float_request_checked(request: Any, at: str) -> FloatRequest:
    request_id, series, identifier, attribute, mode = series_request(request, at)
    preview = bool(field(series, "includePreview", bool, f"{at}.series"))
    after = number(request, "afterStep", at)
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
