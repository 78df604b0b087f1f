"""``despina info`` on an 80-column terminal: project names are never cut, and counts say
"1 run", not "1 runs"."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import despina
from despina.cli import cli
from despina.store import Store

NAMES = [
    "my-team/bird",
    "my-team/birds",
    "my-team/bird-ablations-2024",
    "my-team/bird-ablations-2024-v2",
    "a-rather-long-workspace-name/with-an-even-longer-project-name",
]


def _first_column(output: str) -> list[str]:
    """The project cells of a rich table, each joined across the lines it folds onto."""
    names: list[str] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if any(cells[1:]):  # a new row (its numbers are on its first line)
            names.append(cells[0])
        elif names:
            names[-1] += cells[0]
    return names


def test_info_never_cuts_project_names(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(home)
    for name in NAMES:
        store.create_project(name)
    store.close()
    result = CliRunner().invoke(cli, ["info", "--home", str(home)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    assert sorted(_first_column(result.output)) == sorted(NAMES)


def test_runs_command_says_one_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with despina.Run(project="ws/p", run_id="only", home=home, enable_console_log_capture=False,
                     source_tracking_config=None) as run:  # fmt: skip
        run.log_configs({"lr": 0.1})
    runner = CliRunner(env={"DESPINA_HOME": str(home)})
    result = runner.invoke(cli, ["runs", "-p", "ws/p"])
    assert result.exit_code == 0, result.output
    assert "1 run" in result.output and "1 runs" not in result.output
    result = runner.invoke(cli, ["runs", "-p", "ws/p", "trash", "only"])
    assert result.output.strip() == "trashed 1 run"
