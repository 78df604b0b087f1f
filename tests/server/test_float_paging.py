"""Float-series paging (#14) in process: pages chained with ``afterStep`` the way neptune-query
chains them give back every point exactly once, whatever the order, page size and step range;
and the in-place encoding of a few series matches the per-series encoding byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    ProtoFloatSeriesValuesResponseDTO,
)

from despina.query.float_batch import FlatSeries, FloatSeries
from despina.server.auth import Principal
from despina.server.encode import (
    DIRECT_SERIES,
    float_series_flat_response,
    float_series_response,
)
from despina.server.retrieval import RetrievalService
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import ApiKey
from despina.store.batch import Batch, MetricColumn, PreviewPoint
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

PROJECT = "ws/paging"
T0 = 1_700_000_000_000
# (name, points): steps in micro-steps, some fractional, one series with no points in range
SERIES = {
    "a": [i * 1_000_000 for i in range(25)],
    "b": [i * 1_500_000 + 250_000 for i in range(7)],
    "c": [3_000_000],
}


@pytest.fixture(scope="module")
def service(module_store: str | None, tmp_path_factory: pytest.TempPathFactory) -> RetrievalService:
    store = Store.open(Path(tmp_path_factory.mktemp("paging")) / "home")
    store.create_project(PROJECT, key="PG")
    made = create_run(store, RunSpec(project=PROJECT, run_id="r1", creation_ms=T0))
    metrics = {}
    for k, (name, steps) in enumerate(SERIES.items()):
        metrics[name] = MetricColumn(
            np.array(steps, np.int64),
            np.arange(len(steps), dtype=np.float64) + 100 * k,
            T0 + np.arange(len(steps), dtype=np.int64),
        )
    writer = RunWriter(store, made.pk)
    writer.apply(Batch(metrics=metrics))
    preview = PreviewPoint(path="a", step=30_000_000, value=7.5, timestamp=T0 + 99, completion=0.5)
    writer.apply(Batch(previews=[preview]))
    return RetrievalService(store, ServerSettings())


def _principal() -> Principal:
    return Principal(ApiKey("k", "", "n", "u", "ws", None, 0, None, None))


def _page(service: RetrievalService, body: dict[str, Any]) -> ProtoFloatSeriesValuesResponseDTO:
    response = service.float_series(_principal(), json.dumps(body).encode(), {})
    return ProtoFloatSeriesValuesResponseDTO.FromString(bytes(response.body))


def _fetch_all(
    service: RetrievalService,
    order: str,
    limit: int,
    step_range: tuple[float | None, float | None],
    preview: bool,
) -> dict[str, list[tuple[float, float, bool]]]:
    """Every point of every series, paging like neptune-query's float-series loop."""
    requests = [
        {
            "requestId": name,
            "series": {
                "holder": {"identifier": f"{PROJECT}/PG-1", "type": "experiment"},
                "attribute": name,
                "lineage": "FULL",
                "lineageEntityType": "EXPERIMENT",
                "includePreview": preview,
            },
        }
        for name in [*SERIES, "missing"]
    ]
    got: dict[str, list[tuple[float, float, bool]]] = {}
    body: dict[str, Any] = {
        "requests": requests,
        "stepRange": {"from": step_range[0], "to": step_range[1]},
        "order": order,
        "perSeriesPointsLimit": limit,
    }
    for _ in range(100):
        data = _page(service, body)
        again = {}
        for series in data.series:
            values = series.series.values
            got.setdefault(series.requestId, []).extend(
                (v.step, v.value, v.is_preview) for v in values
            )
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
@pytest.mark.parametrize("limit", [1, 3, 10, 1000])
@pytest.mark.parametrize("step_range", [(None, None), (2.0, 17.5), (4.0, None)])
@pytest.mark.parametrize("preview", [False, True])
def test_paging_returns_every_point_once(
    service: RetrievalService,
    order: str,
    limit: int,
    step_range: tuple[float | None, float | None],
    preview: bool,
) -> None:
    whole = _fetch_all(service, order, 10**6, step_range, preview)
    assert "missing" not in whole and set(whole) == set(SERIES)
    lo = -np.inf if step_range[0] is None else step_range[0]
    hi = np.inf if step_range[1] is None else step_range[1]
    for name, steps in SERIES.items():
        expected = [s / 1e6 for s in steps if lo <= s / 1e6 <= hi]
        if preview and name == "a" and lo <= 30.0 <= hi:
            expected.append(30.0)
        if order == "descending":
            expected.reverse()
        assert [p[0] for p in whole[name]] == expected
    assert _fetch_all(service, order, limit, step_range, preview) == whole


def test_direct_encoding_matches_per_series_encoding() -> None:
    rng = np.random.default_rng(5)
    series: list[FloatSeries | None] = []
    for i in range(DIRECT_SERIES):
        count = [0, 1, 5, 300][i % 4]
        points = FloatSeries(
            np.arange(count, dtype=np.int64) * 1_000_000 + i,
            rng.random(count),
            np.full(count, T0 + i, np.int64),
        )
        if i % 3 == 0:
            points.preview = np.arange(count) % 2 == 0
            points.completion = np.full(count, 0.25, np.float32)
        series.append(None if i % 5 == 0 else points)
    ids = [f"r{i}" for i in range(DIRECT_SERIES)]
    for chosen in (series, series[:1], series[1:2], [None, None]):
        names = ids[: len(chosen)]
        flat = FlatSeries.of(chosen)
        expected = float_series_response(list(zip(names, chosen, strict=True)))
        assert bytes(float_series_flat_response(names, flat)) == expected
