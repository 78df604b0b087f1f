"""Every query of the NQL seed (spec nql.md §8.2), on a project made only through public APIs.

Runs are logged with ``despina.Run``; owners are the OS user (set per run here), descriptions,
failures, trash, sizes, artifacts and states come from what the APIs do. Where the seed names a
fixed id or instant, the query names this project's equivalent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import despina

PROJECT = "ws/nli"
QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("seed-home")
    data = tmp_path_factory.mktemp("seed-data")
    (data / "train.csv").write_text("a,b\n1,2\n")
    mp = pytest.MonkeyPatch()
    facts: dict[str, Any] = {"home": home}

    def log(run_id: str, owner: str, fail: bool = False, **kwargs: Any) -> None:
        mp.setattr("getpass.getuser", lambda: owner)
        body = kwargs.pop("body")
        try:
            with despina.Run(project=PROJECT, run_id=run_id, home=home, **QUIET, **kwargs) as run:
                body(run)
                if fail:
                    raise RuntimeError("diverged")
        except RuntimeError:
            pass

    def r1(run: despina.Run) -> None:
        run.log_configs(
            {
                "f1": 0.9,
                "scores/f1": 0.6,
                "learning_rate": 0.002,
                "test/acc": 0.95,
                "f1_score": 0.4,
                "model_info/size_MB": 45,
                "backbone": "VGG",
                "config/foo1": "valfoo1",
                "config/bar1": 1,
            }
        )
        run.add_tags(["some-tag", "exploration", "tag1", "tag2", "my tag", "tag-name"])
        for step, (acc, macc, loss) in enumerate(
            [(0.7, 0.5, 0.5), (0.9, 0.9, 0.05), (0.95, 0.9, 0.2)]
        ):
            run.log_metrics(
                {"accuracy": acc, "metrics/acc": macc, "metrics/accuracy": 0.8, "train/loss": loss},
                step=step,
            )
        run.log_string_series({"my_monitoring_namespace/stdout": "ok"}, step=0)
        run.log_string_series({"my_monitoring_namespace/stdout": "an error here"}, step=1)
        run.assign_files({"weights": b"\0" * 11_000_000})  # sys/size > 10MB
        facts["artifact"] = run.track_artifact("dataset_version", data)

    log(
        "r1",
        "jackie",
        fail=True,
        body=r1,
        experiment_name="cunning-blobfish",
        description="test run on new data",
        creation_time=datetime.now(UTC) - timedelta(days=120),
    )

    def r2(run: despina.Run) -> None:
        run.log_configs(
            {
                "f1": 0.84,
                "scores/f1": 0.59,
                "learning_rate": 0.01,
                "config/bar1": 2,
                "f1_score": 0.7,
            }
        )
        run.add_tags(["tag1"])
        run.log_metrics({"accuracy": 0.8, "metrics/acc": 0.84, "metrics/accuracy": 0.7}, step=0)
        run.assign_files({"weights": b"\0" * 900_000})  # sys/size > 800 kb

    log("r2", "bob@ml-team", body=r2, experiment_name="blobfish-b", description="another test")
    facts["between_pings"] = time.time() * 1000
    time.sleep(0.05)

    def r3(run: despina.Run) -> None:
        run.log_configs(
            {
                "f1": 0.95,
                "learning_rate": 0.002,
                "test/acc": 0.91,
                "model_info/size_MB": 50.0,
                "backbone": "ResNet",
            }
        )
        run.add_tags(["some-tag", "tag2"])
        run.log_metrics({"metrics/acc": 0.86}, step=0)

    log("r3", "jackie", fail=True, body=r3, experiment_name="exp3")
    despina.init_project(PROJECT, home=home).set_description("r3", "tried again with new data")

    def r4(run: despina.Run) -> None:
        run.log_configs({"f1": 0.5, "config/foo1": "valfoo1"})

    log("r4", "alice", body=r4, experiment_name="exp2")

    def trashed(run: despina.Run) -> None:
        run.log_configs({"f1": 0.99})
        run.add_tags(["some-tag"])

    log("gone", "jackie", body=trashed, experiment_name="blobfish-gone")
    project = despina.init_project(PROJECT, home=home)
    project.trash_runs(["gone"])
    mp.setattr("getpass.getuser", lambda: "carol")
    alive = despina.Run(project=PROJECT, run_id="alive", home=home, **QUIET)  # not closed: running
    alive.log_configs({"f1": 0.1})
    alive.wait_for_processing()
    ids = {
        row["sys/custom_run_id"]: row["sys/id"]
        for row in project.fetch_runs_table(
            columns=["sys/custom_run_id", "sys/id"], trashed=None
        ).to_rows()
    }
    facts.update(project=project, ids=ids, alive=alive)
    yield facts
    alive.close()
    mp.undo()


def matched(facts: dict[str, Any], query: str, trashed: bool | None = False) -> set[str]:
    table = facts["project"].fetch_runs_table(query, columns=["sys/custom_run_id"], trashed=trashed)
    return {row["sys/custom_run_id"] for row in table.to_rows()}


SEED = [
    ('(`sys/tags`:stringSet CONTAINS "some-tag") AND (`f1`:float >= 0.85)', {"r1", "r3"}),
    ("`scores/f1`:float >= 0.60", {"r1"}),
    ('`sys/tags`:stringSet CONTAINS "my tag"', {"r1"}),
    ("average(`accuracy`:floatSeries) > 0.8", {"r1"}),
    ("(last(`metrics/acc`):float >= 0.85) AND (`learning_rate`:float = 0.002)", {"r1", "r3"}),
    ("last(`metrics/accuracy`):float >= 0.80", {"r1"}),
    ('`sys/name`:string NOT CONTAINS "blobfish"', {"r3", "r4", "alive"}),
    ('NOT `sys/name`:string CONTAINS "blobfish"', {"r3", "r4", "alive"}),
    (
        "NOT (`sys/name`:string CONTAINS blobfish AND `sys/failed`:bool = True)",
        {"r2", "r3", "r4", "alive"},
    ),
    ("(`model_info/size_MB`:float <= 50MB) AND (`test/acc`:float > 0.90)", {"r1", "r3"}),
    ('(`sys/owner`:string = "jackie") AND (`sys/tags`:stringSet CONTAINS "exploration")', {"r1"}),
    ("`f1_score`:float < 0.50", {"r1"}),
    ('`sys/name`:string = "cunning-blobfish"', {"r1"}),
    ('`sys/name`:string CONTAINS "blobfish"', {"r1", "r2"}),
    ('`my_monitoring_namespace/stdout`:stringSeries CONTAINS "error"', {"r1"}),
    ('`sys/tags`:stringSet CONTAINS "tag-name"', {"r1"}),
    (
        '(`sys/tags`:stringSet CONTAINS "tag1") OR (`sys/tags`:stringSet CONTAINS "tag2")',
        {"r1", "r2", "r3"},
    ),
    ('(`sys/tags`:stringSet CONTAINS "tag1") AND (`sys/tags`:stringSet CONTAINS "tag2")', {"r1"}),
    ('`sys/creation_time`:datetime < "-3M"', {"r1"}),
    ('`sys/description`:string = "test run on new data"', {"r1"}),
    ('`sys/description`:string CONTAINS "new data"', {"r1", "r3"}),
    ('`sys/owner`:string = "jackie"', {"r1", "r3"}),
    ('`sys/owner`:string CONTAINS "@ml-team"', {"r2"}),
    ("`sys/size`:float > 100MB", set()),
    ("`sys/size`:float > 10MB", {"r1"}),
    ("`sys/size`:float > 800kb", {"r1", "r2"}),
    ('`sys/size`:float > "800 kb"', {"r1", "r2"}),
    ("`sys/size`:float > 800000", {"r1", "r2"}),
    ('`sys/state`:experimentState = "inactive"', {"r1", "r2", "r3", "r4"}),
    ('`sys/state`:experimentState = "running"', {"alive"}),
    ("`sys/failed`:bool = True", {"r1", "r3"}),
    ("min(`train/loss`:floatSeries) < 0.1", {"r1"}),
    ("(backbone: string = VGG)", {"r1"}),
]


@pytest.mark.parametrize(("query", "expected"), SEED)
def test_seed_query(seeded: dict[str, Any], query: str, expected: set[str]) -> None:
    assert matched(seeded, query) == expected


def test_queries_naming_ids_instants_and_artifacts(seeded: dict[str, Any]) -> None:
    ids = seeded["ids"]
    assert matched(seeded, f'`sys/id`:string = "{ids["r1"]}"') == {"r1"}
    either = f'(`sys/id`:string = "{ids["r2"]}") OR (`sys/id`:string = "{ids["r3"]}")'
    assert matched(seeded, either) == {"r2", "r3"}
    after = _iso(seeded["between_pings"])
    assert matched(seeded, f'`sys/ping_time`:datetime > "{after}"') == {"r3", "r4", "alive"}
    digest = seeded["artifact"]
    assert matched(seeded, f"`dataset_version`:artifact = {digest}") == {"r1"}
    assert matched(seeded, f'`dataset_version`:artifact = "{digest[:-1]}0"') == set()


def test_trashed_runs_only_when_asked(seeded: dict[str, Any]) -> None:
    query = '`sys/name`:string CONTAINS "blobfish"'
    assert matched(seeded, query, trashed=None) == {"r1", "r2", "gone"}
    assert matched(seeded, query, trashed=True) == {"gone"}
    assert matched(seeded, "`sys/trashed`:bool = true", trashed=None) == {"gone"}
