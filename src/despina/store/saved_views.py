"""Saved views of the web UI: a runs table or a charts page, named per project.

A view is the page's URL query string (filter, columns, sort, runs, metrics, axes), so opening
it is following a link, and a link to a page works without saving anything. Views live in the
store, shared by everyone who reaches the project.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from despina.errors import InvalidQuery
from despina.store import Store

__all__ = ["MAX_VIEWS", "VIEW_KINDS", "SavedView", "delete_view", "list_views", "save_view"]

VIEW_KINDS = ("runs", "charts")
MAX_VIEWS = 500
"""Views one project may keep."""
MAX_NAME = 100
MAX_QUERY = 16 * 1024


@dataclass(frozen=True)
class SavedView:
    """A saved view: ``query`` is the page's URL query string (without the ``?``)."""

    name: str
    kind: str
    query: str
    owner: str
    updated_ms: int


def list_views(store: Store, project: str) -> list[SavedView]:
    """The project's saved views, by name."""
    project_id = store.project_id(project)
    with store.read() as conn:
        rows = conn.execute(
            "SELECT name, kind, query, owner, updated_ms FROM saved_views "
            "WHERE project_id = ? ORDER BY name",
            (project_id,),
        ).fetchall()
    return [SavedView(str(n), str(k), str(q), str(o), int(u)) for n, k, q, o, u in rows]


def save_view(store: Store, project: str, name: str, kind: str, query: str, owner: str) -> None:
    """Save (or replace) the view ``name`` of ``project``.

    Raises:
        InvalidQuery: an empty or too long name, an unknown kind, a query over 16 KiB, or a
            project that already keeps ``MAX_VIEWS`` views.
    """
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidQuery(f"a view needs a name of 1 to {MAX_NAME} characters, got {name!r:.120}")
    if kind not in VIEW_KINDS:
        raise InvalidQuery(f"a view is of kind {' or '.join(VIEW_KINDS)}, not {kind!r:.40}")
    query = query.lstrip("?")
    if len(query) > MAX_QUERY:
        raise InvalidQuery(f"the view's settings are over {MAX_QUERY // 1024} KiB")
    project_id = store.project_id(project)
    now = int(time.time() * 1000)
    with store.write() as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM saved_views WHERE project_id = ? AND name <> ?",
            (project_id, name),
        ).fetchone()
        if count >= MAX_VIEWS:
            raise InvalidQuery(f"project {project!r} keeps {MAX_VIEWS} views: delete some first")
        updated = conn.execute(
            "UPDATE saved_views SET kind = ?, query = ?, owner = ?, updated_ms = ? "
            "WHERE project_id = ? AND name = ?",
            (kind, query, owner, now, project_id, name),
        ).rowcount
        if not updated:
            conn.execute(
                "INSERT INTO saved_views (project_id, name, kind, query, owner, created_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (project_id, name, kind, query, owner, now, now),
            )


def delete_view(store: Store, project: str, name: str) -> bool:
    """Delete the view ``name``; returns whether there was one."""
    project_id = store.project_id(project)
    with store.write() as conn:
        gone = conn.execute(
            "DELETE FROM saved_views WHERE project_id = ? AND name = ?", (project_id, name)
        ).rowcount
    return bool(gone)
