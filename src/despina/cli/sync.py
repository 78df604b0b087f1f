"""``despina sync``: load local operation queues into the store, or send them to the server an
API token names; send despina log queues to their server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console

from despina.cli.locations import store_options
from despina.errors import DespinaError
from despina.store import Store
from despina.store.http.queue import find_log_queues
from despina.store.http.tokens import token_from_environment
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
    help="API token (default: DESPINA_API_TOKEN, NEPTUNE_API_TOKEN): despina log queues go to "
    "their server with it, and neptune-scale queues to the server it names unless --home or "
    "--store is given.",
)
@click.pass_context
def sync(
    ctx: click.Context,
    path: Path,
    home: str | None,
    files_from: tuple[Path, ...],
    api_token: str | None,
) -> None:
    """Load run_operations.sqlite3 queues (a file, or every one under a directory), and send
    despina log queues (queue.sqlite3, from runs logging to a server) to their server.

    neptune-scale's offline mode and interrupted runs leave such queues behind. With an API
    token (--api-token, DESPINA_API_TOKEN or NEPTUNE_API_TOKEN) and neither --home nor --store,
    each goes to the server the token names; otherwise it is applied to the local store. A
    queue is deleted once nothing is left in it; what the server did not take stays queued for
    the next sync, and nothing is applied twice. Files are read only from the queue's own
    directory and from --files-from directories; other paths a queue names are refused.
    A despina log queue (offline mode with a token, a killed process, a server that was down)
    goes to the server its run logged to, with an API token for that server.
    """
    console = Console()
    token = api_token or token_from_environment()
    local = home is not None or ctx.get_parameter_source("store") is ParameterSource.COMMANDLINE
    try:
        log_queues = find_log_queues(path)
        queues = find_queues(path, despina_queues=bool(log_queues))
        failed = 0
        if log_queues:
            if token is None:
                raise DespinaError(
                    f"{len(log_queues)} despina log queue(s) at {str(path)!r} go to the server "
                    "their runs logged to: set DESPINA_API_TOKEN (or pass --api-token) to a "
                    "token of that server"
                )
            for directory in log_queues:
                failed += _report(console, send_log_queue(directory, token), directory)
        if queues and token is not None and not local:
            failed += _send_queues(console, queues, token, files_from)
        elif queues:
            failed += _load_queues(console, Store.open(home), queues, files_from)
    except (DespinaError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if failed:
        raise SystemExit(1)


def _load_queues(
    console: Console, store: Store, queues: Sequence[Path], files_from: Sequence[Path]
) -> int:
    """Apply neptune-scale queues to the local store; how many failed."""
    failed = 0
    for queue in queues:
        result = sync_queue(store, queue, files_from=files_from)
        _headline(console, result, "", "queue kept")
        failed += _details(console, result)
    return failed


def _send_queues(
    console: Console, queues: Sequence[Path], token: str, files_from: Sequence[Path]
) -> int:
    """Send neptune-scale queues to the token's server; how many failed."""
    from despina.store.http.connection import connection_for
    from despina.sync_server import send_neptune_queue, stops_every_queue

    connection = connection_for(token)  # a malformed token is refused before any queue
    failed = 0
    for n, queue in enumerate(queues):
        result = send_neptune_queue(queue, connection, files_from=files_from)
        _headline(console, result, f" sent to {connection.server}", f"queue kept in {queue}")
        if result.error is None:
            failed += _details(console, result)
            continue
        _details(console, result)
        failed += 1
        console.print(f"  error: {result.error}", markup=False, soft_wrap=True)
        console.print(
            f"  what the server did not take stays queued: run 'despina sync {queue}' again "
            "once the server takes it (nothing is applied twice), or add --home DIR / --store "
            "URL to load it into a local store instead",
            markup=False,
            soft_wrap=True,  # paths are not split across lines
        )
        if stops_every_queue(result.error) and n + 1 < len(queues):
            rest = queues[n + 1 :]
            console.print(
                f"{counted(len(rest), 'more queue')} not sent (the same server): "
                + ", ".join(str(q) for q in rest),
                markup=False,
                soft_wrap=True,
            )
            return failed + len(rest)
    return failed


def _headline(console: Console, result: SyncResult, sent: str, kept: str) -> None:
    """A queue's line: its run, what it held, where that went (``sent``) and whether the
    queue is gone (else ``kept``)."""
    state = "queue removed" if result.deleted else kept
    console.print(
        f"{result.project} / {result.run_id}: {counted(result.operations, 'operation')}, "
        f"{counted(result.files, 'file')}{sent}; {state}",
        markup=False,
        soft_wrap=True,  # paths are not split across lines
    )


def _details(console: Console, result: SyncResult) -> int:
    """Print a neptune-scale queue's issues and skipped files; 1 if something failed."""
    for issue in result.issues:
        console.print(f"  {issue.severity}: {issue.code}: {issue.message}", markup=False)
    for missing in result.missing_files:
        console.print(f"  file {missing!r} is gone; it was not stored", markup=False)
    for refused in result.refused_files:
        console.print(
            f"  warning: file {refused!r} is outside the queue's directory "
            f"{str(result.queue.parent)!r}; it was not read and stays queued (pass "
            "--files-from DIR to copy files from DIR)",
            markup=False,
            soft_wrap=True,  # paths are not split across lines
        )
    errors = [i for i in result.issues if i.severity == "error"]
    return int(bool(errors or result.missing_files or result.refused_files))


def _report(console: Console, result: SyncResult, directory: Path) -> int:
    """Print what a log queue brought; 1 if something failed."""
    errors = [i for i in result.issues if i.severity == "error"]
    _headline(console, result, " sent", f"queue kept in {directory}")
    for issue in result.issues:
        console.print(f"  {issue.severity}: {issue.code}: {issue.message}", markup=False)
    return int(bool(errors) or not result.deleted)
