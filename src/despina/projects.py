"""``despina.projects``: create and list projects (mirrors ``neptune_scale.projects``).

Without an API token these act on the embedded store (``DESPINA_HOME``); the project key,
when not given, is derived from the name (upper-case letters and digits).
"""

from __future__ import annotations

import re

from despina.errors import ConfigError, StoreError
from despina.store import Store

__all__ = ["create_project", "list_projects"]

_QUALIFIED = re.compile(r"^((?P<workspace>[\w\-.]+)/)?(?P<project>[\w\-.]+)$")
_VISIBILITY = ("priv", "pub", "workspace")
_KEY = re.compile(r"^(?=.*[A-Z])[A-Z0-9]{1,10}$")


def _split(name: str, workspace: str | None) -> tuple[str, str]:
    match = _QUALIFIED.match(name)
    if match is None:
        raise ConfigError(f"invalid project name {name!r}: expected 'workspace/project'")
    found, project = match.group("workspace"), match.group("project")
    if found and workspace and found != workspace:
        raise ConfigError(
            f"the workspace argument {workspace!r} differs from the one in the name {found!r}"
        )
    chosen = found or workspace
    if not chosen:
        raise ConfigError(f"no workspace for project {name!r}: pass 'workspace/project'")
    return chosen, project


def create_project(
    name: str,
    *,
    workspace: str | None = None,
    visibility: str = "priv",
    description: str | None = None,
    key: str | None = None,
    fail_if_exists: bool = False,
    api_token: str | None = None,
) -> str:
    """Create a project and return its ``workspace/project`` name.

    Raises:
        ConfigError: a malformed name, key or visibility, or the project exists and
            ``fail_if_exists`` is set.
    """
    ws, project = _split(name, workspace)
    if visibility not in _VISIBILITY:
        raise ConfigError(f"visibility {visibility!r} must be one of {', '.join(_VISIBILITY)}")
    if key is not None and not _KEY.match(key):
        raise ConfigError(f"project key {key!r} must be 1-10 upper-case letters or digits")
    store = Store.open()
    qualified = f"{ws}/{project}"
    try:
        store.create_project(
            qualified,
            key=key,
            description=description or "",
            visibility=visibility,
            exist_ok=not fail_if_exists,
        )
    except StoreError as exc:
        raise ConfigError(f"project {qualified!r} already exists") from exc
    return qualified


def list_projects(api_token: str | None = None) -> list[str]:
    """Names of every project in the store."""
    return Store.open().list_projects()
