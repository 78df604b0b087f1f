"""``despina demo``: log the demo project into the embedded store and show what is there."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from despina.cli.info import print_store_summary
from despina.cli.locations import store_options
from despina.demo import DEMO_PROJECT, STEPS, demo_plan, log_demo, log_demo_extras, metric_names
from despina.store import Store
from despina.store.admin import delete_project
from despina.wording import counted

__all__ = ["demo"]


@click.command()
@store_options
@click.option("--home", type=click.Path(file_okay=False), help="Store directory (DESPINA_HOME).")
@click.option("--fresh", is_flag=True, help="Delete the demo project first and log it again.")
def demo(home: str | None, fresh: bool) -> None:
    """Log a demo project: 3 experiments, ~50 runs with forks, 30 metrics x 5,000 steps."""
    console = Console()
    store = Store.open(home)
    exists = DEMO_PROJECT in store.list_projects()
    if exists and fresh:
        delete_project(store, DEMO_PROJECT)
        exists = False
    if exists:
        console.print(
            f"[bold]{DEMO_PROJECT}[/bold] is already in the store; "
            "run [bold]despina demo --fresh[/bold] to log it again."
        )
    else:
        plan = demo_plan()
        total = sum(STEPS - (0 if r.fork_step is None else r.fork_step + 1) for r in plan)
        console.print(
            f"Logging [bold]{DEMO_PROJECT}[/bold]: {counted(len(plan), 'run')} in 3 experiments, "
            f"{counted(len(metric_names()), 'metric')}, {counted(total, 'step')} in all, "
            f"into {store.home}"
        )
        start = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"runs 0/{len(plan)}", total=total)
            seen: set[str] = set()

            def advance(run_id: str, steps: int) -> None:
                seen.add(run_id)
                progress.update(task, advance=steps, description=f"runs {len(seen)}/{len(plan)}")

            points = log_demo(store.home, progress=advance, plan=plan)
            progress.update(task, completed=total)
        extras = log_demo_extras(store.home)
        seconds = time.perf_counter() - start
        console.print(
            f"Logged {points:,} metric points in {seconds:.1f} s "
            f"({points / seconds / 1e6:.2f} M points/s, including generating the data)."
        )
        console.print(
            "Also logged: a failed run (seagull-diverged), a trashed run (kittiwake-typo), "
            f"dataset artifact {extras['artifact'][:12]}…, model {extras['model']} with 3 "
            "versions."
        )
    store.checkpoint()
    print_store_summary(store, console)
    _show_queries(store, console)


def _show_queries(store: Store, console: Console) -> None:
    """Run the seed document's query examples on the demo project and print their frames."""
    import pandas as pd

    import despina.query as nq
    from despina.query.examples import seed_examples

    nq.set_home(store.home)
    console.print("\n[bold]Querying it back with despina.query[/bold] (the neptune_query API)\n")
    with pd.option_context("display.width", 120, "display.max_columns", 8):
        for title, code, frame in seed_examples(DEMO_PROJECT):
            console.rule(title)
            console.print(code, highlight=False, markup=False)
            console.print(frame.to_string(max_rows=12), highlight=False, markup=False)
            console.print()
