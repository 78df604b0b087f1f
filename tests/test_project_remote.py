"""init_project() with an API token against a real ``despina serve`` on 127.0.0.1: every table
equals the in-process table on the server's store (rows and frames, types included), errors are
the same classes, the trash and descriptions change the server's store, and tokens are checked
(revoked, foreign, project-scoped)."""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import despina
from despina.client.stores import close_idle_stores
from despina.errors import AuthError, InvalidQuery, NqlError, ProjectNotFound, RunNotFound
from despina.project import Project
from despina.server.auth import mint_api_token
from despina.store import Store
from despina.store.access import revoke_api_key
from despina.store.http.connection import TokenRefused
from serving import ServerProcess, mint, serving_new_store

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}
PROJECT = "ws/proj"
OTHER = "ws/other"


def _fill(home: Path) -> None:
    """Runs with every kind of cell (NaN, ints, bools, datetimes, tags, series, a path holding
    a float in one run and a string in another), a trashed run, and a model with versions."""
    when = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    for i, run_id in enumerate(["a", "b", "c", "d"]):
        with despina.Run(project=PROJECT, run_id=run_id, home=home, **QUIET) as run:
            configs: dict[str, Any] = {
                "lr": 0.1 * (i + 1),
                "nan": math.nan if i % 2 else 1.5,
                "epochs": 10 + i,
                "big": 2**62 + i,
                "flag": bool(i % 2),
                "name": f"run {run_id} ✓",
                "when": when,
                "mixed": 1.0 if i % 2 else "text",
            }
            if i < 2:
                configs["sparse"] = i
            run.log_configs(configs)
            run.add_tags(["x", f"t{i}"])
            for step in range(3):
                run.log_metrics({"acc": 0.3 * step + 0.01 * i, "loss": math.nan}, step=step)
    with despina.Run(project=PROJECT, run_id="gone", home=home, **QUIET) as run:
        run.log_configs({"lr": 9.0})
    store = Store.open(home)
    try:
        Project.over(store, PROJECT).trash_runs("gone")
    finally:
        store.close()  # a module fixture's store: no test closes it
    model = despina.init_model(key="CLS", project=PROJECT, name="classifier", home=home)
    model.log_configs({"arch": "resnet"})
    for acc, stage in ((0.91, "production"), (0.95, None)):
        version = despina.init_model_version(model="PROJ-CLS", project=PROJECT, home=home)
        version.log_configs({"acc": acc})
        if stage:
            version.change_stage(stage)
        version.close()
    model.close()
    close_idle_stores()  # the runs' shared store, opened before any test's clean-up applies


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("project-remote") / "home"
    with serving_new_store(
        home, (PROJECT, OTHER), extra_args=("--no-access-log",), fill=_fill
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return mint(server.home, server.url, workspace="ws")


def _both(server: ServerProcess, token: str) -> tuple[Project, Project]:
    return Project(PROJECT, home=server.home), despina.init_project(PROJECT, api_token=token)


def _same(local: Any, remote: Any) -> None:
    assert remote.columns == local.columns
    assert _rows(remote.to_rows()) == _rows(local.to_rows())
    pd.testing.assert_frame_equal(remote.to_pandas(), local.to_pandas())


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with NaN as a marker (NaN != NaN) and each value's type beside it."""
    return [
        {k: ("NaN" if isinstance(v, float) and math.isnan(v) else v, type(v)) for k, v in r.items()}
        for r in rows
    ]


TABLE_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("fetch_runs_table", {}),
    ("fetch_runs_table", {"columns": ["sys/custom_run_id", "lr", "nan", "mixed", "sparse"]}),
    ("fetch_runs_table", {"query": "`lr`:float > 0.15", "sort_by": "lr", "ascending": True}),
    ("fetch_runs_table", {"query": '`sys/tags`:stringSet CONTAINS "t1"', "columns": "name"}),
    ("fetch_runs_table", {"trashed": None, "limit": 2, "columns": ["sys/trashed", "when"]}),
    ("fetch_runs_table", {"trashed": True}),
    ("fetch_runs_table", {"query": "`lr`:float > 100"}),
    ("fetch_runs_table", {"query": "`lr`:float > 100", "columns": ["lr", "sys/id"]}),
    ("fetch_models_table", {}),
    ("fetch_models_table", {"columns": ["sys/id", "arch", "name"]}),
]


