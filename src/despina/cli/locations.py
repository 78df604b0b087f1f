"""``--store`` and ``--blobs``: where a command's store and file contents are.

Both options set the environment variable they stand for (``DESPINA_STORE``,
``DESPINA_BLOBS``) for the command's process, so that every part of the command, and the
processes it starts (a server's workers), open the same store. A value given on the command line
wins over the variable; a store URL wins over ``--home`` / ``DESPINA_HOME``, which still name the
process's local directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from despina.errors import ConfigError
from despina.store.urls import ACCEPTED_FORMS, parse_store_url

__all__ = ["store_options"]

F = TypeVar("F", bound=Callable[..., Any])


def _set_store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        parse_store_url(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    os.environ["DESPINA_STORE"] = value


def _set_blobs(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    from despina.store.blobs.opening import parse_blobs_url

    try:
        parse_blobs_url(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    os.environ["DESPINA_BLOBS"] = value


def store_options(function: F) -> F:
    """Add ``--store URL`` and ``--blobs URL`` to a command."""
    function = click.option(
        "--blobs",
        metavar="URL",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_blobs,
        help="Where file contents go: a directory or s3://bucket/prefix (DESPINA_BLOBS).",
    )(function)
    return click.option(
        "--store",
        metavar="URL",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_store,
        help=f"The store: {ACCEPTED_FORMS} (DESPINA_STORE; wins over --home).",
    )(function)
