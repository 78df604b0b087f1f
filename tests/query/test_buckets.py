"""Buckets: the examples of spec/query-api.md §13.3, and chunk pruning against brute force."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import query_data as data
from pandas.testing import assert_frame_equal

import despina.query as nq
from despina.query import api
from despina.query.resolve import resolve_attributes, restrict_types
from despina.query.warnings import ExperimentalWarning
from despina.store import Store
from despina.store.batch import Batch, MetricColumn, PreviewPoint
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

nan, inf = math.nan, math.inf


def _write(
    store: Store,
    project: str,
    experiment: str,
    series: dict[str, tuple[list[float], list[float]]],
    fork: tuple[str, float] | None = None,
    run_id: str | None = None,
    previews: list[tuple[str, float, float]] = (),
) -> None:
    made = create_run(
        store,
        RunSpec(
            project=project,
            run_id=run_id or experiment,
            experiment_name=experiment,
            fork_run_id=None if fork is None else fork[0],
            fork_step=None if fork is None else int(fork[1] * 1e6),
        ),
    )
    metrics = {
        path: MetricColumn(
            np.array([int(s * 1e6) for s in steps], np.int64),
            np.array(values, np.float64),
            np.arange(len(steps), dtype=np.int64) + 1_700_000_000_000,
        )
        for path, (steps, values) in series.items()
    }
    batch = Batch(
        metrics=metrics,
        previews=[
            PreviewPoint(path, int(step * 1e6), value, 1_800_000_000_000, 0.5)
            for path, step, value in previews
        ],
    )
    RunWriter(store, made.pk).apply(batch)


@pytest.fixture(scope="module")
def bucket_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with data.shared_store(request, tmp_path_factory.mktemp("buckets")) as location:
        _build(Store.open(url=location))
        yield location


@pytest.fixture
def bucket_home(bucket_store: str) -> Iterator[str]:
    """The module's store, read by ``despina.query`` during one test."""
    nq.set_store(bucket_store)
    yield bucket_store
    nq.set_store(None)


def _build(store: Store) -> None:
    steps10 = [float(s) for s in range(10)]
    _write(store, "ws/a", "exp-1", {"loss": (steps10, [10.0 * s for s in steps10])})
    _write(store, "ws/b", "exp-1", {"loss": ([5.0], [1.0])})
    _write(store, "ws/c", "exp-1", {"loss": ([0.0, 10.0], [1.0, 2.0])})
    _write(
        store,
        "ws/d",
        "exp-1",
        {"loss": ([0.0, 1, 2, 3, 4], [0.0, 1, 2, 3, 4]), "acc": ([9.0], [0.9])},
    )
    _write(
        store,
        "ws/d",
        "exp-2",
        {"loss": ([4.0, 5, 6, 7, 8, 9, 10], [-4.0, -5, -6, -7, -8, -9, -10])},
    )
    _write(store, "ws/k", "exp-1", {"loss": ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])})
    # Many chunks (1024 points each), NaN/±inf, a fork and previews, for pruning.
    rng = np.random.default_rng(3)
    n = 40_000
    steps = np.arange(n, dtype=np.float64) * 0.5
    values = rng.normal(size=n)
    values[rng.integers(0, n, 400)] = nan
    values[rng.integers(0, n, 50)] = inf
    values[rng.integers(0, n, 50)] = -inf
    values[5000:9000] = nan  # several chunks without a finite value
    values[20_000:20_100] = inf
    _write(
        store,
        "ws/big",
        "big",
        {"m": (steps.tolist(), values.tolist()), "short": ([3.0, 4.0, 7.5], [1.0, nan, 2.0])},
        run_id="big-root",
    )
    _write(
        store,
        "ws/big",
        "big",
        {"m": ([25_000.0 + i for i in range(3000)], rng.normal(size=3000).tolist())},
        fork=("big-root", 12_000.25),
        run_id="big-fork",
        previews=[("m", 28_500.0, 42.0)],
    )
    _write(store, "ws/big", "other", {"m": ([-3.0, 100.0], [nan, 5.0])}, run_id="other")
    huge = [9e11 + 0.5 * i for i in range(3000)]
    irregular = np.cumsum(rng.integers(1, 50, 2500)).astype(float).tolist()
    _write(store, "ws/huge", "huge", {"m": (huge, rng.normal(size=3000).tolist())})
    _write(store, "ws/huge", "odd", {"irregular": (irregular, rng.normal(size=2500).tolist())})
    _write(
        store,
        "ws/odd",
        "odd",
        {
            "irregular": (irregular, rng.normal(size=2500).tolist()),
            "regular": ([float(i) for i in range(3000)], rng.normal(size=3000).tolist()),
        },
    )


