"""The official clients, unmodified, against ``despina serve``: log with neptune-scale, read with
neptune-query, and compare with ``despina.query`` in-process over the same store."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from server_helpers import PROJECT, ServerProcess, Tokens, run_logging_script

pytestmark = pytest.mark.slow

nq = pytest.importorskip("neptune_query")
nq_runs = pytest.importorskip("neptune_query.runs")
from neptune_query.filters import Filter  # noqa: E402

LOGGING = """
import math
from datetime import datetime, timezone
from neptune_scale import Run
from neptune_scale.types import File, Histogram

with Run(run_id="base", experiment_name="exp-a", enable_console_log_capture=False,
         source_tracking_config=None) as run:
    run.log_configs({
        "params/lr": 0.1, "params/batch": 32, "params/use_bn": True, "params/optimizer": "adam",
        "params/started": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "params/layers": ["conv", "fc"],
    })
    run.add_tags(["t1", "t2"])
    run.add_tags(["g1"], group_tags=True)
    for s in range(1, 11):
        run.log_metrics({"metrics/loss": 1.0 / s, "metrics/acc": s / 10}, step=s)
    for s, v in enumerate([float("nan"), float("inf"), float("-inf"), 1.5], start=1):
        run.log_metrics({"metrics/odd": v}, step=s)
    run.log_metrics({"metrics/loss": 0.05}, step=11, preview=True, preview_completion=0.5)
    for s in range(1, 4):
        run.log_string_series({"logs/text": f"line {s}"}, step=s)
    run.log_histograms({"hist/w": Histogram(bin_edges=[0, 1, 2], counts=[1, 2])}, step=1)
    run.log_histograms({"hist/w": Histogram(bin_edges=[0, 1, 2], densities=[0.25, 0.75])}, step=2)
    run.assign_files({"files/config": File(b"hello world", mime_type="text/plain")})
    run.log_files({"files/sample": File(b"sample-1", mime_type="application/octet-stream")}, step=1)

with Run(run_id="child", experiment_name="exp-a", fork_run_id="base", fork_step=5,
         enable_console_log_capture=False, source_tracking_config=None) as run:
    for s in range(6, 9):
        run.log_metrics({"metrics/loss": 10.0 + s}, step=s)
    run.log_configs({"params/lr": 0.2})

with Run(run_id="other", experiment_name="exp-b", enable_console_log_capture=False,
         source_tracking_config=None) as run:
    run.log_configs({"params/lr": 0.3})
    for s in range(1, 4):
        run.log_metrics({"metrics/loss": 100.0 + s}, step=s)
