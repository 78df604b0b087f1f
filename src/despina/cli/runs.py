"""``despina runs``: list runs filtered with NQL, and manage the trash and descriptions."""

from __future__ import annotations

import math
import os
from typing import Any

import click
from rich.console import Console
from rich.table import Table as RichTable

from despina.cli.locations import store_options
from despina.errors import DespinaError
from despina.project import Project
from despina.wording import counted

__all__ = ["runs"]

_HOME = click.option("--home", type=click.Path(file_okay=False), help="Store directory.")
_PROJECT = click.option(
    "--project", "-p", help="workspace/project (default DESPINA_PROJECT or NEPTUNE_PROJECT)."
)
DEFAULT_COLUMNS = ["sys/id", "sys/custom_run_id", "sys/name", "sys/creation_time", "sys/tags"]


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@click.group(invoke_without_command=True)
@store_options
@_PROJECT
@click.option("--query", "-q", default=None, help="NQL filter, e.g. '`sys/failed`:bool = True'.")
@click.option(
    "--columns",
    "-c",
    default=None,
    help="Comma-separated attribute paths (default: id, run ID, name, creation time, tags).",
)
@click.option(
    "--trashed",
    type=click.Choice(["no", "only", "both"]),
    default="no",
    show_default=True,
    help="Whether trashed runs are listed.",
)
@click.option("--limit", type=int, default=None, help="At most this many runs.")
@click.option("--sort-by", default="sys/creation_time", show_default=True)
@click.option("--ascending", is_flag=True, help="Sort ascending (default: descending).")
@_HOME
@click.option(
    "--api-token",
    default=None,
    help="List and change the runs of the server this token names (default: "
    "DESPINA_API_TOKEN, then NEPTUNE_API_TOKEN, unless --home or --store is given).",
)
@click.pass_context
def runs(
    ctx: click.Context,
    project: str | None,
    query: str | None,
    columns: str | None,
    trashed: str,
    limit: int | None,
    sort_by: str,
    ascending: bool,
    home: str | None,
    api_token: str | None,
) -> None:
    """List the runs of a project that match an NQL query.

    With an API token (--api-token, or DESPINA_API_TOKEN / NEPTUNE_API_TOKEN when neither
    --home nor --store is given) the runs are those of the server the token names.
    """
    # --store only sets DESPINA_STORE: pass it on so that it wins over a token's server
    named = ctx.get_parameter_source("store") is click.core.ParameterSource.COMMANDLINE
    store = os.environ.get("DESPINA_STORE") or None if named else None
    ctx.obj = {"project": project, "home": home, "store": store, "api_token": api_token}
    if ctx.invoked_subcommand is not None:
        return
    names = [c.strip() for c in columns.split(",")] if columns else DEFAULT_COLUMNS
    flag = {"no": False, "only": True, "both": None}[trashed]
    try:
        table = _project(ctx).fetch_runs_table(
            query=query,
            columns=names,
            trashed=flag,
            limit=limit,
            sort_by=sort_by,
            ascending=ascending,
        )
    except (DespinaError, ValueError) as exc:
        _fail(exc)
    out = RichTable(title=counted(len(table), "run"))
    for name in names:
        out.add_column(name)
    for row in table.to_rows():
        out.add_row(*(_format(row.get(name)) for name in names))
    Console().print(out)


def _project(ctx: click.Context) -> Project:
    """The project the command reads: local or on a server (see ``runs``)."""
    found = ctx.obj
    return Project(
        found["project"], home=found["home"], store=found["store"], api_token=found["api_token"]
    )


@runs.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def trash(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Move runs (by sys/id or run ID) to the trash."""
    try:
        click.echo(f"trashed {counted(_project(ctx).trash_runs(ids), 'run')}")
    except (DespinaError, ValueError) as exc:
        _fail(exc)


@runs.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def restore(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Take runs out of the trash."""
    try:
        click.echo(f"restored {counted(_project(ctx).restore_runs(ids), 'run')}")
    except (DespinaError, ValueError) as exc:
        _fail(exc)


@runs.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def delete(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Delete trashed runs for good and free their space."""
    try:
        click.echo(f"deleted {counted(_project(ctx).delete_runs(ids), 'run')}")
    except (DespinaError, ValueError) as exc:
        _fail(exc)


@runs.command("set-description")
@click.argument("run")
@click.argument("description")
@click.pass_context
def set_description(ctx: click.Context, run: str, description: str) -> None:
    """Set sys/description of a run."""
    try:
        _project(ctx).set_description(run, description)
    except (DespinaError, ValueError) as exc:
        _fail(exc)
    click.echo(f"description of {run} set")