def _buckets(project: str, y: str, limit: int, **options: object) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return nq.fetch_metric_buckets(
            project=project, experiments=".*", y=y, limit=limit, **options
        )


def _frame(
    rows: list[tuple[pd.Interval, list[float]]],
    columns: list[tuple[str, str, str]],
    dtype: object = object,
) -> pd.DataFrame:
    return pd.DataFrame(
        [r[1] for r in rows],
        index=pd.Index([r[0] for r in rows], dtype=dtype),
        columns=pd.MultiIndex.from_tuples(columns, names=["experiment", "metric", "bucket"]),
    )


def test_example_a(bucket_home: str) -> None:
    got = _buckets("ws/a", "loss", 3)
    expected = _frame(
        [
            (pd.Interval(0.0, 3.0, closed="both"), [0.0, 0.0]),
            (pd.Interval(3.0, 6.0), [6.0, 60.0]),
            (pd.Interval(6.0, 9.0), [9.0, 90.0]),
        ],
        [("exp-1", "loss", "x"), ("exp-1", "loss", "y")],
    )
    assert_frame_equal(got, expected)


def test_example_b_single_point(bucket_home: str) -> None:
    got = _buckets("ws/b", "loss", 10)
    expected = _frame(
        [(pd.Interval(5.0, 5.0, closed="both"), [5.0, 1.0])],
        [("exp-1", "loss", "x"), ("exp-1", "loss", "y")],
    )
    assert_frame_equal(got, expected)


def test_example_c_merge_gives_interval_dtype(bucket_home: str) -> None:
    got = _buckets("ws/c", "loss", 1)
    assert str(got.index.dtype) == "interval[float64, both]"
    assert list(got.index) == [pd.Interval(0.0, 10.0, closed="both")]
    assert got.iloc[0].tolist() == [0.0, 1.0]


def test_example_d_two_experiments(bucket_home: str) -> None:
    got = _buckets("ws/d", "loss|acc", 4)
    expected = _frame(
        [
            (pd.Interval(0.0, 2.5, closed="both"), [nan, nan, 0.0, 0.0, nan, nan]),
            (pd.Interval(2.5, 5.0), [nan, nan, 4.0, 4.0, 4.0, -4.0]),
            (pd.Interval(5.0, 7.5), [nan, nan, nan, nan, 7.0, -7.0]),
            (pd.Interval(7.5, 10.0), [9.0, 0.9, nan, nan, 10.0, -10.0]),
        ],
        [
            ("exp-1", "acc", "x"),
            ("exp-1", "acc", "y"),
            ("exp-1", "loss", "x"),
            ("exp-1", "loss", "y"),
            ("exp-2", "loss", "x"),
            ("exp-2", "loss", "y"),
        ],
    )
    assert_frame_equal(got, expected)


def test_example_g_relabel(bucket_home: str) -> None:
    got = _buckets("ws/c", "loss", 4)
    assert list(got.index) == [pd.Interval(0.0, 2.5, closed="both"), pd.Interval(7.5, 10.0)]
    assert got.index.dtype == object
    assert got[("exp-1", "loss", "x")].tolist() == [0.0, 10.0]


def test_example_k(bucket_home: str) -> None:
    got = _buckets("ws/k", "loss", 1000)
    assert list(got.index) == [
        pd.Interval(0.0, 0.0020000000000000018, closed="both"),
        pd.Interval(0.998, 1.0),
        pd.Interval(1.998, 2.0),
    ]