"""


@pytest.fixture(scope="module")
def logged(server: ServerProcess, tokens: Tokens, tmp_path_factory: pytest.TempPathFactory) -> str:
    run_logging_script(LOGGING, tmp_path_factory.mktemp("logging"), tokens.project)
    nq.set_api_token(tokens.project)
    return tokens.project


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_listing(logged: str) -> None:
    assert sorted(nq.list_experiments(project=PROJECT)) == ["exp-a", "exp-b"]
    assert sorted(nq_runs.list_runs(project=PROJECT)) == ["base", "child", "other"]
    names = nq.list_attributes(project=PROJECT, experiments=["exp-a"])
    for name in ("params/lr", "metrics/loss", "logs/text", "hist/w", "files/config", "sys/id"):
        assert name in names
    assert nq_runs.list_attributes(project=PROJECT, runs=["other"], attributes=r"sys/.*id$") == [
        "sys/custom_run_id",
        "sys/diagnostics/project_uuid",
        "sys/diagnostics/run_uuid",
        "sys/id",
    ]


def test_tables(logged: str) -> None:
    table = nq_runs.fetch_runs_table(
        project=PROJECT, runs=["base"], attributes=r"^params/|^sys/tags$|^sys/group_tags$"
    )
    row = table.loc["base"]
    assert row["params/lr"] == 0.1
    assert row["params/batch"] == 32
    assert bool(row["params/use_bn"]) is True
    assert row["params/optimizer"] == "adam"
    assert row["params/started"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row["params/layers"] == {"conv", "fc"}
    assert row["sys/tags"] == {"t1", "t2"}
    assert row["sys/group_tags"] == {"g1"}
    heads = nq.fetch_experiments_table(
        project=PROJECT, attributes=["params/lr", "metrics/loss", "sys/forking/parent"]
    )
    assert sorted(heads.index) == ["exp-a", "exp-b"]
    assert heads.loc["exp-a", "params/lr"] == 0.2  # the head is the child
    assert heads.loc["exp-a", "metrics/loss"] == 18.0
    assert heads.loc["exp-a", "sys/forking/parent"] == "base"
    sorted_runs = nq_runs.fetch_runs_table(
        project=PROJECT, attributes=["params/lr"], sort_by="params/lr", sort_direction="asc"
    )
    assert list(sorted_runs.index) == ["base", "child", "other"]
    filtered = nq.fetch_experiments_table(
        project=PROJECT, experiments=Filter.gt("params/lr", 0.25), attributes=["params/lr"]
    )
    assert list(filtered.index) == ["exp-b"]


def test_metrics_and_lineage(logged: str) -> None:
    full = nq.fetch_metrics(project=PROJECT, experiments=["exp-a"], attributes="metrics/loss")
    steps = [step for _, step in full.index]
    assert steps == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert full["metrics/loss"].tolist()[:5] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    # same experiment: the walk up the forks continues without lineage_to_the_root
    same = nq.fetch_metrics(
        project=PROJECT, experiments=["exp-a"], attributes="metrics/loss", lineage_to_the_root=False
    )
    assert [step for _, step in same.index] == steps
    own = nq_runs.fetch_metrics(
        project=PROJECT, runs=["child"], attributes="metrics/loss", lineage_to_the_root=False
    )
    assert [step for _, step in own.index] == [6.0, 7.0, 8.0]
    tail = nq_runs.fetch_metrics(
        project=PROJECT,
        runs=["base"],
        attributes="metrics/loss",
        tail_limit=2,
        include_point_previews=True,
    )
    assert [step for _, step in tail.index] == [10.0, 11.0]
    assert tail[("metrics/loss", "is_preview")].tolist() == [False, True]
    assert tail[("metrics/loss", "preview_completion")].tolist() == [1.0, 0.5]
    odd = nq_runs.fetch_metrics(project=PROJECT, runs=["base"], attributes="metrics/odd")
    values = odd["metrics/odd"].tolist()
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.5]
    ranged = nq_runs.fetch_metrics(
        project=PROJECT, runs=["base"], attributes="metrics/acc", step_range=(3, 5)
    )
    assert [step for _, step in ranged.index] == [3.0, 4.0, 5.0]


def test_series_files_and_buckets(logged: str, tmp_path: Path) -> None:
    series = nq_runs.fetch_series(
        project=PROJECT, runs=["base"], attributes=r"logs/text|hist/w|files/sample"
    )
    assert series["logs/text"].dropna().tolist() == ["line 1", "line 2", "line 3"]
    hist = series["hist/w"].dropna().tolist()
    assert hist[0].type == "COUNTING" and hist[0].values == [1.0, 2.0]
    assert hist[1].type == "DENSITY" and hist[1].values == [0.25, 0.75]
    sample = series["files/sample"].dropna().tolist()[0]
    assert sample.size_bytes == 8
    table = nq_runs.fetch_runs_table(project=PROJECT, runs=["base"], attributes="files/config")
    downloaded = nq_runs.download_files(files=table, destination=tmp_path)
    path = Path(downloaded.iloc[0, 0])
    assert path.read_bytes() == b"hello world"
    buckets = nq.fetch_metric_buckets(
        project=PROJECT, experiments=["exp-b"], y="metrics/loss", limit=2
    )
    assert buckets.shape == (2, 2)
    assert buckets[("exp-b", "metrics/loss", "y")].tolist() == [101.0, 103.0]


def test_global_search(logged: str) -> None:
    import neptune_query.experimental as nqe

    table = nqe.fetch_runs_table_global(runs=Filter.name("exp-b"), attributes=["params/lr"])
    assert list(table.index) == [(PROJECT, "other")]


def test_same_frames_as_despina_query(logged: str, server: ServerProcess) -> None:
    import despina.query as dq

    if not hasattr(dq, "fetch_metrics"):
        pytest.skip("despina.query has no public functions yet")
    dq_runs = pytest.importorskip("despina.query.runs")
    import os

    os.environ["DESPINA_HOME"] = str(server.home)
    calls = [
        ("fetch_metrics", {"experiments": ["exp-a"], "attributes": "metrics/"}),
        (
            "fetch_metrics",
            {"experiments": ["exp-a"], "attributes": "metrics/loss", "lineage_to_the_root": False},
        ),
        ("fetch_experiments_table", {"attributes": r"params/|metrics/"}),
        ("fetch_series", {"experiments": ["exp-a"], "attributes": "logs/text"}),
    ]
    for name, kwargs in calls:
        remote = getattr(nq, name)(project=PROJECT, **kwargs)
        local = getattr(dq, name)(project=PROJECT, **kwargs)
        pd.testing.assert_frame_equal(local, remote, check_dtype=False)
    remote_runs = nq_runs.fetch_metrics(
        project=PROJECT,
        runs=["base", "child"],
        attributes="metrics/loss",
        include_point_previews=True,
    )
    local_runs = dq_runs.fetch_metrics(
        project=PROJECT,
        runs=["base", "child"],
        attributes="metrics/loss",
        include_point_previews=True,
    )
    pd.testing.assert_frame_equal(local_runs, remote_runs, check_dtype=False)
