"""Model-registry objects (models and model versions) as the web UI reads them: by ``sys/id``.

Registry objects are stored as runs of another kind (``runs.kind``), so their attributes and
files are read the way a run's are once the object is found.
"""

from __future__ import annotations

from despina.store.reads import ProjectReads
from despina.store.runs_table import RunRow

__all__ = ["file_paths_of_objects", "find_object"]


def find_object(reads: ProjectReads, object_id: str) -> RunRow | None:
    """The model or model version with ``sys/id`` ``object_id`` (e.g. ``KEY-CLS-2``); None
    when the project has none."""
    row = reads.conn.execute(
        "SELECT id, run_id, experiment_name, parent_id, fork_step, creation_ms FROM runs "
        "WHERE project_id = ? AND kind IN ('model', 'model_version') AND object_id = ?",
        (reads.project_id, object_id),
    ).fetchone()
    if row is None:
        return None
    pk, run_id, experiment, parent, fork, created = row
    return RunRow(int(pk), object_id, str(run_id), experiment, parent, fork, int(created))


def file_paths_of_objects(reads: ProjectReads) -> set[str]:
    """Attribute paths that hold a file in some model or model version of the project."""
    return {
        str(path)
        for (path,) in reads.conn.execute(
            "SELECT DISTINCT a.path FROM attributes a JOIN runs r ON r.id = a.run_id "
            "WHERE r.project_id = ? AND r.kind IN ('model', 'model_version') "
            "AND a.type IN ('file', 'file_series')",
            (reads.project_id,),
        )
    }
