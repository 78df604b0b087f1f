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
            "SELECT coalesce(sum(kind = 'run'), 0), count(DISTINCT experiment_name), "
            "coalesce(sum(kind = 'model'), 0) FROM runs WHERE project_id = ?",
            (pid,),
        ).fetchone()
        attributes, series = conn.execute(
            "SELECT count(*), coalesce(sum(a.type LIKE '%series'), 0) FROM attributes a "
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
    """Bytes used by the database, its write-ahead log and the file blobs."""
    wal = store.home / (DB_FILE + "-wal")
    blobs = store.blobs.total_bytes()
    return {
        "database": store.db_path.stat().st_size if store.db_path.exists() else 0,
        "wal": wal.stat().st_size if wal.exists() else 0,
        "files": blobs,
    }
