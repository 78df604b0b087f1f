"""``despina.init_project``: the project object of the old ``neptune`` client.

``init_project().fetch_runs_table(query=NQL).to_pandas()`` filters runs with NQL and returns one
row per run; ``trash_runs`` / ``restore_runs`` / ``delete_runs`` manage the trash;
``fetch_models_table`` lists the model registry. Tables hold one column per attribute path:
series show their last value, string sets (tags) a comma-separated string of sorted elements,
datetimes UTC ``Timestamp``s, files their storage path, artifacts their hash.

With an API token the project is the one on the server the token names (the rule of
``despina.Run``: an ``api_token=`` argument; else ``home=``/``store=`` name a local store; else
``despina.query.set_api_token`` or ``DESPINA_API_TOKEN`` / ``NEPTUNE_API_TOKEN``): the server
computes each table with the same function over its store (:mod:`despina.project.tables`) and
sends it as Arrow columns (:mod:`despina.project.wire`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from despina.config import resolve_project
from despina.project.backends import Backend, LocalBackend, RemoteBackend
from despina.project.tables import Table
from despina.store import Store

__all__ = ["Project", "Table", "init_project"]


class Project:
    """A project of the embedded store (``workspace/project``), or of the server an API token
    names."""

    def __init__(
        self,
        project: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        store: str | os.PathLike[str] | None = None,
        api_token: str | None = None,
    ):
        from despina.store.http.tokens import remote_token

        self.name = resolve_project(project)
        token = remote_token(api_token, home, store)
        self._backend: Backend = (
            RemoteBackend(token) if token is not None else LocalBackend(home, store)
        )

    @classmethod
    def over(cls, store: Store, project: str) -> Project:
        """Project ``project`` read and written through ``store``, already open (a server's),
        which the object uses and never closes."""
        registry = cls.__new__(cls)
        registry.name = resolve_project(project)
        registry._backend = LocalBackend.over(store)
        return registry

    @property
    def server(self) -> str | None:
        """The server this project is read from (None: the local store)."""
        return self._backend.server

    # -- tables ------------------------------------------------------------------------------

    def fetch_runs_table(
        self,
        query: str | None = None,
        columns: Sequence[str] | None = None,
        trashed: bool | None = False,
        limit: int | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
        progress_bar: Any = None,
    ) -> Table:
        """Runs matching the NQL ``query``.

        ``trashed=False`` leaves trashed runs out, ``True`` returns only them, ``None`` both.
        ``columns`` lists attribute paths (default: every attribute of the matched runs).

        Raises:
            NqlError: the query is malformed (the message shows where).
            InvalidQuery: a bad ``limit`` or ``sort_by``.
        """
        return self._backend.table(
            self.name, "run", query, columns, trashed, limit, sort_by, ascending, None
        )

    def fetch_models_table(
        self,
        query: str | None = None,
        columns: Sequence[str] | None = None,
        trashed: bool | None = False,
        limit: int | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
        progress_bar: Any = None,
    ) -> Table:
        """Models of the registry matching the NQL ``query`` (same arguments as runs)."""
        return self._backend.table(
            self.name, "model", query, columns, trashed, limit, sort_by, ascending, None
        )

    def fetch_model_versions_table(
        self,
        model_id: str,
        query: str | None = None,
        columns: Sequence[str] | None = None,
        trashed: bool | None = False,
        limit: int | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
    ) -> Table:
        """Versions of model ``model_id`` (its ``sys/id``) matching the NQL ``query``."""
        return self._backend.table(
            self.name, "model_version", query, columns, trashed, limit, sort_by, ascending, model_id
        )

    # -- trash -------------------------------------------------------------------------------

    def trash_runs(self, ids: str | Iterable[str]) -> int:
        """Move runs (by ``sys/id`` or run ID) to the trash; returns how many."""
        return self._backend.trash(self.name, "trash", _names(ids))

    def restore_runs(self, ids: str | Iterable[str]) -> int:
        """Take runs out of the trash; returns how many."""
        return self._backend.trash(self.name, "restore", _names(ids))

    def delete_runs(self, ids: str | Iterable[str]) -> int:
        """Delete trashed runs for good, freeing their space; returns how many.

        Raises:
            InvalidQuery: a run is not in the trash (trash it first).
        """
        return self._backend.trash(self.name, "delete", _names(ids))

    def set_description(self, run: str, description: str) -> None:
        """Set ``sys/description`` of a run."""
        self._backend.set_description(self.name, run, description)

    def __repr__(self) -> str:
        where = f", server={self._backend.server!r}" if self._backend.server else ""
        return f"Project({self.name!r}{where})"


def init_project(
    project: str | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    api_token: str | None = None,
) -> Project:
    """The project ``project`` (default ``DESPINA_PROJECT``, then ``NEPTUNE_PROJECT``).

    With ``api_token`` (or, when neither ``home`` nor ``store`` is given, a token from
    ``despina.query.set_api_token`` / ``DESPINA_API_TOKEN`` / ``NEPTUNE_API_TOKEN``) the project
    is read and changed on the server the token names; otherwise in the store at ``store`` (a
    store URL; default ``DESPINA_STORE``, then ``home``).
    """
    return Project(project, home=home, store=store, api_token=api_token)


def _names(ids: str | Iterable[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else list(ids)
