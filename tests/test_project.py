"""init_project(): NQL-filtered tables, trash, descriptions, the model registry, run states."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import despina
from despina.cli import cli
from despina.errors import ConfigError, InvalidQuery, NqlError, RunNotFound

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}
PROJECT = "ws/proj"


def log(run_id: str, fail: bool = False, **kwargs: Any) -> None:
    configs = kwargs.pop("configs", {})
    tags = kwargs.pop("tags", [])
    metrics = kwargs.pop("metrics", {})
    try:
        with despina.Run(project=PROJECT, run_id=run_id, **QUIET, **kwargs) as run:
            run.log_configs(configs)
            if tags:
                run.add_tags(tags)
            for step, values in enumerate(metrics.get("rows", [])):
                run.log_metrics(values, step=step)
            if fail:
                raise RuntimeError("training diverged")
    except RuntimeError:
        pass


def ids(table: despina.project.Table) -> list[str]:
    return [row["sys/custom_run_id"] for row in table.to_rows()]


@pytest.fixture
def project(home: Path) -> despina.Project:
    log(
        "a",
        configs={"lr": 0.002, "f1": 0.9},
        tags=["exploration", "my tag"],
        metrics={"rows": [{"acc": 0.5}, {"acc": 0.86}]},
        experiment_name="cunning-blobfish",
        description="test run on new data",
    )
    log(
        "b",
        configs={"lr": 0.1, "f1": 0.4},
        tags=["baseline"],
        fail=True,
        experiment_name="lazy-blobfish",
    )
    log("c", configs={"lr": 0.01, "f1": 0.7}, metrics={"rows": [{"acc": 0.9}, {"acc": 0.7}]})
    return despina.init_project(PROJECT)


def test_fetch_runs_table_filters_with_nql(project: despina.Project) -> None:
    query = '(last(`acc`):float >= 0.85) AND (`sys/tags`:stringSet CONTAINS "exploration")'
    assert ids(project.fetch_runs_table(query)) == ["a"]
    assert ids(project.fetch_runs_table("`sys/failed`:bool = True")) == ["b"]
    assert ids(project.fetch_runs_table('`sys/name`:string CONTAINS "blobfish"')) == ["b", "a"]
    assert ids(
        project.fetch_runs_table(
            "NOT (`sys/name`:string CONTAINS blobfish AND `sys/failed`:bool = True)"
        )
    ) == ["c", "a"]
    assert ids(project.fetch_runs_table('`sys/description`:string CONTAINS "new data"')) == ["a"]
    assert ids(
        project.fetch_runs_table(
            f'`sys/owner`:string = "{os.environ.get("USER") or __import__("getpass").getuser()}"'
        )
    ) == ["c", "b", "a"]
    assert ids(project.fetch_runs_table("max(`acc`:floatSeries) >= 0.9")) == ["c"]
    assert ids(project.fetch_runs_table("`sys/size`:float > 10kb")) == []
    assert ids(project.fetch_runs_table('`sys/state`:experimentState = "inactive"')) == [
        "c",
        "b",
        "a",
    ]


def test_table_shape_sorting_and_limit(project: despina.Project) -> None:
    frame = project.fetch_runs_table(
        columns=["sys/custom_run_id", "lr", "acc", "sys/tags"], sort_by="lr", ascending=True
    ).to_pandas()
    assert list(frame.columns) == ["sys/custom_run_id", "lr", "acc", "sys/tags"]
    assert frame["sys/custom_run_id"].tolist() == ["a", "c", "b"]
    assert frame["acc"].tolist()[:2] == [0.86, 0.7] and pd.isna(frame["acc"].iloc[2])
    assert frame["sys/tags"].tolist() == ["exploration,my tag", "", "baseline"]
    everything = project.fetch_runs_table(limit=1).to_pandas()
    assert len(everything) == 1 and "sys/creation_time" in everything.columns
    assert isinstance(everything["sys/creation_time"].iloc[0], pd.Timestamp)
    with pytest.raises(InvalidQuery, match="limit"):
        project.fetch_runs_table(limit=-1)


def test_malformed_query_names_the_position(project: despina.Project) -> None:
    with pytest.raises(NqlError) as info:
        project.fetch_runs_table("`lr`:float >")
    assert info.value.col == 13


def test_trash_restore_delete(project: despina.Project, home: Path) -> None:
    assert project.trash_runs(["b"]) == 1
    assert ids(project.fetch_runs_table()) == ["c", "a"]
    assert ids(project.fetch_runs_table(trashed=True)) == ["b"]
    assert ids(project.fetch_runs_table(trashed=None)) == ["c", "b", "a"]
    assert ids(project.fetch_runs_table("`sys/trashed`:bool = true", trashed=None)) == ["b"]
    with pytest.raises(InvalidQuery, match="not in the trash"):
        project.delete_runs(["c"])
    with pytest.raises(RunNotFound, match="'nope'"):
        project.trash_runs(["nope"])
    project.restore_runs("b")
    assert ids(project.fetch_runs_table()) == ["c", "b", "a"]
    sys_id = project.fetch_runs_table(columns=["sys/id"]).to_rows()[0]["sys/id"]
    project.trash_runs([sys_id])  # by sys/id too
    assert project.delete_runs([sys_id]) == 1
    assert ids(project.fetch_runs_table(trashed=None)) == ["b", "a"]


def test_delete_frees_files_and_refuses_orphaning_forks(home: Path) -> None:
    with despina.Run(project=PROJECT, run_id="parent", **QUIET) as run:
        run.log_metrics({"m": 1.0}, step=1)
        run.assign_files({"weights": b"x" * 100_000})
    with despina.Run(project=PROJECT, run_id="child", fork_run_id="parent", fork_step=1, **QUIET):
        pass
    project = despina.init_project(PROJECT)
    project.trash_runs(["parent"])
    with pytest.raises(InvalidQuery, match="'child'"):
        project.delete_runs(["parent"])
    project.trash_runs(["child"])
    blobs = [p for p in (home / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert project.delete_runs(["parent", "child"]) == 2
    assert not [p for p in (home / "blobs").rglob("*") if p.is_file()]


def test_description_can_be_changed_later(project: despina.Project) -> None:
    project.set_description("c", "second try")
    assert ids(project.fetch_runs_table('`sys/description`:string = "second try"')) == ["c"]


def test_artifact_hash_is_stored(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("1,2,3\n")
    with despina.Run(project=PROJECT, run_id="r", **QUIET) as run:
        digest = run.track_artifact("dataset_version", data)
    row = despina.init_project(PROJECT).fetch_runs_table(columns=["dataset_version"]).to_rows()
    assert row == [{"dataset_version": digest}]
    with despina.Run(project=PROJECT, run_id="r2", **QUIET) as run:
        assert run.track_artifact("dataset_version", data) == digest  # same files, same hash


def test_model_registry(home: Path) -> None:
    model = despina.init_model(key="CLS", project=PROJECT, name="classifier")
    model.log_configs({"arch": "resnet"})
    assert model.id == "PROJ-CLS"
    first = despina.init_model_version(model=model.id, project=PROJECT)
    first.log_configs({"acc": 0.91})
    first.log_metrics({"loss": 0.5}, step=1)
    first.change_stage("production")
    first.close()
    second = despina.init_model_version(model="PROJ-CLS", project=PROJECT)
    second.log_configs({"acc": 0.95})
    second.close()
    model.close()
    with pytest.raises(ConfigError, match="stage 'prod'"):
        despina.init_model_version(with_id="PROJ-CLS-2", project=PROJECT).change_stage("prod")
    with pytest.raises(RunNotFound, match="PROJ-NOPE"):
        despina.init_model_version(model="PROJ-NOPE", project=PROJECT)
    with pytest.raises(ConfigError, match="lower"):
        despina.init_model(key="lower", project=PROJECT)
    project = despina.init_project(PROJECT)
    models = project.fetch_models_table(columns=["sys/id", "arch", "name"]).to_rows()
    assert models == [{"sys/id": "PROJ-CLS", "arch": "resnet", "name": "classifier"}]
    versions = despina.init_model(with_id="PROJ-CLS", project=PROJECT)
    table = versions.fetch_model_versions_table(columns=["sys/id", "sys/stage", "acc"])
    assert table.to_rows() == [
        {"sys/id": "PROJ-CLS-2", "sys/stage": "none", "acc": 0.95},
        {"sys/id": "PROJ-CLS-1", "sys/stage": "production", "acc": 0.91},
    ]
    production = versions.fetch_model_versions_table(
        query='`sys/stage`:string = "production"', columns=["sys/id", "sys/model_id"]
    )
    assert production.to_rows() == [{"sys/id": "PROJ-CLS-1", "sys/model_id": "PROJ-CLS"}]
    versions.close()
    assert ids(project.fetch_runs_table()) == []  # models are not runs


PINGING = textwrap.dedent(
    """
    import time, despina
    run = despina.Run(project="ws/proj", run_id="alive", enable_console_log_capture=False,
                      source_tracking_config=None)
    run.log_metrics({"m": 1.0}, step=0)
    print("ready", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.slow
def test_killed_process_turns_inactive_within_the_ping_timeout(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESPINA_PING_TIMEOUT", "4")  # pings every 0.5-1.3 s: ample margin
    proc = subprocess.Popen(
        [sys.executable, "-c", PINGING],
        env={**os.environ, "DESPINA_HOME": str(home)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    project = despina.init_project(PROJECT)
    running = '`sys/state`:experimentState = "running"'
    time.sleep(5)  # longer than the timeout: only pings keep it running
    assert ids(project.fetch_runs_table(running)) == ["alive"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(4.5)
    assert ids(project.fetch_runs_table(running)) == []
    assert ids(project.fetch_runs_table('`sys/state`:experimentState = "inactive"')) == ["alive"]


def test_cli_runs(project: despina.Project) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["runs", "-p", PROJECT, "-q", "`sys/failed`:bool = True", "-c", "sys/custom_run_id,lr"]
    )
    assert result.exit_code == 0, result.output
    assert "1 run" in result.output and "0.1" in result.output
    result = runner.invoke(cli, ["runs", "-p", PROJECT, "-q", "`lr`:flot > 1"])
    assert result.exit_code == 1 and "did you mean 'float'" in result.output
    assert runner.invoke(cli, ["runs", "-p", PROJECT, "trash", "b"]).exit_code == 0
    result = runner.invoke(cli, ["runs", "-p", PROJECT, "--trashed", "only"])
    assert "1 run" in result.output and "1 runs" not in result.output
    assert runner.invoke(cli, ["runs", "-p", PROJECT, "delete", "b"]).exit_code == 0
    result = runner.invoke(cli, ["runs", "-p", PROJECT, "set-description", "a", "hello"])
    assert result.exit_code == 0
    assert ids(project.fetch_runs_table('`sys/description`:string = "hello"')) == ["a"]
