"""Every retrieval answer has a bounded size (issue #12, finding 3).

A 4 KB float-series request naming one series 20 times returned 680 MB and took the server
to 3.1 GB of RSS. Float series now answer 400 naming the limit past a million points (what
neptune-query asks for at most) and read a repeated series once; string/histogram/file series
page on a budget per response the client follows; buckets cap expressions × buckets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from neptune_api.proto.neptune_pb.api.v1.model.leaderboard_entries_pb2 import (
    ProtoLeaderboardEntriesSearchResultDTO,
)
from neptune_api.proto.neptune_pb.api.v1.model.requests_pb2 import (
    ProtoCustomExpression,
    ProtoGetTimeseriesBucketsRequest,
    ProtoView,
)
from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    ProtoFloatSeriesValuesResponseDTO,
    ProtoSeriesValuesResponseDTO,
    ProtoTimeseriesBucketsDTO,
    TimeseriesBucket,
    TimeseriesBuckets,
)
from neptune_query.internal.retrieval.series import _make_new_series_page_params
from server_helpers import ServerProcess, mint

from despina.server.auth import Principal
from despina.server.encode import buckets_response
from despina.server.errors import ApiError
from despina.server.retrieval import RetrievalService
from despina.server.retrieval import search as retrieval_search
from despina.server.retrieval import series as retrieval_series
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import ApiKey
from despina.store.batch import Batch, MetricColumn, PointAppend
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

PROJECT = "ws/big"
RUN = f"{PROJECT}/BIG-1"
T0 = 1_700_000_000_000
POINTS = 1_000_000
TEXT_POINTS = 300
GIB = 1 << 30


def _fill(home: Path) -> None:
    store = Store.open(home)
    if PROJECT in store.list_projects():  # filled already: over PostgreSQL the
        store.close()  # module's fixtures share one database
        return
    store.create_project(PROJECT, key="BIG")
    run = create_run(store, RunSpec(project=PROJECT, run_id="r1", creation_ms=T0))
    steps = np.arange(POINTS, dtype=np.int64) * 1_000_000
    writer = RunWriter(store, run.pk)
    writer.apply(
        Batch(
            metrics={
                "loss": MetricColumn(steps, np.linspace(0, 1, POINTS), T0 + steps // 1_000_000)
            }
        )
    )
    writer.apply(
        Batch(
            points=[
                PointAppend(
                    "text", "string_series", i * 1_000_000, T0 + i, f"{i}:" + "x" * (i % 97)
                )
                for i in range(TEXT_POINTS)
            ]
        )
    )
    store.close()


def _float_body(copies: int, limit: int) -> dict[str, Any]:
    return {
        "requests": [
            {
                "requestId": str(i),
                "series": {
                    "holder": {"identifier": RUN, "type": "experiment"},
                    "attribute": "loss",
                    "lineage": "FULL",
                    "lineageEntityType": "EXPERIMENT",
                    "includePreview": False,
                },
            }
            for i in range(copies)
        ],
        "stepRange": {"from": None, "to": None},
        "order": "descending",
        "perSeriesPointsLimit": limit,
    }


def _series_body(attributes: list[str]) -> dict[str, Any]:
    return {
        "requests": [
            {
                "requestId": f"{i:03d}",
                "series": {
                    "holder": {"identifier": RUN, "type": "experiment"},
                    "attribute": attribute,
                    "lineage": "FULL",
                    "lineageEntityType": "EXPERIMENT",
                },
            }
            for i, attribute in enumerate(attributes)
        ],
        "stepRange": {"from": None, "to": None},
        "order": "descending",
    }


# -- a real server: peak RSS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    home = tmp_path_factory.mktemp("bounds") / "home"
    _fill(home)
    server = ServerProcess(home)
    server.start()
    api_token = mint(home, server.url, workspace="ws")
    bearer = httpx.get(
        server.url + "/api/backend/v1/authorization/oauth-token",
        headers={"X-Neptune-Api-Token": api_token},
    ).json()["accessToken"]
    yield server, bearer
    server.stop()


def _peak_rss(server: ServerProcess) -> int:
    """The server process's peak resident set (VmHWM), in bytes."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _post(server: ServerProcess, bearer: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        server.url + path, headers={"Authorization": f"Bearer {bearer}"}, timeout=120, **kwargs
    )


