"""The state of runs as the web UI shows it: ``running``, ``finished`` or ``failed``.

``running`` is ``sys/state = "running"`` of NQL (not closed, pinged within the ping timeout,
see :func:`despina.store.sysattrs.run_state_sql`); a run that is not running is ``failed``
when its ``sys/failed`` flag is set, else ``finished`` (closed, or silent past the timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from despina.store.reads import ProjectReads
from despina.store.sysattrs import run_state_sql

__all__ = ["RunState", "run_states"]

RunState = Literal["running", "finished", "failed"]

# SQLite binds at most 999 parameters in older builds
_IN_BATCH = 900


def run_states(reads: ProjectReads, pks: Sequence[int]) -> dict[int, RunState]:
    """Per run row id of ``pks`` (runs of ``reads``'s project), its state at ``reads.now_ms``;
    unknown ids are absent."""
    states: dict[int, RunState] = {}
    ids = list(dict.fromkeys(int(pk) for pk in pks))
    for start in range(0, len(ids), _IN_BATCH):
        batch = ids[start : start + _IN_BATCH]
        marks = ",".join("?" * len(batch))
        rows = reads.conn.execute(
            f"SELECT r.id, {run_state_sql()}, r.failed FROM runs r "
            f"WHERE r.project_id = ? AND r.id IN ({marks})",
            [reads.now_ms, reads.project_id, *batch],
        )
        for pk, running, failed in rows:
            states[int(pk)] = "running" if running else "failed" if failed else "finished"
    return states
