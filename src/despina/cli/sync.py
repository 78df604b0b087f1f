"""``despina sync``: load local operation queues into the store."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from despina.cli.locations import store_options
from despina.errors import DespinaError
from despina.store import Store
from despina.sync import find_queues, sync_queue
from despina.wording import counted

__all__ = ["sync"]


@click.command()
@store_options
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--home", type=click.Path(file_okay=False), help="Store directory (DESPINA_HOME).")
@click.option(
    "--files-from",
    "files_from",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also copy files a queue names under this directory (repeatable); by default only "
    "files inside the queue's own directory are read.",
)
def sync(path: Path, home: str | None, files_from: tuple[Path, ...]) -> None:
    """Load run_operations.sqlite3 queues (a file, or every one under a directory).

    neptune-scale's offline mode and interrupted runs leave such queues behind; each is applied
    to the store and deleted once nothing is left in it. Files are read only from the queue's
    own directory and from --files-from directories; other paths a queue names are refused.
    """
    console = Console()
    try:
        queues = find_queues(path)
        store = Store.open(home)
        failed = 0
        for queue in queues:
            result = sync_queue(store, queue, files_from=files_from)
            errors = [i for i in result.issues if i.severity == "error"]
            failed += bool(errors or result.missing_files or result.refused_files)
            state = "queue removed" if result.deleted else "queue kept"
            console.print(
                f"{result.project} / {result.run_id}: {counted(result.operations, 'operation')}, "
                f"{counted(result.files, 'file')}; {state}"
            )
            for issue in result.issues:
                console.print(f"  {issue.severity}: {issue.code}: {issue.message}", markup=False)
            for missing in result.missing_files:
                console.print(f"  file {missing!r} is gone; it was not stored", markup=False)
            for refused in result.refused_files:
                console.print(
                    f"  warning: file {refused!r} is outside the queue's directory "
                    f"{str(queue.parent)!r}; it was not read and stays queued (pass "
                    "--files-from DIR to copy files from DIR)",
                    markup=False,
                    soft_wrap=True,  # paths are not split across lines
                )
    except (DespinaError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if failed:
        raise SystemExit(1)
