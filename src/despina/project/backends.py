"""Where a :class:`~despina.project.Project` reads and changes its runs: the local store
(:class:`LocalBackend`) or the server an API token names (:class:`RemoteBackend`, through the
endpoints of ``despina.server.native.projects``). Both give the same tables and raise the same
exceptions: the server runs the local backend's functions on its own store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from despina.project.tables import Table, check_arguments, fetch_table
from despina.store import Store, lifecycle

__all__ = ["TRASH_ACTIONS", "Backend", "LocalBackend", "RemoteBackend", "change_trash"]

TRASH_ACTIONS = ("trash", "restore", "delete")


class Backend(Protocol):
    server: str | None

    def table(
        self,
        project: str,
        kind: str,
        query: str | None,
        columns: Sequence[str] | str | None,
        trashed: bool | None,
        limit: int | None,
        sort_by: str,
        ascending: bool,
        model_id: str | None,
    ) -> Table: ...

    def trash(self, project: str, action: str, ids: list[str]) -> int: ...

    def set_description(self, project: str, run: str, description: str) -> None: ...


def change_trash(store: Store, project: str, action: str, ids: list[str]) -> int:
    """Trash, restore or delete (``action``) the runs ``ids``; returns how many."""
    if action == "trash":
        return lifecycle.trash_runs(store, project, ids)
    if action == "restore":
        return lifecycle.restore_runs(store, project, ids)
    if action == "delete":
        return lifecycle.delete_trashed_runs(store, project, ids)
    raise ValueError(f"unknown trash action {action!r}: expected one of {TRASH_ACTIONS}")


class LocalBackend:
    """A store opened on first use and kept for the life of the project object."""

    server: str | None = None

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        url: str | os.PathLike[str] | None = None,
    ) -> None:
        self._home = home
        self._url = url
        self._opened: Store | None = None

    @classmethod
    def over(cls, store: Store) -> LocalBackend:
        """A backend over ``store``, already open, which it never closes."""
        backend = cls()
        backend._opened = store
        return backend

    def store(self) -> Store:
        if self._opened is None:
            self._opened = Store.open(self._home, url=self._url)
        return self._opened

    def table(
        self,
        project: str,
        kind: str,
        query: str | None,
        columns: Sequence[str] | str | None,
        trashed: bool | None,
        limit: int | None,
        sort_by: str,
        ascending: bool,
        model_id: str | None,
    ) -> Table:
        # Arguments are checked before the store opens (a bad call creates no store).
        check_arguments(kind, columns, limit, sort_by)
        return fetch_table(
            self.store(),
            project,
            kind,
            query,
            columns,
            trashed,
            limit,
            sort_by,
            ascending,
            model_id,
        )

    def trash(self, project: str, action: str, ids: list[str]) -> int:
        return change_trash(self.store(), project, action, ids)

    def set_description(self, project: str, run: str, description: str) -> None:
        lifecycle.set_description(self.store(), project, run, description)


class RemoteBackend:
    """The server an API token names; nothing is opened or written locally."""

    def __init__(self, token: str) -> None:
        from despina.store.http.connection import connection_for

        self._connection = connection_for(token)
        self.server: str | None = self._connection.server

    def table(
        self,
        project: str,
        kind: str,
        query: str | None,
        columns: Sequence[str] | str | None,
        trashed: bool | None,
        limit: int | None,
        sort_by: str,
        ascending: bool,
        model_id: str | None,
    ) -> Table:
        from despina.project.wire import ARROW_STREAM, decode_table

        names = check_arguments(kind, columns, limit, sort_by)  # no request for a bad call
        body: dict[str, Any] = {
            "project": project,
            "kind": kind,
            "query": query,
            "columns": names,
            "trashed": trashed,
            "limit": limit,
            "sort_by": sort_by,
            "ascending": bool(ascending),
            "model_id": model_id,
        }
        answer = self._connection.request(
            "POST", _path("/projects/table"), json_body=body, headers={"Accept": ARROW_STREAM}
        )
        return decode_table(answer.content)

    def trash(self, project: str, action: str, ids: list[str]) -> int:
        answer = self._connection.post_json(
            "/projects/trash", {"project": project, "action": action, "ids": ids}
        )
        return int(answer["count"])

    def set_description(self, project: str, run: str, description: str) -> None:
        self._connection.post_json(
            "/projects/description",
            {"project": project, "run": run, "description": description},
        )


def _path(path: str) -> str:
    from despina.store.http.connection import NATIVE_PREFIX

    return NATIVE_PREFIX + path
