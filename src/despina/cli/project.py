"""``despina project create | list``: projects in a store directory."""

from __future__ import annotations

import click

from despina.cli.locations import store_options
from despina.config import resolve_home
from despina.errors import ConfigError, StoreError

__all__ = ["project"]


@click.group()
def project() -> None:
    """Create and list projects (workspace/project)."""


@project.command("create")
@store_options
@click.argument("name")
@click.option("--key", default=None, help="Project key, the prefix of sys/id (e.g. CV).")
@click.option("--description", default="", help="Free text.")
@click.option(
    "--visibility",
    type=click.Choice(["priv", "pub", "workspace"]),
    default="priv",
    show_default=True,
)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Store directory (default: DESPINA_HOME or ~/.despina).",
)
def create(name: str, key: str | None, description: str, visibility: str, home: str | None) -> None:
    """Create project NAME (workspace/project)."""
    from despina.store import Store
    from despina.store.access import find_project

    store = Store.open(resolve_home(home))
    try:
        store.create_project(name, key=key, description=description, visibility=visibility)
        info = find_project(store, name)
    except (ConfigError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    assert info is not None
    click.echo(f"created project {info.full_name} (key {info.project_key})")


@project.command("list")
@store_options
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Store directory (default: DESPINA_HOME or ~/.despina).",
)
def list_projects(home: str | None) -> None:
    """List the projects of the store."""
    from despina.store import Store
    from despina.store.access import list_project_infos

    store = Store.open(resolve_home(home))
    try:
        infos = list_project_infos(store)
    finally:
        store.close()
    for info in infos:
        click.echo(f"{info.full_name}\t{info.project_key}\t{info.visibility}")
