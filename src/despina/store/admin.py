"""Removing data: runs (with everything they own) and whole projects."""

from __future__ import annotations

import sqlite3

from despina.config import parse_project
from despina.store import Store
from despina.store.schema import CHUNK_BITS, SERIES_TYPES
from despina.store.series import (
    FLOAT_AGGREGATES_UPDATE,
    POINT_AGGREGATES_UPDATE,
    float_aggregates,
    lineage,
    read_float_lineage,
    read_points_lineage,
)

__all__ = ["delete_project", "delete_runs"]

_SERIES_SQL = ", ".join(f"'{name}'" for name in sorted(SERIES_TYPES))


def delete_runs(conn: sqlite3.Connection, run_pks: list[int]) -> int:
    """Delete runs and everything they own, inside the caller's write transaction.

    Forks of a deleted run keep their own points; their inherited history goes with the parent:
    they become roots, and they and their own forks get depths and series aggregates over the
    lineage that remains. Returns the number of runs deleted.
    """
    deleted = 0
    detached: list[int] = []
    for pk in run_pks:
        attr_ids = [a for (a,) in conn.execute("SELECT id FROM attributes WHERE run_id = ?", (pk,))]
        for attr_id in attr_ids:
            lo = attr_id << CHUNK_BITS
            conn.execute(
                "DELETE FROM chunks WHERE id BETWEEN ? AND ?", (lo, lo + (1 << CHUNK_BITS) - 1)
            )
            conn.execute("DELETE FROM previews WHERE attr_id = ?", (attr_id,))
            conn.execute("DELETE FROM points WHERE attr_id = ?", (attr_id,))
            conn.execute("DELETE FROM chart_summaries WHERE attr_id = ?", (attr_id,))
        conn.execute("DELETE FROM attributes WHERE run_id = ?", (pk,))
        conn.execute("DELETE FROM attribute_packs WHERE run_id = ?", (pk,))
        detached += [c for (c,) in conn.execute("SELECT id FROM runs WHERE parent_id = ?", (pk,))]
        conn.execute(
            "UPDATE runs SET parent_id = NULL, fork_step = NULL WHERE parent_id = ?", (pk,)
        )
        deleted += conn.execute("DELETE FROM runs WHERE id = ?", (pk,)).rowcount
    gone = set(run_pks)
    for root in dict.fromkeys(pk for pk in detached if pk not in gone):
        for pk in _with_descendants(conn, root):
            _refresh_lineage(conn, pk)
    return deleted


def _with_descendants(conn: sqlite3.Connection, root: int) -> list[int]:
    rows = conn.execute(
        # typed: PostgreSQL gives a bare parameter the type smallint here
        "WITH RECURSIVE tree(id) AS (SELECT CAST(? AS BIGINT) UNION SELECT r.id FROM runs r "
        "JOIN tree ON r.parent_id = tree.id) SELECT id FROM tree",
        (root,),
    )
    return [pk for (pk,) in rows]


def _refresh_lineage(conn: sqlite3.Connection, run_pk: int) -> None:
    """Recompute a run's depth and series aggregates after its lineage lost an ancestor.

    ``revision`` is bumped so that a process still logging to the run re-reads its state.
    """
    links = lineage(conn, run_pk)
    conn.execute(
        "UPDATE runs SET depth = ?, revision = revision + 1 WHERE id = ?",
        (len(links) - 1, run_pk),
    )
    rows = conn.execute(
        f"SELECT id, path, type FROM attributes WHERE run_id = ? AND type IN ({_SERIES_SQL})",
        (run_pk,),
    ).fetchall()
    for attr_id, path, type_ in rows:
        if type_ == "float_series":
            aggregates = float_aggregates(read_float_lineage(conn, links, path))
            conn.execute(FLOAT_AGGREGATES_UPDATE, (*aggregates, attr_id))
            continue
        found = read_points_lineage(conn, links, path, type_)
        last_step, last_ts, text = found[-1] if found else (None, None, None)
        conn.execute(POINT_AGGREGATES_UPDATE, (text, len(found), last_step, last_ts, attr_id))


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
