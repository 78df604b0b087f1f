"""``despina import neptune-export DIR``: bring a ``neptune-exporter`` export into the store."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import click

from despina.cli.locations import store_options
from despina.config import resolve_home
from despina.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from despina.importer.report import ImportReport

__all__ = ["import_"]

MAX_LINES = 40
"""Issues printed per section; the JSON report (--report) has all of them."""


@click.group("import")
def import_() -> None:
    """Import runs from other trackers."""


class _RichProgress:
    """Two bars: runs and exported rows (points), each phase from zero."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not enabled,
        )
        self.runs: TaskID | None = None
        self.rows: TaskID | None = None

    def __enter__(self) -> _RichProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def phase(self, name: str, runs: int, rows: int) -> None:
        for task in (self.runs, self.rows):
            if task is not None:
                self.progress.update(task, visible=False)
        self.runs = self.progress.add_task(f"{name}: runs", total=runs)
        self.rows = self.progress.add_task("  points", total=rows) if rows else None

    def advance(self, runs: int, rows: int) -> None:
        if self.runs is not None and runs:
            self.progress.advance(self.runs, runs)
        if self.rows is not None and rows:
            self.progress.advance(self.rows, rows)


def _print_report(console: Console, report: ImportReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="import summary", show_header=False)
    for status in ("imported", "exists", "would import", "failed"):
        count = report.count(status)
        if count or status == "imported":
            table.add_row(f"runs {status}", f"{count:,}")
    points = sum(run.points for run in report.runs)
    table.add_row("points loaded", f"{points:,}")
    table.add_row("files copied", f"{sum(run.files for run in report.runs):,}")
    table.add_row("seconds", f"{report.seconds:,.1f}")
    if report.seconds > 0 and points:
        table.add_row("points/s", f"{points / report.seconds:,.0f}")
    console.print(table)
    if report.skipped:
        console.print(f"[yellow]skipped ({len(report.skipped)}):[/yellow]")
        for skipped in report.skipped[:MAX_LINES]:
            console.print(f"  {escape(skipped.name)}: {escape(skipped.reason)}")
        if len(report.skipped) > MAX_LINES:
            console.print(f"  … and {len(report.skipped) - MAX_LINES} more (see --report)")
    lines = [
        f"  {escape(run.run_id or run.name)}: {issue.code}"
        + (f" {escape(issue.path)}" if issue.path else "")
        + (f" ×{issue.count}" if issue.count > 1 else "")
        + f" — {escape(issue.message)}"
        for run in report.runs
        for issue in run.issues
    ]
    if lines:
        console.print(f"[yellow]adjusted or skipped items ({len(lines)}):[/yellow]")
        for line in lines[:MAX_LINES]:
            console.print(line)
        if len(lines) > MAX_LINES:
            console.print(f"  … and {len(lines) - MAX_LINES} more (see --report)")
    if report.exporter_errors:
        console.print(
            f"[yellow]the exporter failed to export {len(report.exporter_errors)} item(s)"
            " (listed in the report)[/yellow]"
        )


@import_.command("neptune-export")
@store_options
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data-path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The exporter's --data-path (same as DIRECTORY).",
)
@click.option(
    "--files",
    "--files-path",
    "files",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The exporter's --files-path [default: 'files' beside DIRECTORY].",
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    help="Target project: workspace/project for a one-project export, or SOURCE=TARGET "
    "(repeatable). Default: the exported project ids.",
)
@click.option("--dry-run", is_flag=True, help="Read and check everything, write nothing.")
@click.option("--overwrite", is_flag=True, help="Re-import runs that are already in the store.")
@click.option(
    "--no-name-experiments",
    is_flag=True,
    help="Do not group 2.x runs that share a display name (sys/name) into an experiment.",
)
@click.option(
    "--exporter-errors",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The exporter's neptune_exporter_errors.jsonl, to list in the report.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full report (every run, every skipped item) as JSON to this file.",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Store directory (default: DESPINA_HOME or ~/.despina).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def neptune_export(
    directory: Path | None,
    data_path: Path | None,
    files: Path | None,
    projects: tuple[str, ...],
    dry_run: bool,
    overwrite: bool,
    no_name_experiments: bool,
    exporter_errors: Path | None,
    report_path: Path | None,
    home: str | None,
    quiet: bool,
) -> None:
    """Import a neptune-exporter export (Parquet files) from DIRECTORY.

    DIRECTORY is the exporter's --data-path (one sub-directory per project) or one project
    directory in it. Runs already in the store are left alone, so the command can be repeated
    after an interruption; incomplete runs (no _part_0) and unreadable files are reported and
    skipped.
    """
    from rich.console import Console

    from despina.importer import ExportFormatError, import_neptune_export

    source = directory or data_path
    if source is None:
        raise click.UsageError("give the export directory: despina import neptune-export DIR")
    if directory is not None and data_path is not None and directory != data_path:
        raise click.UsageError("give the export directory once (DIRECTORY or --data-path)")
    mapping: dict[str, str] = {}
    target: str | None = None
    for item in projects:
        if "=" in item:
            src, dst = item.split("=", 1)
            mapping[src] = dst
        elif target is None:
            target = item
        else:
            raise click.UsageError("only one --project without '=' may be given")
    if target is not None and mapping:
        raise click.UsageError("use either --project TARGET or --project SOURCE=TARGET")
    console = Console(stderr=True)
    try:
        with _RichProgress(console, enabled=not quiet) as progress:
            report = import_neptune_export(
                source,
                files,
                home=resolve_home(home),
                project=target if target is not None else (mapping or None),
                dry_run=dry_run,
                overwrite=overwrite,
                name_experiments=not no_name_experiments,
                exporter_errors=exporter_errors,
                progress=progress,
            )
    except (FileNotFoundError, ConfigError, StoreError, ExportFormatError) as exc:
        raise click.ClickException(str(exc)) from None
    _print_report(console, report)
    if report_path is not None:
        report.write(report_path)
        console.print(f"report written to {report_path}")
    if dry_run:
        console.print("dry run: nothing was written to the store")
    if not report.ok:
        raise SystemExit(1)


import_.add_command(neptune_export, "neptune-exporter")
