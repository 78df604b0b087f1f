"""The demo project and the CLI around it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from despina.cli import cli
from despina.demo import demo_plan, log_demo, metric_names
from despina.store import Store
from despina.store.stats import project_stats


def test_demo_plan_has_three_experiments_fifty_runs_and_forks() -> None:
    plan = demo_plan()
    assert len(plan) == 50
    assert len({r.experiment for r in plan}) == 3
    ids = [r.run_id for r in plan]
    forks = [r for r in plan if r.fork_of]
    assert forks and all(ids.index(r.fork_of) < ids.index(r.run_id) for r in forks)  # type: ignore[arg-type]
    assert len(metric_names()) == 30


def test_a_small_demo_logs_what_it_says(home: Path) -> None:
    plan = [demo_plan()[0], demo_plan()[6]]  # a root and a fork of it at step 1000
    points = log_demo(home, plan=plan, steps=1200)
    assert points == 30 * (1200 + 199)
    (stats,) = project_stats(Store.open(home))
    assert stats.runs == 2 and stats.experiments == 1
    assert stats.points == points + 12 + 1  # stdout lines every 100 steps (0..1100, 1100)


def test_cli_info_and_help(home: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "demo" in result.output
    log_demo(home, plan=demo_plan()[:1], steps=10)
    result = runner.invoke(cli, ["info"])
    assert result.exit_code == 0, result.output
    assert "demo/despina" in result.output and "bytes per point" in result.output


def test_demo_extras_show_the_rest_of_a_projects_life(home: Path) -> None:
    from despina.demo import DEMO_PROJECT, log_demo_extras
    from despina.project import init_project

    extras = log_demo_extras(home)
    project = init_project(DEMO_PROJECT)
    failed = project.fetch_runs_table("`sys/failed`:bool = True").to_rows()
    assert [r["sys/custom_run_id"] for r in failed] == ["seagull-diverged"]
    trashed = project.fetch_runs_table(trashed=True).to_rows()
    assert [r["sys/custom_run_id"] for r in trashed] == ["kittiwake-typo"]
    assert failed[0]["data/dataset"] == extras["artifact"]
    models = project.fetch_models_table(columns=["sys/id"]).to_rows()
    assert models == [{"sys/id": extras["model"]}]


def test_demo_prints_the_seed_query_examples(home: Path) -> None:
    from despina.query.examples import seed_examples

    log_demo(home, plan=[demo_plan()[0], demo_plan()[6]], steps=1200)
    import despina.query as nq

    nq.set_home(home)
    titles = [title for title, _, _ in seed_examples("demo/despina")]
    assert titles[:4] == ["Step range", "Tail limit", "Absolute timestamps", "Point previews"]
    assert any(t.startswith("Lineage to the root = False (199 points") for t in titles)
    assert "Buckets" in titles and "Last step of each metric" in titles
