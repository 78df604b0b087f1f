"""Run lifecycle changes made after logging: trash, restore, delete, description.

Runs are named by their ``sys/id`` (``KEY-12``) or their run ID (``sys/custom_run_id``), the
way the old ``neptune`` client's project methods took them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from despina.errors import InvalidQuery, RunNotFound
from despina.store import Store
from despina.store.admin import delete_runs

__all__ = ["delete_trashed_runs", "find_runs", "restore_runs", "set_description", "trash_runs"]


def find_runs(conn: sqlite3.Connection, project_id: int, ids: Iterable[str]) -> dict[str, int]:
    """Row ids of the named runs, by the name given.

    Raises:
        RunNotFound: some names match no run; the message lists them.
    """
    wanted = [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))
    found: dict[str, int] = {}
    for name in wanted:
        row = conn.execute(
            "SELECT r.id FROM runs r JOIN projects p ON p.id = r.project_id "
            "WHERE r.project_id = ? AND (r.run_id = ? OR p.project_key || '-' || r.short_no = ?)",
            (project_id, name, name),
        ).fetchone()
        if row is not None:
            found[name] = int(row[0])
    missing = [n for n in wanted if n not in found]
    if missing:
        raise RunNotFound(
            f"no run {', '.join(repr(m) for m in missing)} in the project; name runs by "
            "sys/id (e.g. 'KEY-12') or by run ID (sys/custom_run_id)"
        )
    return found


def _set_trashed(store: Store, project: str, ids: Iterable[str], trashed: int) -> int:
    project_id = store.project_id(project)
    with store.write() as conn:
        pks = list(find_runs(conn, project_id, ids).values())
        conn.executemany(
            "UPDATE runs SET trashed = ?, revision = revision + 1 WHERE id = ?",
            [(trashed, pk) for pk in pks],
        )
    return len(pks)


def trash_runs(store: Store, project: str, ids: Iterable[str]) -> int:
    """Move runs to the trash (hidden from queries unless asked for); returns how many."""
    return _set_trashed(store, project, ids, 1)


def restore_runs(store: Store, project: str, ids: Iterable[str]) -> int:
    """Take runs out of the trash; returns how many."""
    return _set_trashed(store, project, ids, 0)


def delete_trashed_runs(store: Store, project: str, ids: Iterable[str]) -> int:
    """Delete trashed runs for good and give their space back; returns how many.

    Raises:
        RunNotFound: a name matches no run.
        InvalidQuery: a run is not in the trash, or forks of it would lose their history.
    """
    project_id = store.project_id(project)
    with store.write() as conn:
        found = find_runs(conn, project_id, ids)
        live = [
            name
            for name, pk in found.items()
            if not conn.execute("SELECT trashed FROM runs WHERE id = ?", (pk,)).fetchone()[0]
        ]
        if live:
            raise InvalidQuery(
                f"run {', '.join(map(repr, live))} is not in the trash; trash it first "
                "(only trashed runs can be deleted)"
            )
        pks = set(found.values())
        marks = ",".join("?" * len(pks))
        forks = [
            run_id
            for (run_id,) in conn.execute(
                f"SELECT run_id FROM runs WHERE parent_id IN ({marks}) AND id NOT IN ({marks})",
                [*pks, *pks],
            )
        ]
        if forks:
            raise InvalidQuery(
                f"runs {', '.join(map(repr, sorted(forks)))} fork from a run being deleted and "
                "would lose their inherited history; delete them too, or keep the parent"
            )
        orphaned = _file_keys(conn, sorted(pks))
        deleted = delete_runs(conn, sorted(pks))
        shas = _drop_blob_rows(conn, project_id, orphaned)
    for sha in shas:  # contents no other project or run refers to
        store.blobs.delete(sha)
    if store.dialect == "sqlite":  # give the freed pages back; PostgreSQL's autovacuum does
        store.connection().execute("PRAGMA incremental_vacuum")
    return deleted


def _file_keys(conn: sqlite3.Connection, pks: list[int]) -> set[str]:
    marks = ",".join("?" * len(pks))
    keys: set[str] = set()
    for (text,) in conn.execute(
        f"SELECT text FROM attributes WHERE run_id IN ({marks}) AND type = 'file'", pks
    ):
        keys.add(json.loads(text)["path"])
    for (value,) in conn.execute(
        f"SELECT p.value FROM points p JOIN attributes a ON a.id = p.attr_id "
        f"WHERE a.run_id IN ({marks}) AND a.type = 'file_series'",
        pks,
    ):
        keys.add(json.loads(value)["path"])
    return keys


def _drop_blob_rows(conn: sqlite3.Connection, project_id: int, keys: set[str]) -> list[str]:
    """Forget storage keys; return content hashes nothing refers to any more."""
    shas = []
    for key in keys:
        row = conn.execute(
            "SELECT sha256 FROM blobs WHERE project_id = ? AND path = ?", (project_id, key)
        ).fetchone()
        if row is None:
            continue
        conn.execute("DELETE FROM blobs WHERE project_id = ? AND path = ?", (project_id, key))
        if conn.execute("SELECT 1 FROM blobs WHERE sha256 = ? LIMIT 1", row).fetchone() is None:
            shas.append(row[0])
    return shas


def set_description(store: Store, project: str, run: str, description: str) -> None:
    """Set ``sys/description`` of a run.

    Raises:
        RunNotFound: no such run.
    """
    project_id = store.project_id(project)
    with store.write() as conn:
        (pk,) = find_runs(conn, project_id, [run]).values()
        conn.execute(
            "UPDATE runs SET description = ?, revision = revision + 1 WHERE id = ?",
            (description, pk),
        )
