"""What a store holds: counts per project and bytes on disk (for ``despina info`` and the demo)."""

from __future__ import annotations

from dataclasses import dataclass

from despina.store import Store
from despina.store.sqlite import DB_FILE

__all__ = ["ProjectStats", "disk_bytes", "project_stats"]


@dataclass(frozen=True, slots=True)
class ProjectStats:
    """Counts for one project; ``points`` are stored (own) points of every series type."""

    project: str
    runs: int
    experiments: int
    models: int
    attributes: int
    series: int
    points: int


def project_stats(store: Store) -> list[ProjectStats]:
    """One row per project, sorted by name."""
    conn = store.connection()
    out = []
    for pid, workspace, name in conn.execute(
        "SELECT id, workspace, name FROM projects ORDER BY workspace, name"
    ).fetchall():
        runs, experiments, models = conn.execute(
            "SELECT coalesce(sum(CASE WHEN kind = 'run' THEN 1 ELSE 0 END), 0), "
            "count(DISTINCT experiment_name), "
            "coalesce(sum(CASE WHEN kind = 'model' THEN 1 ELSE 0 END), 0) "
            "FROM runs WHERE project_id = ?",
            (pid,),
        ).fetchone()
        attributes, series = conn.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN a.type LIKE '%series' THEN 1 ELSE 0 END), 0) "
            "FROM attributes a "
            "JOIN runs r ON r.id = a.run_id WHERE r.project_id = ?",
            (pid,),
        ).fetchone()
        float_points = conn.execute(
            "SELECT coalesce(sum(c.n), 0) FROM chunks c JOIN attributes a "
            "ON a.id = (c.id >> 24) JOIN runs r ON r.id = a.run_id WHERE r.project_id = ?",
            (pid,),
        ).fetchone()[0]
        other_points = conn.execute(
            "SELECT count(*) FROM points p JOIN attributes a ON a.id = p.attr_id "
            "JOIN runs r ON r.id = a.run_id WHERE r.project_id = ?",
            (pid,),
        ).fetchone()[0]
        out.append(
            ProjectStats(
                f"{workspace}/{name}",
                runs,
                experiments,
                models,
                attributes,
                series,
                float_points + other_points,
            )
        )
    return out


def disk_bytes(store: Store) -> dict[str, int]:
    """Bytes used by the database, its write-ahead log and the file blobs.

    On PostgreSQL ``database`` is the size of the store's tables with their indexes and TOAST
    (``pg_total_relation_size``, so other tables sharing the database are not counted) and
    ``wal`` is 0: the server's write-ahead log is shared by all its databases.
    """
    blobs = store.blobs.total_bytes()
    if store.dialect == "postgresql":
        with store.read() as conn:
            (size,) = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'm') AND n.nspname = current_schema()"
            ).fetchone()
        return {"database": int(size), "wal": 0, "files": blobs}
    db, wal = store.home / DB_FILE, store.home / (DB_FILE + "-wal")
    return {
        "database": db.stat().st_size if db.exists() else 0,
        "wal": wal.stat().st_size if wal.exists() else 0,
        "files": blobs,
    }
