"""The vectorised ``update_batch`` reader is linear in the body (issue #12, finding 5).

A body whose snapshots each name distinct metrics has as many layouts as snapshots; trying a
template per layout against every pending snapshot took 9.6 s of CPU for 700 KB (hours for
the 16 MiB an ingest body may hold).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from despina.server import wire
from despina.server.ingest import decode_snapshots, decode_update_batch
from despina.store.batch import Batch


def _body(snapshots: int, names: int = 3, *, shared_every: int = 0) -> bytes:
    """Snapshots with a step, a timestamp and ``names`` float appends; every name is distinct
    unless ``shared_every`` > 0, which makes every that-many-th snapshot use common names."""
    op = RunOperation(project="ws/p", run_id="r")
    for i in range(snapshots):
        snap = op.update_batch.snapshots.add()
        snap.step.whole = i
        snap.timestamp.seconds = 1_700_000_000 + i
        common = shared_every and i % shared_every == 0
        for k in range(names):
            name = f"common/{k}" if common else f"m/{i:07d}/{k}"
            snap.append[name].float64 = i + k / 8
    return op.SerializeToString()


def _points(batches: list[Batch]) -> dict[str, list[tuple[int, float, int]]]:
    out: dict[str, list[tuple[int, float, int]]] = {}
    for batch in batches:
        for key, column in batch.metrics.items():
            out.setdefault(key, []).extend(
                zip(
                    np.asarray(column.steps).tolist(),
                    np.asarray(column.values).tolist(),
                    np.asarray(column.timestamps).tolist(),
                    strict=True,
                )
            )
    return out


@pytest.mark.parametrize("shared_every", [0, 7])
def test_distinct_names_decode_like_protobuf(shared_every: int) -> None:
    body = _body(3000, shared_every=shared_every)
    op = RunOperation.FromString(body)
    fast, fast_items, fast_issues = decode_update_batch(body, op, 99)
    slow, slow_items, slow_issues = decode_snapshots(op.update_batch.snapshots, 99)
    assert fast_items == slow_items == 9000
    assert not fast_issues and not slow_issues
    assert _points(fast) == _points(slow)


def test_templates_tried_are_bounded(monkeypatch: Any) -> None:
    """The work is counted, not timed: one template per layout is what made it quadratic."""
    calls = 0
    original = wire._template

    def counting(body: bytes, start: int, end: int) -> Any:
        nonlocal calls
        calls += 1
        return original(body, start, end)

    monkeypatch.setattr(wire, "_template", counting)
    body = _body(5000)
    op = RunOperation.FromString(body)
    decode_update_batch(body, op, 0)
    assert calls <= 100, f"{calls} layouts tried for 5000 snapshots"


def test_a_large_body_of_distinct_names_decodes_in_linear_time() -> None:
    # 1.4 MB: quadratic took about 20 s of CPU here, linear well under one
    body = _body(15_000)
    op = RunOperation.FromString(body)
    started = time.process_time()
    _, items, _ = decode_update_batch(body, op, 0)
    spent = time.process_time() - started
    assert items == 45_000
    assert spent < 8, f"{len(body)} bytes took {spent:.1f} s of CPU"