def _brute_force(
    points: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], limit: int
) -> dict[tuple[str, str], list[tuple[float, float, float, float, float, float, float, float]]]:
    """§13.1 written out plainly, point by point."""
    every = [x for steps, _ in points.values() for x in steps]
    lo, hi = min(every), max(every)
    count = limit + 1
    if lo == hi:
        edges = [(lo, inf)]
    else:
        w = (hi - lo) / (count - 1)
        edges = [
            (-inf if i == 0 else lo + w * (i - 1), inf if i == count else lo + w * i)
            for i in range(count + 1)
        ]
    out = {}
    for key, (steps, values) in points.items():
        found = []
        for a, b in edges:
            inside = ((steps > a) & (steps <= b)) | ((steps == a) & (lo == hi))
            if not inside.any():
                continue
            xs, ys = steps[inside], values[inside]
            fin = np.isfinite(ys)
            xf, yf = xs[fin], ys[fin]
            first = (xf[0], yf[0]) if len(xf) else (nan, nan)
            last = (xf[-1], yf[-1]) if len(xf) else (nan, nan)
            found.append(
                (a, b, *first, *last, yf.min() if len(yf) else nan, yf.max() if len(yf) else nan)
            )
        out[key] = found
    return out


def _check(project: str, names: list[str], limit: int, lineage: bool) -> None:
    mode = api.lineage_mode(api.EXPERIMENTS, lineage)
    with api.open_snapshot(project) as snap:
        matched = snap.search(kind="experiment")
        series = snap.series(matched, restrict_types(resolve_attributes(names), ["float_series"]))
        got = snap.buckets(series, limit=limit, mode=mode, include_min_max=True)
        points = {}
        batch = snap.float_series(series, mode=mode)
        for i in range(len(series)):
            lo, hi = int(batch.offsets[i]), int(batch.offsets[i + 1])
            key = (matched[int(series.container[i])].label, series.paths[int(series.path[i])])
            points[key] = (batch.steps[lo:hi], batch.values[lo:hi])
    expected = _brute_force(points, limit)
    for i in range(len(series)):
        key = (matched[int(series.container[i])].label, series.paths[int(series.path[i])])
        lo, hi = int(got.offsets[i]), int(got.offsets[i + 1])
        rows = list(
            zip(
                got.from_x[lo:hi],
                got.to_x[lo:hi],
                got.first_x[lo:hi],
                got.first_y[lo:hi],
                got.last_x[lo:hi],
                got.last_y[lo:hi],
                got.y_min[lo:hi],
                got.y_max[lo:hi],
                strict=True,
            )
        )
        np.testing.assert_array_equal(
            np.array(rows, dtype=float),
            np.array(expected[key], dtype=float).reshape(-1, 8),
            err_msg=str(key),
        )


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50, 1000])
@pytest.mark.parametrize("lineage", [True, False])
def test_pruning_matches_brute_force(bucket_home: str, limit: int, lineage: bool) -> None:
    _check("ws/big", ["m", "short"], limit, lineage)


@pytest.mark.parametrize("limit", [1, 9, 1000])
def test_huge_and_irregular_steps(bucket_home: str, limit: int) -> None:
    _check("ws/huge", ["m", "irregular"], limit, True)  # too large for integer edges
    _check("ws/odd", ["irregular", "regular"], limit, True)  # delta-coded chunk steps


def test_pruning_skips_chunks(bucket_home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from despina.query import buckets

    read: list[int] = []
    original = buckets.read_chunks

    def counting(conn: object, ids: np.ndarray) -> object:
        read.extend(ids.tolist())
        return original(conn, ids)  # type: ignore[arg-type]

    monkeypatch.setattr(buckets, "read_chunks", counting)
    _buckets("ws/big", "^m$", 3)
    with api.open_snapshot("ws/big") as snap:
        total = snap.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert 0 < len(read) < total / 2


def test_previews_take_part(bucket_home: str) -> None:
    without = _buckets("ws/big", "^m$", 10)
    with_previews = _buckets("ws/big", "^m$", 10, include_point_previews=True)
    assert without.index[-1].right == 27_999.0
    assert with_previews.index[-1].right == 28_500.0
    assert with_previews[("big", "m", "y")].iloc[-1] == 42.0


def test_min_max_extension(bucket_home: str) -> None:
    got = _buckets("ws/d", "loss", 4, include_min_max=True)
    assert list(got.columns.get_level_values("bucket")[:4]) == ["x", "y", "min", "max"]
    first = got.iloc[0]
    assert first[("exp-1", "loss", "min")] == 0.0 and first[("exp-1", "loss", "max")] == 2.0
    assert got.iloc[1][("exp-2", "loss", "min")] == -5.0
