"""The ``despina`` command line: one module per command group, registered here."""

from __future__ import annotations

import importlib
import logging

import click

from despina._version import __version__

__all__ = ["cli", "main"]

# (module, attribute) of every command; imported lazily so `despina --help` stays fast and a
# broken optional part cannot take the whole CLI down.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("despina.cli.demo", "demo"),
    "import": ("despina.cli.importer", "import_"),
    "info": ("despina.cli.info", "info"),
    "project": ("despina.cli.project", "project"),
    "runs": ("despina.cli.runs", "runs"),
    "serve": ("despina.cli.serve", "serve"),
    "store": ("despina.cli.store", "store"),
    "sync": ("despina.cli.sync", "sync"),
    "token": ("despina.cli.token", "token"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        command: click.Command = getattr(module, target[1])
        return command


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="despina")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def cli(verbose: bool) -> None:
    """despina: a self-hosted experiment tracker for Neptune users."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


def main() -> None:
    """Entry point of the ``despina`` console script.

    A store or blob store that cannot be opened (a wrong URL, a missing bucket, an unreachable
    database) ends the command with its message, which names the URL and the fix, and status 1
    rather than a traceback.
    """
    from despina.errors import ConfigError, StoreError

    try:
        cli()
    except (ConfigError, StoreError) as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
