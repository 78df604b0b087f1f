"""Where the store is: ``store=`` in-process, ``--store`` on the command line, DESPINA_STORE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import despina
import despina.query as dq
import despina.query.runs
from despina.cli import cli
from despina.errors import ConfigError
from despina.store import Store

pytestmark = pytest.mark.sqlite_only  # picks stores of its own


def _invoke(*args: str) -> Any:
    """Run the CLI; what ``--store`` / ``--blobs`` set in the environment is undone after."""
    return CliRunner(env={"DESPINA_STORE": None, "DESPINA_BLOBS": None}).invoke(cli, list(args))


def _log(store: str) -> None:
    run = despina.Run(
        project="ws/where",
        run_id="r",
        store=store,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )
    run.log_metrics({"m": 1.5}, step=1)
    run.close()


def test_a_store_url_wins_over_the_home_directory(tmp_path: Path, home: Path) -> None:
    target = tmp_path / "elsewhere"
    _log(f"sqlite://{target}")
    assert (target / "despina.db").exists()
    assert not (home / "despina.db").exists()
    dq.set_store(target)
    try:
        frame = dq.runs.fetch_metrics(project="ws/where", runs=["r"], attributes="m")
    finally:
        dq.set_store(None)
    assert frame.shape[0] == 1
    table = despina.init_project("ws/where", store=str(target)).fetch_runs_table().to_pandas()
    assert list(table["sys/custom_run_id"]) == ["r"]


def test_the_environment_names_the_store(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "from-env"
    monkeypatch.setenv("DESPINA_STORE", str(target))
    Store.open(home).create_project("ws/env")
    assert Store.open(target).list_projects() == ["ws/env"]
    assert not (home / "despina.db").exists()


def test_a_malformed_store_url_is_refused_before_anything_opens(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported store URL"):
        dq.set_store("mysql://db/x")
    result = _invoke("project", "list", "--store", "mysql://db/x")
    assert result.exit_code == 2
    assert "unsupported store URL" in result.output and "postgresql://" in result.output


def test_every_command_that_opens_a_store_takes_store_and_blobs() -> None:
    for args in (
        ["serve"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["project", "create"],
        ["project", "list"],
        ["runs"],
        ["info"],
        ["import", "neptune-export"],
        ["sync"],
        ["demo"],
    ):
        result = _invoke(*args, "--help")
        assert result.exit_code == 0, (args, result.output)
        assert "--store URL" in result.output and "--blobs URL" in result.output, args


def test_cli_store_option(tmp_path: Path, home: Path) -> None:
    target = tmp_path / "cli-store"
    result = CliRunner().invoke(
        cli, ["project", "create", "ws/cli", "--store", f"sqlite://{target}"]
    )
    assert result.exit_code == 0, result.output
    assert Store.open(target).list_projects() == ["ws/cli"]
    assert not (home / "despina.db").exists()
    result = _invoke("info", "--store", str(target))
    assert result.exit_code == 0, result.output
    assert "ws/cli" in result.output


def test_a_postgresql_store_from_the_command_line(postgres_url: str) -> None:
    result = _invoke("project", "create", "ws/team", "--store", postgres_url)
    assert result.exit_code == 0, result.output
    result = _invoke("info", "--store", postgres_url)
    assert result.exit_code == 0, result.output
    assert "PostgreSQL store" in result.output and "ws/team" in result.output
