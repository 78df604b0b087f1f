"""``despina info``: where the store is and what it holds."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from despina.cli.locations import store_options
from despina.store import Store
from despina.store.stats import disk_bytes, project_stats

__all__ = ["info", "print_store_summary"]


def print_store_summary(store: Store, console: Console) -> None:
    """A table of projects (runs, experiments, attributes, points) and the bytes on disk."""
    where = "PostgreSQL store" if store.dialect == "postgresql" else "store"
    table = Table(title=f"{where} at {store.display}")
    rows = project_stats(store)
    # Names are never cut (my-team/bird and my-team/birds must stay apart): a name too long
    # for the terminal folds onto more lines, and so do numbers rather than losing digits.
    table.add_column("project", overflow="fold", ratio=1)
    for column in ("runs", "experiments", "models", "attributes", "series", "points"):
        table.add_column(column, justify="right", overflow="fold")
    total_points = 0
    for row in rows:
        total_points += row.points
        table.add_row(
            row.project,
            f"{row.runs:,}",
            f"{row.experiments:,}",
            f"{row.models:,}",
            f"{row.attributes:,}",
            f"{row.series:,}",
            f"{row.points:,}",
        )
    console.print(table)
    sizes = disk_bytes(store)
    total = sum(sizes.values())
    stored = sizes["database"] + sizes["wal"]
    per_point = f", {stored / total_points:.1f} bytes per point" if total_points else ""
    console.print(
        f"on disk: {total / 1e6:,.1f} MB (database {sizes['database'] / 1e6:,.1f} MB, "
        f"write-ahead log {sizes['wal'] / 1e6:,.1f} MB, files {sizes['files'] / 1e6:,.1f} MB)"
        f"{per_point}"
    )


@click.command()
@store_options
@click.option("--home", type=click.Path(file_okay=False), help="Store directory (DESPINA_HOME).")
def info(home: str | None) -> None:
    """Show the store's location, its projects and their size."""
    print_store_summary(Store.open(home), Console())
