"""Settings from arguments and the environment: where the store lives and which project to use."""

from __future__ import annotations

import os
import re
from pathlib import Path

from despina.errors import ConfigError

__all__ = ["parse_project", "resolve_home", "resolve_project"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The store directory: ``home``, else ``DESPINA_HOME``, else ``~/.despina``."""
    chosen = home if home is not None else os.environ.get("DESPINA_HOME") or "~/.despina"
    return Path(chosen).expanduser()


def resolve_project(project: str | None = None) -> str:
    """The project name: the argument, else ``DESPINA_PROJECT``, else ``NEPTUNE_PROJECT``.

    Raises:
        ConfigError: no project was given anywhere, or the name is not ``workspace/project``.
    """
    name = project or os.environ.get("DESPINA_PROJECT") or os.environ.get("NEPTUNE_PROJECT")
    if not name:
        raise ConfigError(
            "no project given: pass project='workspace/project' or set DESPINA_PROJECT "
            "(NEPTUNE_PROJECT is read too)"
        )
    parse_project(name)
    return name


def parse_project(name: str) -> tuple[str, str]:
    """Split ``workspace/project`` into its two parts.

    Raises:
        ConfigError: the name does not have exactly one ``/`` or a part has characters other
            than letters, digits, ``.``, ``_`` and ``-``.
    """
    parts = name.split("/")
    if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts):
        raise ConfigError(
            f"invalid project name {name!r}: expected 'workspace/project', each part made of "
            "letters, digits, '.', '_' or '-' (at most 100 characters)"
        )
    return parts[0], parts[1]
