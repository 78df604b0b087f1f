"""The worked examples of spec/query-api.md §16, with the exact frames of the spec."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import despina.query as nq
from despina.query import runs
from despina.query.exceptions import (
    AttributeTypeInferenceError,
    ConflictingAttributeTypes,
    NeptuneUnexpectedResponseError,
)
from despina.query.filters import AttributeFilter, Filter
from despina.query.frames import DATETIME_UNIT, PANDAS_MAJOR
from despina.query.warnings import AttributeWarning, ExperimentalWarning

P = "ws/proj"
SEED = "ws/seed"
nan = np.nan
LABEL_DTYPE = "str" if PANDAS_MAJOR >= 3 else object


def _index(label: str, pairs: list[tuple[str, float]]) -> pd.MultiIndex:
    labels = pd.Index([p[0] for p in pairs], dtype=LABEL_DTYPE)
    steps = pd.Index([float(p[1]) for p in pairs], dtype=float)
    return pd.MultiIndex.from_arrays([labels, steps], names=[label, "step"])


def _times(seconds: list[float]) -> pd.DatetimeIndex:
    stamps = pd.to_datetime(
        [1735689600_000 + 100_000 + s * 1000 for s in seconds], unit="ms", utc=True
    )
    return stamps.as_unit(DATETIME_UNIT)


def test_listing(home: Path) -> None:
    assert nq.list_experiments(project=P) == ["exp-a", "exp-b"]
    assert nq.list_experiments(project=P, experiments="a") == ["exp-a"]
    assert runs.list_runs(project=P) == ["r1", "r2", "r3"]
    assert runs.list_runs(project=P, runs=Filter.name("exp-a")) == ["r1", "r2"]
    assert nq.list_attributes(project=P, attributes="^cfg") == ["cfg/lr", "cfg/name", "cfg/tags"]
    assert runs.list_attributes(project=P, runs=["r1"], attributes="^cfg") == ["cfg/bs", "cfg/lr"]
    everything = nq.list_attributes(project=P)
    assert everything == sorted(everything)
    assert {"acc", "loss", "msg", "cfg/lr", "sys/name", "sys/creation_time", "sys/tags"} <= set(
        everything
    )
    assert "cfg/bs" not in everything  # heads only


def test_tables(home: Path) -> None:
    empty = nq.fetch_experiments_table(project=P)
    assert list(empty.index) == ["exp-b", "exp-a"]
    assert empty.shape == (2, 0)

    expected = pd.DataFrame(
        {"loss": [1.0, 0.45], "sys/name": ["exp-b", "exp-a"]},
        index=pd.Index(["exp-b", "exp-a"], name="experiment"),
    )
    expected.columns = pd.Index(["loss", "sys/name"], name="attribute")
    got = nq.fetch_experiments_table(project=P, attributes=["cfg/bs", "loss", "sys/name"])
    assert_frame_equal(got, expected)

    expected = pd.DataFrame(
        {"cfg/name": [nan, "b"], "cfg/tags": [{"x", "y"}, nan], "loss": [0.45, 1.0]},
        index=pd.Index(["exp-a", "exp-b"], name="experiment"),
    )
    expected.columns = pd.Index(["cfg/name", "cfg/tags", "loss"], name="attribute")
    got = nq.fetch_experiments_table(
        project=P, attributes=r"^cfg/(bs|name|tags)|loss", sort_direction="asc"
    )
    assert_frame_equal(got, expected)

    with pytest.raises(ConflictingAttributeTypes, match=r"attributes \[cfg/lr\]"):
        nq.fetch_experiments_table(project=P, attributes="cfg/lr")
    expected = pd.DataFrame(
        {"cfg/lr:float": [nan, 0.2], "cfg/lr:int": [1.0, nan]},
        index=pd.Index(["exp-b", "exp-a"], name="experiment"),
    )
    expected.columns = pd.Index(["cfg/lr:float", "cfg/lr:int"], name="attribute")
    got = nq.fetch_experiments_table(
        project=P, attributes="cfg/lr", type_suffix_in_column_names=True
    )
    assert_frame_equal(got, expected)

    got = runs.fetch_runs_table(
        project=P,
        attributes=AttributeFilter("cfg", type="float"),
        sort_by="sys/custom_run_id",
        sort_direction="asc",
        limit=2,
    )
    expected = pd.DataFrame({"cfg/lr": [0.1, 0.2]}, index=pd.Index(["r1", "r2"], name="run"))
    expected.columns = pd.Index(["cfg/lr"], name="attribute")
    assert_frame_equal(got, expected)


def test_inference_errors_and_warnings(home: Path) -> None:
    with pytest.raises(
        AttributeTypeInferenceError, match="Failed to infer types for attribute cfg/lr"
    ) as info:
        nq.fetch_experiments_table(project=P, experiments=Filter.eq("cfg/lr", 0.2))
    assert "conflicting types: float, int" in str(info.value)
    with pytest.warns(
        AttributeWarning, match="Attribute 'nope': Attribute doesn't exist in the project"
    ):
        got = nq.fetch_experiments_table(project=P, experiments=Filter.eq("nope", 1))
    assert got.empty and got.index.name == "experiment" and got.columns.name == "attribute"
    with pytest.warns(AttributeWarning, match="conflicting types: float, int"):
        got = nq.fetch_experiments_table(project=P, sort_by="cfg/lr")
    assert list(got.index) == ["exp-a", "exp-b"]  # neither is a string: creation order


def test_fetch_metrics_examples(home: Path) -> None:
    got = nq.fetch_metrics(project=P, experiments=["exp-a", "exp-b"], attributes="loss|acc")
    expected = pd.DataFrame(
        {
            "acc": [nan] * 6 + [nan, 0.5, nan],
            "loss": [1.0, 0.9, 0.8, 0.55, 0.5, 0.45, 2.0, 1.5, 1.0],
        },
        index=_index(
            "experiment", [("exp-a", s) for s in range(6)] + [("exp-b", s) for s in range(3)]
        ),
    )
    assert_frame_equal(got, expected)

    got = nq.fetch_metrics(
        project=P, experiments=["exp-a"], attributes=["loss"], lineage_to_the_root=False
    )
    assert_frame_equal(got, expected.loc[["exp-a"], ["loss"]])

    got = nq.fetch_metrics(
        project=P,
        experiments=".*",
        attributes="loss",
        tail_limit=2,
        step_range=(0, 4),
        include_time="absolute",
    )
    expected = pd.DataFrame(
        {("loss", "value"): [0.55, 0.5, 1.5, 1.0], ("loss", "absolute_time"): _times([3, 4, 1, 2])},
        index=_index("experiment", [("exp-a", 3), ("exp-a", 4), ("exp-b", 1), ("exp-b", 2)]),
    )
    assert_frame_equal(got, expected)

    got = runs.fetch_metrics(project=P, runs=["r2", "nope"], attributes=["loss", "nope"])
    expected = pd.DataFrame(
        {"loss": [1.0, 0.9, 0.8, 0.55, 0.5, 0.45]},
        index=_index("run", [("r2", s) for s in range(6)]),
    )
    assert_frame_equal(got, expected)

    got = runs.fetch_metrics(project=P, runs="r", attributes="loss", lineage_to_the_root=False)
    pairs = [("r1", s) for s in range(5)] + [("r2", s) for s in (3, 4, 5)]
    pairs += [("r3", s) for s in range(3)]
    expected = pd.DataFrame(
        {"loss": [1.0, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 2.0, 1.5, 1.0]},
        index=_index("run", pairs),
    )
    assert_frame_equal(got, expected)


def test_fetch_series_example(home: Path) -> None:
    got = nq.fetch_series(project=P, experiments=".*", attributes="msg", include_time="absolute")
    values = pd.Series(["a0", "a1", "b1"]).array if PANDAS_MAJOR >= 3 else ["a0", "a1", "b1"]
    expected = pd.DataFrame(
        {("msg", "value"): values, ("msg", "absolute_time"): _times([0, 1, 1])},
        index=_index("experiment", [("exp-a", 0), ("exp-a", 1), ("exp-b", 1)]),
    )
    assert_frame_equal(got, expected)


def test_buckets_example(home: Path) -> None:
    from despina.query import warnings as query_warnings

    query_warnings._seen_messages.clear()  # the warning is issued once per process
    with pytest.warns(ExperimentalWarning, match="despina.query.fetch_metric_buckets"):
        got = nq.fetch_metric_buckets(project=P, experiments=".*", y="loss|acc", limit=3)
    third = 5 / 3
    index = pd.Index(
        [
            pd.Interval(0.0, third, closed="both"),
            pd.Interval(third, third * 2, closed="right"),
            pd.Interval(third * 2, 5.0, closed="right"),
        ],
        dtype=object,
    )
    columns = pd.MultiIndex.from_tuples(
        [
            ("exp-a", "loss", "x"),
            ("exp-a", "loss", "y"),
            ("exp-b", "acc", "x"),
            ("exp-b", "acc", "y"),
            ("exp-b", "loss", "x"),
            ("exp-b", "loss", "y"),
        ],
        names=["experiment", "metric", "bucket"],
    )
    expected = pd.DataFrame(
        [
            [0.0, 1.0, 1.0, 0.5, 0.0, 2.0],
            [3.0, 0.55, nan, nan, 2.0, 1.0],
            [5.0, 0.45, nan, nan, nan, nan],
        ],
        index=index,
        columns=columns,
    )
    assert_frame_equal(got, expected)
    assert got.index[1].left == 1.6666666666666667 and got.index[1].right == 3.3333333333333335

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        empty = nq.fetch_metric_buckets(project=P, experiments=["nope"], y="loss")
    assert empty.empty and list(empty.columns.names) == ["experiment", "metric", "bucket"]
    empty = nq.fetch_metrics(project=P, experiments=["nope"], attributes="loss")
    assert empty.empty and list(empty.index.names) == ["experiment", "step"]


# -- seed 000_12f6296500e5ddae.txt (§16.3) ----------------------------------------------------


def test_seed_kittiwake(home: Path) -> None:
    base = nq.fetch_metrics(
        project=SEED, experiments=["kittiwake_week-1"], attributes=["loss", "accuracy"]
    )
    expected = pd.DataFrame(
        {"accuracy": [0.95, 0.96, 0.97, 0.98, 0.99], "loss": [0.31, 0.30, 0.27, 0.28, 0.26]},
        index=_index("experiment", [("kittiwake_week-1", s) for s in range(1, 6)]),
    )
    assert_frame_equal(base, expected)
    got = nq.fetch_metrics(
        project=SEED,
        experiments=["kittiwake_week-1"],
        attributes=["loss", "accuracy"],
        step_range=(1.0, 3.0),
    )
    assert_frame_equal(got, expected.iloc[0:3])
    got = nq.fetch_metrics(
        project=SEED,
        experiments=["kittiwake_week-1"],
        attributes=["loss", "accuracy"],
        tail_limit=3,
    )
    assert_frame_equal(got, expected.iloc[2:5])
    got = nq.fetch_metrics(
        project=SEED, experiments=["kittiwake_week-1"], attributes=r"^metrics", tail_limit=1
    )
    expected_tail = pd.DataFrame(
        {"metrics/m_0": [nan, 7.5], "metrics/m_1": [7.0, nan]},
        index=_index("experiment", [("kittiwake_week-1", 3), ("kittiwake_week-1", 5)]),
    )
    assert_frame_equal(got, expected_tail)

    got = nq.fetch_metrics(
        project=SEED, experiments=["kittiwake_week-1"], attributes=["loss"], include_time="absolute"
    )
    assert list(got.columns) == [("loss", "value"), ("loss", "absolute_time")]

    got = nq.fetch_metrics(
        project=SEED,
        experiments=["kittiwake_week-1"],
        attributes=["loss"],
        include_point_previews=True,
    )
    assert list(got.columns) == [
        ("loss", "value"),
        ("loss", "is_preview"),
        ("loss", "preview_completion"),
    ]
    assert got.index[-1] == ("kittiwake_week-1", 6.0)
    assert got.iloc[-1].tolist() == [0.23, True, 0.326681]
    assert got[("loss", "is_preview")].iloc[:-1].tolist() == [False] * 5
    assert got[("loss", "is_preview")].dtype == bool
    assert (got[("loss", "preview_completion")].iloc[:-1] == 1.0).all()


def test_seed_lineage(home: Path) -> None:
    own = nq.fetch_metrics(
        project=SEED,
        experiments=["kittiwake_week-2"],
        attributes=["loss"],
        lineage_to_the_root=False,
    )
    assert own.index.get_level_values("step").tolist() == [6.0, 7.0, 8.0, 9.0]
    assert own["loss"].tolist() == [0.23, 0.20, 0.17, 0.16]
    full = nq.fetch_metrics(project=SEED, experiments=["kittiwake_week-2"], attributes=["loss"])
    assert full.index.get_level_values("step").tolist() == [float(s) for s in range(1, 10)]
    assert full["loss"].tolist() == [0.31, 0.30, 0.27, 0.28, 0.26, 0.23, 0.20, 0.17, 0.16]


def test_seed_non_finite_filter_is_rejected(home: Path) -> None:
    with pytest.raises(NeptuneUnexpectedResponseError):
        nq.fetch_metrics(
            project=SEED,
            experiments=nq.Filter.gt("metrics/m_0", float("-inf")),
            attributes=r"^metrics",
        )


def test_seed_examples_for_the_demo(home: Path) -> None:
    from despina.query.examples import seed_examples

    found = {title: frame for title, _, frame in seed_examples(SEED)}
    assert found["Tail limit"].index.get_level_values("step").tolist() == [3.0, 4.0, 5.0]
    assert "Lineage to the root = False (4 points, steps 6.0–9.0)" in found
    assert found["Point previews"].iloc[-1].tolist() == [0.23, True, 0.326681]
