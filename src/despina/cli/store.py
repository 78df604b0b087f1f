"""``despina store copy SRC DEST``: copy a whole store into another."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from despina.errors import DespinaError

__all__ = ["store"]


@click.group()
def store() -> None:
    """Work on whole stores (copy one into another)."""


class _Bar:
    """The copy's progress as a rich bar: runs done of all, and points."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.points = 0
        self.total_points = 0

    def begin(self, runs: int, points: int) -> None:
        self.total_points = points
        self.task = self.progress.add_task("runs", total=max(runs, 1), points="")
        if runs == 0:
            self.progress.update(self.task, completed=1)

    def advance(self, runs: int, points: int) -> None:
        assert self.task is not None
        self.points += points
        self.progress.update(
            self.task, advance=runs, points=f"{self.points:,} of {self.total_points:,} points"
        )


@store.command("copy")
@click.argument("source", metavar="SRC_URL")
@click.argument("destination", metavar="DEST_URL")
@click.option(
    "--blobs",
    metavar="URL",
    default=None,
    help="Where the destination keeps file contents: a directory or s3://bucket/prefix "
    "(default: DESPINA_BLOBS, else the destination's own directory).",
)
@click.option(
    "--source-blobs",
    metavar="URL",
    default=None,
    help="Where the source's file contents are: a directory or s3://bucket/prefix "
    "(default: the source's own directory; DESPINA_BLOBS is not used for it).",
)
@click.option("--quiet", is_flag=True, help="No progress bar; print the report only.")
def copy(
    source: str, destination: str, blobs: str | None, source_blobs: str | None, quiet: bool
) -> None:
    """Copy every project, run, file and API key of SRC_URL into DEST_URL.

    Each URL is a store directory, sqlite:///path/to/dir or postgresql://user@host:port/db;
    the destination is created when needed and may already hold runs (runs are matched by
    project and custom run id; one there with another uuid is a conflict, reported and left
    as it is). An interrupted copy leaves whole runs only: the same command finishes it, and
    a second run copies nothing.
    """
    from despina.store.copy import copy_store

    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]copying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TextColumn("{task.fields[points]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
            report = copy_store(
                source, destination, blobs=blobs, source_blobs=source_blobs, progress=_Bar(progress)
            )
    except DespinaError as exc:
        raise click.ClickException(str(exc)) from None
    for line in report.lines():
        click.echo(line)
