"""``despina token create | list | revoke``: API tokens for the official Neptune clients."""

from __future__ import annotations

import getpass
import os
import time

import click

from despina.cli.locations import store_options
from despina.config import parse_project, resolve_home
from despina.errors import ConfigError

__all__ = ["token"]

DEFAULT_URL = "http://127.0.0.1:8080"


def _home_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Store directory (default: DESPINA_HOME or ~/.despina).",
    )(function)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (NEPTUNE_API_TOKEN values)."""


@token.command("create")
@store_options
@click.option("--project", default=None, help="The one project the token reaches (ws/proj).")
@click.option(
    "--workspace",
    default=None,
    help="A workspace: the token reaches all its projects and may create projects.",
)
@click.option("--name", default="", help="A label shown by 'despina token list'.")
@click.option(
    "--url",
    default=None,
    help=f"Server URL put in the token (default: DESPINA_PUBLIC_URL or {DEFAULT_URL}).",
)
@click.option("--user", default=None, help="Username recorded as sys/owner (default: you).")
@click.option("--expires-days", type=click.IntRange(1), default=None, help="Expire after N days.")
@_home_option
def create(
    project: str | None,
    workspace: str | None,
    name: str,
    url: str | None,
    user: str | None,
    expires_days: int | None,
    home: str | None,
) -> None:
    """Mint an API token; it is printed once, as the last line."""
    from despina.server.auth import mint_api_token
    from despina.store import Store

    if (project is None) == (workspace is None):
        raise click.UsageError("give exactly one of --project ws/proj and --workspace ws")
    try:
        if project is not None:
            workspace, project_name = parse_project(project)
        else:
            assert workspace is not None
            parse_project(f"{workspace}/x")
            project_name = None
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    url = url or os.environ.get("DESPINA_PUBLIC_URL") or DEFAULT_URL
    username = user or _os_user()
    expires_ms = (
        int((time.time() + expires_days * 86400) * 1000) if expires_days is not None else None
    )
    store = Store.open(resolve_home(home))
    try:
        if project is not None and project not in store.list_projects():
            # a project token is for logging into that project: make sure it is there
            store.create_project(project, exist_ok=True)
            click.echo(f"created project {project}", err=True)
        api_token, key = mint_api_token(
            store,
            url=url,
            workspace=workspace,
            project=project_name,
            username=username,
            name=name,
            expires_ms=expires_ms,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"key id: {key.key_id}  scope: {key.scope}  user: {username}  server: {url}", err=True
    )
    click.echo("export NEPTUNE_API_TOKEN=<the line below>; it is shown only once", err=True)
    click.echo(api_token)


@token.command("list")
@store_options
@_home_option
def list_tokens(home: str | None) -> None:
    """List API keys (never their secrets)."""
    from despina.store import Store
    from despina.store.access import list_api_keys

    store = Store.open(resolve_home(home))
    try:
        keys = list_api_keys(store)
    finally:
        store.close()
    if not keys:
        click.echo("no tokens; create one with 'despina token create --project ws/proj'")
        return
    header = ("KEY ID", "NAME", "USER", "SCOPE", "CREATED", "EXPIRES", "STATUS")
    rows = [
        (
            k.key_id,
            k.name or "-",
            k.username,
            k.scope,
            _when(k.created_ms),
            _when(k.expires_ms),
            "revoked" if k.revoked_ms is not None else ("valid" if k.is_valid() else "expired"),
        )
        for k in keys
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


@token.command("revoke")
@store_options
@click.argument("key_id")
@_home_option
def revoke(key_id: str, home: str | None) -> None:
    """Revoke the key KEY_ID (see 'despina token list'); it stops working at once."""
    from despina.store import Store
    from despina.store.access import revoke_api_key

    store = Store.open(resolve_home(home))
    try:
        found = revoke_api_key(store, key_id)
    finally:
        store.close()
    if not found:
        raise click.ClickException(f"no token with key id {key_id!r}; see 'despina token list'")
    click.echo(f"revoked {key_id}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "despina"