@pytest.mark.parametrize(("method", "arguments"), TABLE_CALLS)
def test_remote_tables_equal_in_process(
    server: ServerProcess, token: str, method: str, arguments: dict[str, Any], home: Path
) -> None:
    local, remote = _both(server, token)
    assert remote.server == server.url
    _same(getattr(local, method)(**arguments), getattr(remote, method)(**arguments))
    assert not home.exists()  # remote: no local store was created


def test_model_versions_table(
    server: ServerProcess, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, remote = _both(server, token)
    monkeypatch.chdir(tmp_path)  # a remote model's queue directory
    model = despina.init_model(with_id="PROJ-CLS", project=PROJECT, api_token=token)
    try:
        _same(local.fetch_model_versions_table("PROJ-CLS"), model.fetch_model_versions_table())
    finally:
        model.close()
    for arguments in (
        {},
        {"query": '`sys/stage`:string = "production"', "columns": ["sys/id", "acc"]},
    ):
        _same(
            local.fetch_model_versions_table("PROJ-CLS", **arguments),
            remote.fetch_model_versions_table("PROJ-CLS", **arguments),
        )


@pytest.mark.parametrize(
    "arguments",
    [
        {"query": "`lr`:float >"},
        {"query": "`lr`:float > 1 AND ("},
        {"limit": -1},
        {"limit": "3"},
        {"sort_by": ""},
        {"columns": [1]},
    ],
)
def test_errors_are_the_in_process_ones(
    server: ServerProcess, token: str, arguments: dict[str, Any]
) -> None:
    local, remote = _both(server, token)
    with pytest.raises(InvalidQuery) as expected:
        local.fetch_runs_table(**arguments)
    with pytest.raises(InvalidQuery) as found:
        remote.fetch_runs_table(**arguments)
    assert type(found.value) is type(expected.value)
    assert str(found.value) == str(expected.value)
    if isinstance(expected.value, NqlError):
        assert isinstance(found.value, NqlError)
        assert (found.value.start, found.value.end) == (expected.value.start, expected.value.end)


def test_unknown_project_and_run(server: ServerProcess, token: str) -> None:
    with pytest.raises(ProjectNotFound):
        despina.init_project("ws/nope", api_token=token).fetch_runs_table()
    remote = despina.init_project(PROJECT, api_token=token)
    with pytest.raises(RunNotFound):
        remote.trash_runs(["no-such-run"])
    with pytest.raises(RunNotFound):
        remote.set_description("no-such-run", "text")


def test_trash_restore_delete_and_description_change_the_server(
    server: ServerProcess, token: str
) -> None:
    with despina.Run(project=OTHER, run_id="r1", home=server.home, **QUIET) as run:
        run.log_configs({"x": 1})
    with despina.Run(project=OTHER, run_id="r2", home=server.home, **QUIET) as run:
        run.log_configs({"x": 2})
    remote = despina.init_project(OTHER, api_token=token)
    local = Project(OTHER, home=server.home)

    def live() -> list[str]:
        return sorted(r["sys/custom_run_id"] for r in local.fetch_runs_table().to_rows())

    assert remote.trash_runs(["r1", "r2"]) == 2
    assert live() == []
    assert remote.restore_runs("r2") == 1
    assert live() == ["r2"]
    with pytest.raises(InvalidQuery, match="trash"):
        remote.delete_runs("r2")  # not in the trash
    assert remote.delete_runs("r1") == 1
    assert local.fetch_runs_table(trashed=None, columns=["x"]).to_rows() == [{"x": 2}]
    remote.set_description("r2", "remote words")
    rows = local.fetch_runs_table(columns=["sys/description"]).to_rows()
    assert rows == [{"sys/description": "remote words"}]


def test_environment_token_is_used_unless_a_store_is_named(
    server: ServerProcess, token: str, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token)
    assert despina.init_project(PROJECT).server == server.url
    assert len(despina.init_project(PROJECT).fetch_runs_table()) == 4
    assert not home.exists()
    assert despina.init_project(PROJECT, home=home).server is None


def test_project_scoped_token_cannot_reach_another_project(server: ServerProcess) -> None:
    scoped = mint(server.home, server.url, workspace="ws", project="other")
    assert len(despina.init_project(OTHER, api_token=scoped).fetch_runs_table(trashed=None)) >= 0
    refused = despina.init_project(PROJECT, api_token=scoped)
    with pytest.raises(AuthError) as info:
        refused.fetch_runs_table()
    assert info.value.status == 403 and "ws/proj" in str(info.value)
    with pytest.raises(AuthError) as info:
        refused.trash_runs("a")
    assert info.value.status == 403


def test_revoked_and_foreign_tokens_name_the_server_and_the_fix(server: ServerProcess) -> None:
    store = Store.open(server.home)
    try:
        revoked, key = mint_api_token(store, url=server.url, workspace="ws")
        revoke_api_key(store, key.key_id)
    finally:
        store.close()
    payload = {"api_url": server.url, "api_key": "k" * 16 + ".not-a-secret-of-this-server"}
    foreign = base64.b64encode(json.dumps(payload).encode()).decode()
    for bad in (revoked, foreign):
        with pytest.raises(TokenRefused) as info:
            despina.init_project(PROJECT, api_token=bad).fetch_runs_table()
        assert server.url in str(info.value) and "despina token create" in str(info.value)


def test_cli_runs_lists_the_servers_runs_with_a_token(
    server: ServerProcess, token: str, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    from click.testing import CliRunner

    from despina.cli import cli

    runner = CliRunner()
    listing = ["runs", "-p", PROJECT, "-c", "sys/custom_run_id"]
    found = runner.invoke(cli, [*listing, "--api-token", token])
    assert found.exit_code == 0, found.output
    assert "4 runs" in found.output and "│ d " in found.output
    monkeypatch.setenv("DESPINA_API_TOKEN", token)
    assert "4 runs" in runner.invoke(cli, listing).output
    if os.environ.get("DESPINA_STORE"):
        return  # over PostgreSQL the test's own store is the server's
    store = Store.open(home)
    store.create_project(PROJECT)
    store.close()
    local = runner.invoke(cli, [*listing, "--home", str(home)])  # a named store wins
    assert local.exit_code == 0 and "0 runs" in local.output, local.output


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"trashed": "yes"}, "trashed"),
        ({"columns": "lr"}, "columns"),
        ({"kind": "experiment"}, "experiment"),
        ({"project": 3}, "project"),
    ],
)
def test_bad_table_requests_are_refused_naming_the_field(
    server: ServerProcess, token: str, body: dict[str, Any], named: str
) -> None:
    from despina.store.http.connection import connection_for

    with pytest.raises(InvalidQuery, match=named):
        connection_for(token).post_json("/projects/table", {"project": PROJECT, **body})


def test_set_api_token_and_set_home_choose_like_despina_query(
    server: ServerProcess, token: str, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    import despina.query.api as api

    for name in ("_api_token", "_home", "_store_url", "_context"):  # restored after the test
        monkeypatch.setattr(api, name, getattr(api, name))
    api.set_api_token(token)
    assert despina.init_project(PROJECT).server == server.url
    api.set_home(home)  # a local store chosen for queries wins over the token
    assert despina.init_project(PROJECT).server is None
    assert despina.init_project(PROJECT, api_token=token).server == server.url
