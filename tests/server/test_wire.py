"""The vectorised ``update_batch`` reader gives the same stored result as the protobuf decoder,
and the hand-written float-series encoding parses with the generated classes."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    ProtoFloatSeriesValuesResponseDTO,
)
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from despina.query.float_batch import FloatSeries
from despina.server.encode import float_series_response
from despina.server.ingest import FAST_MIN_POINTS, decode_snapshots, decode_update_batch
from despina.server.wire import snapshot_spans
from despina.store import Store
from despina.store.runs import RunSpec, create_run
from despina.store.series import read_float_points
from despina.store.writer import RunWriter

KEYS = ["a", "b/c", "ü", "x" * 130]


@st.composite
def snapshot(draw: st.DrawFn, step: int) -> c.UpdateRunSnapshot:
    snap = c.UpdateRunSnapshot()
    if draw(st.integers(0, 9)):
        snap.step.CopyFrom(c.Step(whole=step, micro=draw(st.sampled_from([0, 0, 5, 999_999]))))
    if draw(st.integers(0, 9)):
        snap.timestamp.CopyFrom(
            Timestamp(seconds=1_700_000_000 + step, nanos=draw(st.integers(0, 999_999_999)))
        )
    kind = draw(st.sampled_from(["floats"] * 6 + ["preview", "config", "string", "mixed"]))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    value = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf])
    if kind in ("floats", "preview", "mixed"):
        for key in keys:
            snap.append[key].float64 = draw(value)
    if kind == "preview":
        snap.preview.CopyFrom(c.Preview(is_preview=True, completion_ratio=0.5))
    if kind == "config":
        snap.assign["cfg"].int64 = step
    if kind in ("string", "mixed"):
        snap.append["text"].string = f"s{step}"
    return snap


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(1, 60))
    start = draw(st.integers(0, 200))
    snapshots = [draw(snapshot(start + i * draw(st.integers(1, 2)))) for i in range(count)]
    repeat = draw(st.integers(1, 8))
    op = RunOperation(project="ws/p", run_id="r")
    op.update_batch.snapshots.extend(snapshots * repeat if repeat > 1 else snapshots)
    return op.SerializeToString()


def _state(store: Store, run_pk: int) -> dict[str, Any]:
    conn = store.connection()
    out: dict[str, Any] = {}
    for attr_id, path, type_, num, text, count, last_step in conn.execute(
        "SELECT id, path, type, num, text, count, last_step FROM attributes WHERE run_id = ?",
        (run_pk,),
    ):
        entry: dict[str, Any] = {
            "type": type_,
            "num": repr(num),
            "text": text,
            "count": count,
            "last": last_step,
        }
        if type_ == "float_series":
            points = read_float_points(conn, attr_id)
            entry["points"] = (
                points.steps.tolist(),
                points.values.tobytes(),
                points.timestamps.tolist(),
            )
            entry["previews"] = conn.execute(
                "SELECT step, ts, value, completion FROM previews WHERE attr_id = ? ORDER BY step",
                (attr_id,),
            ).fetchall()
        else:
            entry["points"] = conn.execute(
                "SELECT step, ts, value FROM points WHERE attr_id = ? ORDER BY step", (attr_id,)
            ).fetchall()
        out[path] = entry
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.generate],
)
@given(body=batches())
def test_fast_reader_stores_the_same(tmp_path_factory: Any, body: bytes) -> None:
    op = RunOperation.FromString(body)
    results = []
    for fast in (False, True):
        store = Store.open(Path(tmp_path_factory.mktemp("wire")) / "home")
        # over PostgreSQL every store of this test is the test's database: a run of its own
        store.create_project("ws/p", exist_ok=True)
        pk = create_run(store, RunSpec(project="ws/p", run_id=f"r-{uuid.uuid4().hex}")).pk
        writer = RunWriter(store, pk)
        decoded = (
            decode_update_batch(body, op, 1234)
            if fast
            else decode_snapshots(op.update_batch.snapshots, 1234)
        )
        issues = [i.code for i in decoded[2]]
        for batch in decoded[0]:
            issues.extend(i.code for i in writer.apply(batch))
        results.append((decoded[1], sorted(set(issues)), _state(store, pk)))
        store.close()
    assert results[0] == results[1]


def test_fast_reader_takes_the_common_shape() -> None:
    snaps = [
        c.UpdateRunSnapshot(
            step=c.Step(whole=s),
            timestamp=Timestamp(seconds=s),
            append={k: c.Value(float64=s) for k in KEYS},
        )
        for s in range(FAST_MIN_POINTS)
    ]
    op = RunOperation(
        project="ws/p", run_id="r", update_batch=c.UpdateRunSnapshots(snapshots=snaps)
    )
    body = op.SerializeToString()
    spans = snapshot_spans(body)
    assert spans is not None and bool(spans.fast.all())
    assert spans.steps.tolist() == [s * 1_000_000 for s in range(FAST_MIN_POINTS)]
    batches_, items, issues = decode_update_batch(body, op, 0)
    assert items == FAST_MIN_POINTS * len(KEYS) and not issues and len(batches_) == 1
    columns = batches_[0].metrics
    assert columns["a"].steps is columns["ü"].steps  # shared, as the writer's memo expects


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**18 - 1),
            st.floats(),
            st.integers(-(2**62), 2**62),
            st.booleans(),
            st.floats(0, 1, width=32),
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_float_points_encoding_parses(
    points: list[tuple[int, float, int, bool, float]], with_preview: bool
) -> None:
    series = FloatSeries(
        np.array([p[0] for p in points], np.int64),
        np.array([p[1] for p in points], np.float64),
        np.array([p[2] for p in points], np.int64),
        np.array([p[3] for p in points], np.bool_) if with_preview else None,
        np.array([p[4] for p in points], np.float32) if with_preview else None,
    )
    body = float_series_response(
        [("req-1", series), ("missing", None), ("", series.take(slice(0, 1)))]
    )
    parsed = ProtoFloatSeriesValuesResponseDTO.FromString(body)
    assert [s.requestId for s in parsed.series] == ["req-1", ""]
    values = parsed.series[0].series.values
    assert parsed.series[0].series.total_item_count == len(points)
    assert [v.timestamp_millis for v in values] == [p[2] for p in points]
    assert [v.step for v in values] == [p[0] / 1e6 for p in points]
    assert np.array_equal(np.array([v.value for v in values]), series.values, equal_nan=True)
    if with_preview:
        assert [v.is_preview for v in values] == [p[3] for p in points]
        assert [v.completion_ratio for v in values] == [p[4] for p in points]
    else:
        assert all(v.completion_ratio == 1.0 and not v.is_preview for v in values)


def test_flat_response_matches_per_series_encoding() -> None:
    from despina.query.float_batch import FlatSeries
    from despina.server.encode import float_series_flat_response

    rng = np.random.default_rng(3)
    for count in (0, 1, 3):
        series = [
            FloatSeries(
                np.arange(count, dtype=np.int64) * 1_000_000 + i,
                rng.random(count),
                np.full(count, 1_700_000_000_000 + i, np.int64),
            )
            for i in range(100)
        ]
        ids = [f"{i:03d}" for i in range(100)]
        flat = FlatSeries.of(series)
        expected = float_series_response(list(zip(ids, series, strict=True)))
        assert float_series_flat_response(ids, flat) == expected
        with_missing = [None if i % 7 == 0 else s for i, s in enumerate(series)]
        assert float_series_flat_response(ids, FlatSeries.of(with_missing)) == (
            float_series_response(list(zip(ids, with_missing, strict=True)))
        )