FLOAT = "/api/leaderboard/v1/proto/attributes/series/float"
BUCKETS = "/api/leaderboard/v1/proto/attributes/timeseries/buckets"


@pytest.mark.parametrize("copies", [20, 10_000])
def test_one_series_named_many_times_is_refused_by_size(
    big_server: tuple[ServerProcess, str], copies: int
) -> None:
    server, bearer = big_server
    body = _float_body(copies, 1_000_000)
    response = _post(server, bearer, FLOAT, json=body)
    assert response.status_code == 400, len(response.content)
    message = response.json()["message"]
    assert "1000000" in message and "perSeriesPointsLimit" in message
    assert f"at most {max(1, 1_000_000 // copies)}" in message
    assert _peak_rss(server) <= GIB


@pytest.mark.parametrize("copies", [20, 10_000])
def test_what_the_client_sends_is_served(
    big_server: tuple[ServerProcess, str], copies: int
) -> None:
    """neptune-query sends perSeriesPointsLimit = 1_000_000 // series: served in full."""
    server, bearer = big_server
    limit = 1_000_000 // copies
    response = _post(server, bearer, FLOAT, json=_float_body(copies, limit))
    assert response.status_code == 200
    data = ProtoFloatSeriesValuesResponseDTO.FromString(response.content)
    assert len(data.series) == copies
    for series in data.series:
        values = series.series.values
        assert len(values) == limit
        assert values[0].step == POINTS - 1 and values[-1].step == POINTS - limit
    assert _peak_rss(server) <= GIB


def _buckets_request(copies: int, buckets: int) -> bytes:
    return ProtoGetTimeseriesBucketsRequest(
        expressions=[
            ProtoCustomExpression(requestId=f"r{i}", runId=RUN, customYFormula="${loss}")
            for i in range(copies)
        ],
        view=ProtoView(maxBuckets=buckets),
    ).SerializeToString()


def test_buckets_bound_expressions_times_buckets(big_server: tuple[ServerProcess, str]) -> None:
    server, bearer = big_server
    refused = _post(server, bearer, BUCKETS, content=_buckets_request(1000, 10_000))
    assert refused.status_code == 400
    assert "1002000 buckets" in refused.json()["message"]
    # the client's largest request: 1000 expressions of limit + 1 = 1001 buckets
    served = _post(server, bearer, BUCKETS, content=_buckets_request(1000, 1001))
    assert served.status_code == 200
    data = ProtoTimeseriesBucketsDTO.FromString(served.content)
    assert [e.requestId for e in data.entries] == [f"r{i}" for i in range(1000)]
    first = data.entries[0].bucket
    assert sum(b.finitePointCount for b in first) == POINTS
    assert all(e.bucket == first for e in data.entries)
    assert _peak_rss(server) <= GIB


# -- in process: paging on a budget --------------------------------------------------------------


@pytest.fixture(scope="module")
def service(module_store: str | None, tmp_path_factory: pytest.TempPathFactory) -> RetrievalService:
    home = Path(tmp_path_factory.mktemp("bounds-in-process")) / "home"
    _fill(home)
    return RetrievalService(Store.open(home), ServerSettings())


def _principal() -> Principal:
    return Principal(ApiKey("k", "", "n", "u", "ws", None, 0, None, None))


