"""``despina sync``: load local operation queues into the store, send despina log queues to
their server."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from despina.cli.locations import store_options
from despina.errors import DespinaError
from despina.store import Store
from despina.store.http.connection import token_from_environment
from despina.store.http.queue import find_log_queues
from despina.sync import SyncResult, find_queues, send_log_queue, sync_queue
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
@click.option(
    "--api-token",
    "api_token",
    default=None,
    help="Token for despina log queues' server (default: DESPINA_API_TOKEN, NEPTUNE_API_TOKEN).",
)
def sync(path: Path, home: str | None, files_from: tuple[Path, ...], api_token: str | None) -> None:
    """Load run_operations.sqlite3 queues (a file, or every one under a directory), and send
    despina log queues (queue.sqlite3, from runs logging to a server) to their server.

    neptune-scale's offline mode and interrupted runs leave such queues behind; each is applied
    to the store and deleted once nothing is left in it. Files are read only from the queue's
    own directory and from --files-from directories; other paths a queue names are refused.
    A despina log queue (offline mode with a token, a killed process, a server that was down)
    goes to the server its run logged to, with an API token for that server.
    """
    console = Console()
    try:
        log_queues = find_log_queues(path)
        queues = find_queues(path, despina_queues=bool(log_queues))
        failed = 0
        if log_queues:
            token = api_token or token_from_environment()
            if token is None:
                raise DespinaError(
                    f"{len(log_queues)} despina log queue(s) at {str(path)!r} go to the server "
                    "their runs logged to: set DESPINA_API_TOKEN (or pass --api-token) to a "
                    "token of that server"
                )
            for directory in log_queues:
                failed += _report(console, send_log_queue(directory, token), directory)
        store = Store.open(home) if queues else None
        for queue in queues:
            assert store is not None
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


def _report(console: Console, result: SyncResult, directory: Path) -> int:
    """Print what a log queue brought; 1 if something failed."""
    errors = [i for i in result.issues if i.severity == "error"]
    state = "queue removed" if result.deleted else f"queue kept in {directory}"
    console.print(
        f"{result.project} / {result.run_id}: {counted(result.operations, 'operation')}, "
        f"{counted(result.files, 'file')} sent; {state}",
        markup=False,
        soft_wrap=True,
    )
    for issue in result.issues:
        console.print(f"  {issue.severity}: {issue.code}: {issue.message}", markup=False)
    return int(bool(errors) or not result.deleted)
