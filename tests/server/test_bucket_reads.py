"""The buckets endpoint reads a few series at a time (issue #12, finding 3).

It needs every point of a series in range (counts, sums), so it used to read every series of a
request at once: 1000 distinct 100k-point series held 5 GB. The shared x range now comes from
chunk bounds and the series are read and bucketed a few at a time; the answers are the same
bytes as reading everything at once (compared here over forks of several levels, previews,
step ranges cutting chunks and fork points, and given or open x ranges).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from neptune_api.proto.neptune_pb.api.v1.model.requests_pb2 import (
    ProtoCustomExpression,
    ProtoGetTimeseriesBucketsRequest,
    ProtoView,
)
from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import TimeseriesBuckets

from despina.query import bucket_stats, float_batch
from despina.query.bucket_stats import (
    BucketStats,
    bucket_many,
    bucket_series,
    common_x_range,
    series_extents,
)
from despina.query.float_batch import float_series_batch
from despina.query.lineage import LINEAGE_EXPERIMENT, LINEAGE_FULL, LINEAGE_OWN
from despina.query.service import QueryService
from despina.server.auth import Principal
from despina.server.retrieval import RetrievalService
from despina.server.retrieval.buckets import _bucket_messages
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import ApiKey
from despina.store.batch import Batch, MetricColumn, PreviewPoint
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

PROJECT = "ws/bucketreads"
T0 = 1_700_000_000_000
M = 1_000_000  # micro-steps per step
WIDE = 40
WIDE_POINTS = 5000


def _write(
    store: Store,
    run_id: str,
    series: dict[str, np.ndarray],
    *,
    fork: tuple[str, float] | None = None,
    previews: Sequence[tuple[str, float, float]] = (),
) -> int:
    made = create_run(
        store,
        RunSpec(
            project=PROJECT,
            run_id=run_id,
            experiment_name=run_id,
            creation_ms=T0,
            fork_run_id=None if fork is None else fork[0],
            fork_step=None if fork is None else int(fork[1] * M),
        ),
    )
    rng = np.random.default_rng(len(run_id))
    metrics = {}
    for path, steps in series.items():
        values = rng.normal(size=len(steps))
        values[::97] = np.nan
        values[5::211] = np.inf
        metrics[path] = MetricColumn(
            np.round(steps * M).astype(np.int64), values, T0 + np.arange(len(steps))
        )
    previews_ = [PreviewPoint(p, int(s * M), v, T0 + 9, 0.5) for p, s, v in previews]
    RunWriter(store, made.pk).apply(Batch(metrics=metrics, previews=previews_))
    return made.pk


PKS: dict[str, int] = {}


@pytest.fixture(scope="module")
def home(module_store: str | None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("bucketreads") / "home"
    store = Store.open(home)
    store.create_project(PROJECT, key="BR")
    # a lineage of four levels, each forked inside a chunk of its parent
    PKS["root"] = _write(store, "root", {"m": np.arange(0, 5000, 1.0), "r": np.arange(3.0)})
    PKS["f1"] = _write(store, "f1", {"m": np.arange(3000.5, 7000, 0.5)}, fork=("root", 3000.25))
    PKS["f2"] = _write(
        store,
        "f2",
        {"m": np.arange(4500.5, 5000, 1.0)},
        fork=("f1", 4400.0),
        previews=[("m", 4990.0, 1.0), ("m", 6000.0, 2.0), ("m", 6001.5, 3.0)],
    )
    PKS["f3"] = _write(store, "f3", {"x": np.arange(2.0)}, fork=("f2", 4700.0))  # inherits m only
    PKS["previews-only"] = _write(
        store, "previews-only", {}, previews=[("m", 10.0, 1.0), ("m", 12.0, 2.0)]
    )
    PKS["single"] = _write(store, "single", {"m": np.array([-7.0])})
    PKS["wide"] = _write(  # sys/id BR-7
        store,
        "wide",
        {f"w/{i:02d}": np.arange(i, i + WIDE_POINTS, 1.0) for i in range(WIDE)},
    )
    store.close()
    return home


def _pks(home: Path) -> dict[str, int]:
    return PKS


def _reference(
    conn: Any, wanted: list[Any], lo: int, hi: int, n: int, x_from: Any, x_to: Any
) -> list[BucketStats | None]:
    """The buckets as computed before: every series read at once."""
    series = float_series_batch(conn, wanted, lo, hi)
    x_range = common_x_range(series, x_from, x_to)
    return [
        bucket_series(p, *x_range, n) if p is not None and len(p) and x_range is not None else None
        for p in series
    ]


def _wire(stats: list[BucketStats | None]) -> list[bytes | None]:
    return [
        None if s is None else TimeseriesBuckets(bucket=_bucket_messages(s)).SerializeToString()
        for s in stats
    ]


def _all_wanted(pks: dict[str, int]) -> list[tuple[int, str, str, bool]]:
    runs = ["root", "f1", "f2", "f3", "previews-only", "single"]
    return [
        (pks[run], "m", mode, preview)
        for run in runs
        for mode in (LINEAGE_FULL, LINEAGE_EXPERIMENT, LINEAGE_OWN)
        for preview in (False, True)
    ] + [(pks["root"], "r", LINEAGE_FULL, False), (pks["root"], "missing", LINEAGE_FULL, False)]


STEP_RANGES = [
    (-1, 2**62),
    (int(10.5 * M), 2**62),
    (-1, int(4400 * M)),
    (int(2999.7 * M), int(4450.2 * M)),
    (int(4600 * M), int(4991 * M)),
    (int(6000.5 * M), int(6001.5 * M)),
    (int(9000 * M), 2**62),
]


@pytest.mark.parametrize("step_range", STEP_RANGES)
def test_buckets_equal_reading_every_series_at_once(
    home: Path, step_range: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    pks = _pks(home)
    wanted = _all_wanted(pks)
    lo, hi = step_range
    with QueryService(Store.open(home)).batch() as reads:
        conn = reads.conn
        for subset in (wanted, wanted[::-1][:9], [wanted[-1]]):
            for x_from, x_to in itertools.product((None, 100.0), (None, 4800.0)):
                for n in (2, 1001):
                    expected = _wire(_reference(conn, subset, lo, hi, n, x_from, x_to))
                    for read_points in (1, 3000):  # one series at a time, a few
                        monkeypatch.setattr(bucket_stats, "READ_POINTS", read_points)
                        got = _wire(list(bucket_many(conn, subset, lo, hi, n, x_from, x_to)))
                        assert got == expected, (subset, x_from, x_to, n, read_points)


def test_extents_are_the_first_and_last_points(home: Path) -> None:
    pks = _pks(home)
    wanted = _all_wanted(pks)
    with QueryService(Store.open(home)).batch() as reads:
        for lo, hi in STEP_RANGES:
            series = float_series_batch(reads.conn, wanted, lo, hi)
            expected = [
                (int(s.steps[0]), int(s.steps[-1])) if s is not None and len(s) else None
                for s in series
            ]
            assert series_extents(reads.conn, wanted, lo, hi) == expected, (lo, hi)


def _request(pks: dict[str, int], n: int) -> bytes:
    return ProtoGetTimeseriesBucketsRequest(
        expressions=[
            ProtoCustomExpression(
                requestId=f"r{i}", runId=f"{PROJECT}/BR-7", customYFormula=f"${{w/{i:02d}}}"
            )
            for i in range(WIDE)
        ],
        view=ProtoView(maxBuckets=n),
    ).SerializeToString()


def test_the_endpoint_holds_a_few_series_at_once(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 distinct series of 5,000 points: at most about READ_POINTS points are decoded at
    once (before: all 200,000 in one read), and the answer is unchanged."""
    pks = _pks(home)
    service = RetrievalService(Store.open(home), ServerSettings())
    principal = Principal(ApiKey("k", "", "n", "u", "ws", None, 0, None, None))
    body = _request(pks, 1001)
    whole = bytes(service.buckets(principal, body, {}).body)

    decoded: list[int] = []
    read_chunks = float_batch._read_chunks

    def counting(*args: Any, **kwargs: Any) -> Any:
        found = read_chunks(*args, **kwargs)
        decoded.append(sum(len(np.atleast_1d(c[2])) for chunks in found.values() for c in chunks))
        return found

    monkeypatch.setattr(float_batch, "_read_chunks", counting)
    monkeypatch.setattr(bucket_stats, "READ_POINTS", 3 * WIDE_POINTS, raising=False)
    assert bytes(service.buckets(principal, body, {}).body) == whole
    assert sum(decoded) == WIDE * WIDE_POINTS
    assert max(decoded) <= 3 * WIDE_POINTS + 1024, decoded  # a series' chunks past the budget