def _fetch_series(
    service: RetrievalService, attributes: list[str]
) -> tuple[dict[str, list[tuple[float, str]]], list[int]]:
    """Every point, paging exactly as neptune-query does; and the points of each response."""
    params: Any = _make_new_series_page_params(_series_body(attributes), None)
    got: dict[str, list[tuple[float, str]]] = {}
    sizes = []
    for _ in range(1500):
        if params is None:
            return got, sizes
        # the client's request minus UNSET markers, as it goes on the wire
        body = json.loads(json.dumps(params, default=lambda _: None))
        for request in body["requests"]:
            if request.get("searchAfter") is None:
                request.pop("searchAfter", None)
        response = service.series(_principal(), json.dumps(body).encode(), {})
        data = ProtoSeriesValuesResponseDTO.FromString(bytes(response.body))
        sizes.append(sum(len(s.seriesValues.values) for s in data.series))
        for series in data.series:
            got.setdefault(series.requestId, []).extend(
                (v.step, v.object.stringValue) for v in series.seriesValues.values
            )
        params = _make_new_series_page_params(params, data)
    raise AssertionError("paging did not end")


def test_series_page_on_a_response_budget(
    service: RetrievalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    attributes = ["text"] * 7 + ["missing", "text"]
    whole, sizes = _fetch_series(service, attributes)
    assert len(sizes) == 1  # within the budget: one response
    expected = [(float(i), f"{i}:" + "x" * (i % 97)) for i in reversed(range(TEXT_POINTS))]
    monkeypatch.setattr(retrieval_series, "SERIES_RESPONSE_POINTS", 250)
    paged, sizes = _fetch_series(service, attributes)
    assert max(sizes) <= 250 and len(sizes) > 1
    assert paged == whole
    assert set(paged) == {f"{i:03d}" for i in range(9)} - {"007"}
    assert all(points == expected for points in paged.values())
    # a byte budget smaller than one value still moves on by one point per response
    monkeypatch.setattr(retrieval_series, "SERIES_RESPONSE_BYTES", 1)
    paged, sizes = _fetch_series(service, ["text", "text"])
    assert max(sizes) == 1 and paged == {k: expected for k in ("000", "001")}


def test_series_refused_before_the_fix_shape(service: RetrievalService) -> None:
    """A float request past the budget is a 400 in process too (no 5xx, value named)."""
    body = json.dumps(_float_body(3, 1_000_000)).encode()
    with pytest.raises(ApiError) as caught:
        service.float_series(_principal(), body, {})
    assert caught.value.status == 400 and "3000000 points" in str(caught.value)


def test_buckets_response_bytes_match_the_message() -> None:
    bucket = TimeseriesBucket(index=3, fromX=1.0, toX=2.0, finitePointCount=2)
    parts = [("", [bucket]), ("a", []), ("é" * 200, [bucket] * 50), ("b", [bucket])]
    expected = ProtoTimeseriesBucketsDTO(
        entries=[TimeseriesBuckets(requestId=r, bucket=b) for r, b in parts]
    )
    encoded = buckets_response(
        [(r, TimeseriesBuckets(bucket=b).SerializeToString()) for r, b in parts]
    )
    assert encoded == expected.SerializeToString()


def test_a_search_page_past_the_byte_budget_is_a_400(
    service: RetrievalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps(
        {
            "attributeFilters": [{"path": p} for p in ["sys/id", "loss", "text"] * 3000],
            "pagination": {"limit": 100},
        }
    ).encode()
    query = {"projectIdentifier": PROJECT}
    served = ProtoLeaderboardEntriesSearchResultDTO.FromString(
        bytes(service.search(_principal(), body, query).body)
    )
    (entry,) = served.entries
    assert sorted(a.name for a in entry.attributes) == ["loss", "sys/id", "text"]
    monkeypatch.setattr(retrieval_search, "SEARCH_RESPONSE_BYTES", entry.ByteSize() - 1)
    with pytest.raises(ApiError) as caught:
        service.search(_principal(), body, query)
    assert caught.value.status == 400
    assert f"exceeds {entry.ByteSize() - 1} bytes" in str(caught.value)


# -- reading only the chunks a page needs --------------------------------------------------------


@pytest.fixture(scope="module")
def chunked(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RetrievalService, np.ndarray]:
    """A series of 5,000 points in many chunks of uneven sizes, steps with gaps and fractions."""
    home = Path(tmp_path_factory.mktemp("chunked")) / "home"
    store = Store.open(home)
    store.create_project("ws/chunks", key="CH")
    run = create_run(store, RunSpec(project="ws/chunks", run_id="c1", creation_ms=T0))
    rng = np.random.default_rng(7)
    steps = np.cumsum(rng.integers(1, 3_000_000, 5000)).astype(np.int64)
    writer = RunWriter(store, run.pk)
    for part in np.array_split(np.arange(5000), 13):
        writer.apply(
            Batch(metrics={"m": MetricColumn(steps[part], part * 0.5, T0 + part.astype(np.int64))})
        )
    return RetrievalService(store, ServerSettings()), steps


def _float_pages(
    service: RetrievalService, body: dict[str, Any], limit: int
) -> dict[str, list[float]]:
    """All points per request, chaining afterStep the way neptune-query does."""
    got: dict[str, list[float]] = {}
    body = {**body, "perSeriesPointsLimit": limit}
    for _ in range(10_000):
        response = service.float_series(_principal(), json.dumps(body).encode(), {})
        data = ProtoFloatSeriesValuesResponseDTO.FromString(bytes(response.body))
        again = {}
        for series in data.series:
            values = series.series.values
            got.setdefault(series.requestId, []).extend(v.step for v in values)
            if len(values) == limit:
                again[series.requestId] = values[-1].step
        if not again:
            return got
        body["requests"] = [
            {**r, "afterStep": again[r["requestId"]]}
            for r in body["requests"]
            if r["requestId"] in again
        ]
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("limit", [1, 333, 1024, 4000])
@pytest.mark.parametrize("bounds", [(None, None), (1000.5, 4000.0), (None, 77.0)])
def test_reading_a_window_of_chunks_pages_every_point_once(
    chunked: tuple[RetrievalService, np.ndarray],
    order: str,
    limit: int,
    bounds: tuple[float | None, float | None],
) -> None:
    service, steps = chunked
    micro = steps.tolist()
    lo = -1 if bounds[0] is None else bounds[0] * 1e6
    hi = 2**62 if bounds[1] is None else bounds[1] * 1e6
    expected = [s / 1e6 for s in micro if lo <= s <= hi]
    if order == "descending":
        expected.reverse()
    series = {
        "holder": {"identifier": "ws/chunks/CH-1", "type": "experiment"},
        "attribute": "m",
        "lineage": "FULL",
        "lineageEntityType": "EXPERIMENT",
        "includePreview": False,
    }
    body = {
        "requests": [{"requestId": r, "series": series} for r in ("a", "b")],
        "stepRange": {"from": bounds[0], "to": bounds[1]},
        "order": order,
    }
    got = _float_pages(service, body, limit)
    assert got.get("a", []) == expected and got.get("b", []) == expected


def test_a_tail_reads_only_its_chunks(service: RetrievalService, monkeypatch: Any) -> None:
    """The last 100 points of a million-point series read a chunk or two, not 977."""
    from despina.query import float_batch

    read = float_batch._read_chunks_split
    sizes: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        chunks = read(*args, **kwargs)
        sizes.append(len(chunks.single_attr) + sum(len(c) for c in chunks.multi.values()))
        return chunks

    monkeypatch.setattr(float_batch, "_read_chunks_split", counting)
    body = json.dumps(_float_body(3, 100)).encode()
    data = ProtoFloatSeriesValuesResponseDTO.FromString(
        bytes(service.float_series(_principal(), body, {}).body)
    )
    assert [len(s.series.values) for s in data.series] == [100, 100, 100]
    assert data.series[0].series.values[-1].step == POINTS - 100
    assert sizes and max(sizes) <= 2, sizes


def test_an_after_step_beyond_the_float_range_is_a_400(service: RetrievalService) -> None:
    body = json.dumps(_float_body(1, 10)).replace(
        '"includePreview": false}', '"includePreview": false}, "afterStep": ' + "9" * 400
    )
    with pytest.raises(ApiError) as caught:
        service.float_series(_principal(), body.encode(), {})
    assert caught.value.status == 400 and "afterStep" in str(caught.value)
