"""Removing data: runs (with everything they own) and whole projects."""

from __future__ import annotations

import sqlite3

from despina.config import parse_project
from despina.store.schema import CHUNK_BITS
from despina.store.sqlite import Store

__all__ = ["delete_project", "delete_runs"]


def delete_runs(conn: sqlite3.Connection, run_pks: list[int]) -> int:
    """Delete runs and everything they own, inside the caller's write transaction.

    Forks of a deleted run keep their own points; their inherited history goes with the parent
    (they become roots). Returns the number of runs deleted.
    """
    deleted = 0
    for pk in run_pks:
        attr_ids = [a for (a,) in conn.execute("SELECT id FROM attributes WHERE run_id = ?", (pk,))]
        for attr_id in attr_ids:
            lo = attr_id << CHUNK_BITS
            conn.execute(
                "DELETE FROM chunks WHERE id BETWEEN ? AND ?", (lo, lo + (1 << CHUNK_BITS) - 1)
            )
            conn.execute("DELETE FROM previews WHERE attr_id = ?", (attr_id,))
            conn.execute("DELETE FROM points WHERE attr_id = ?", (attr_id,))
        conn.execute("DELETE FROM attributes WHERE run_id = ?", (pk,))
        conn.execute(
            "UPDATE runs SET parent_id = NULL, fork_step = NULL, depth = 0 WHERE parent_id = ?",
            (pk,),
        )
        deleted += conn.execute("DELETE FROM runs WHERE id = ?", (pk,)).rowcount
    return deleted


def delete_project(store: Store, name: str) -> bool:
    """Delete a project with all its runs; ``False`` if it did not exist."""
    workspace, project = parse_project(name)
    with store.write() as conn:
        row = conn.execute(
            "SELECT id FROM projects WHERE workspace = ? AND name = ?", (workspace, project)
        ).fetchone()
        if row is None:
            return False
        pks = [pk for (pk,) in conn.execute("SELECT id FROM runs WHERE project_id = ?", row)]
        delete_runs(conn, pks)
        conn.execute("DELETE FROM blobs WHERE project_id = ?", row)
        conn.execute("DELETE FROM projects WHERE id = ?", row)
    return True
