"""Creating runs: ids, experiments and their heads, forks and what a fork inherits.

Shared by ``despina.Run`` and the server's ``create`` operation (wire-protocol.md §5.4).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

from despina.config import parse_project
from despina.store import Store
from despina.store.batch import WARNING, IngestIssue
from despina.store.series import (
    float_aggregates,
    lineage,
    read_float_lineage,
    read_points_lineage,
)
from despina.store.sql.attribute_packs import write_pack
from despina.store.sysattrs import SYS_STRING_SETS

__all__ = ["CreatedRun", "RunSpec", "create_run", "mark_closed", "record_close"]

NAME_LIMIT_BYTES = 730


@dataclass(frozen=True, slots=True)
class RunSpec:
    """The parameters of a run creation; steps in micro-steps, times in epoch ms."""

    project: str
    run_id: str
    experiment_name: str | None = None
    creation_ms: int | None = None
    family: str | None = None
    fork_run_id: str | None = None
    fork_step: int | None = None
    inherit_configs: bool = True
    owner: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class CreatedRun:
    """The stored run (``pk`` is its row id) and what creation reported."""

    pk: int
    project_id: int
    issues: list[IngestIssue]
    resumed: bool


def _check_spec(spec: RunSpec) -> str | None:
    if not spec.run_id or "/" in spec.run_id:
        return f"run id {spec.run_id!r} must be non-empty and must not contain '/'"
    if len(spec.run_id.encode()) > NAME_LIMIT_BYTES:
        return f"run id is longer than {NAME_LIMIT_BYTES} UTF-8 bytes"
    if spec.experiment_name is not None and (
        not spec.experiment_name or len(spec.experiment_name.encode()) > NAME_LIMIT_BYTES
    ):
        return f"experiment name must be 1 to {NAME_LIMIT_BYTES} UTF-8 bytes"
    if (spec.fork_run_id is None) != (spec.fork_step is None):
        return "fork_run_id and fork_step must be given together"
    if spec.fork_step is not None and not 0 <= spec.fork_step < 10**18:
        return f"fork step {spec.fork_step / 1e6:g} must be in [0, 1e12)"
    return None


def create_run(store: Store, spec: RunSpec) -> CreatedRun:
    """Create the run described by ``spec``, or resume it if it exists.

    Raises:
        ValueError: the spec breaks a creation rule (``RUN_INVALID_CREATION_PARAMETERS``).
        ConfigError: the project name is not ``workspace/project``.
        ProjectNotFound: never; the project is created on first use (in the run's commit).
    """
    problem = _check_spec(spec)
    if problem is not None:
        raise ValueError(f"RUN_INVALID_CREATION_PARAMETERS: {problem}")
    workspace, name = parse_project(spec.project)
    now = int(time.time() * 1000)
    with store.write() as conn:
        # a new project is created in the run's commit: one commit, not two
        row = conn.execute(
            "SELECT id FROM projects WHERE workspace = ? AND name = ?", (workspace, name)
        ).fetchone()
        if row is not None:
            project_id = int(row[0])
        else:
            project_id = store.create_project_in(conn, spec.project, exist_ok=True)
        existing = _existing(conn, project_id, spec.run_id)
        if existing is None and store.dialect == "postgresql":
            # creations of new runs in a project take turns (they all update its next_run_no
            # anyway): two processes or replicas given the same new run id end with one run,
            # not a duplicate key. A resumed run is not looked up under this lock, so that
            # resuming a run whose writer holds its row lock never holds up other creations.
            # NO KEY UPDATE: inserts referencing the project (runs, blobs) need not wait.
            conn.execute("SELECT id FROM projects WHERE id = ? FOR NO KEY UPDATE", (project_id,))
            existing = _existing(conn, project_id, spec.run_id)
        if existing is not None:
            pk, experiment, parent, fork_step = existing
            conn.execute("UPDATE runs SET closed = 0, ping_ms = ? WHERE id = ?", (now, pk))
            same = (experiment == spec.experiment_name or spec.experiment_name is None) and (
                spec.fork_run_id is None
                or (parent == spec.fork_run_id and fork_step == spec.fork_step)
            )
            code = "RUN_DUPLICATE" if same else "RUN_CONFLICTING"
            message = (
                f"run {spec.run_id!r} already exists; logging resumes into it"
                if same
                else f"run {spec.run_id!r} already exists with another experiment or fork "
                "point; logging resumes into the existing run unchanged"
            )
            return CreatedRun(pk, project_id, [IngestIssue(code, message, None, WARNING)], True)
        return _insert_run(conn, project_id, spec, now)


def _existing(conn: sqlite3.Connection, project_id: int, run_id: str) -> tuple[Any, ...] | None:
    """The run's pk, experiment, parent run id and fork step, if it exists."""
    row = conn.execute(
        "SELECT r.id, r.experiment_name, pr.run_id, r.fork_step FROM runs r "
        "LEFT JOIN runs pr ON pr.id = r.parent_id WHERE r.project_id = ? AND r.run_id = ?",
        (project_id, run_id),
    ).fetchone()
    return None if row is None else tuple(row)


def mark_closed(store: Store, run_pk: int, *, failed: bool) -> None:
    """Record that the logging process closed the run (and whether it failed), durably.

    One commit under ``synchronous=FULL``: it fsyncs the WAL, so this commit and every earlier
    one (the run's creation and everything flushed to it) survive a power loss once it returns.
    A ``despina.Run`` closing with data left to store makes :func:`record_close` part of its
    final flush's durable commit instead (one commit, one fsync).

    The same transaction packs the run's attribute rows (``store/sql/attribute_packs.py``).

    Raises:
        StoreError: the database stayed locked past the busy timeout or failed to write.
    """
    with store.write(durable=True) as conn:
        record_close(conn, run_pk, failed=failed)


def record_close(conn: Any, run_pk: int, *, failed: bool) -> None:
    """The writes of a run's close, inside the caller's write transaction (every close
    transaction runs these: :func:`mark_closed`, or the final flush of ``despina.Run``)."""
    conn.execute(
        "UPDATE runs SET ping_ms = MAX(ping_ms, ?), closed = 1, failed = MAX(failed, ?) "
        "WHERE id = ?",
        (int(time.time() * 1000), 1 if failed else 0, run_pk),
    )
    write_pack(conn, run_pk)  # a first read of many closed runs reads one value per run


def _insert_run(conn: sqlite3.Connection, project_id: int, spec: RunSpec, now: int) -> CreatedRun:
    issues: list[IngestIssue] = []
    parent: tuple[int, int] | None = None
    if spec.fork_run_id is not None:
        row = conn.execute(
            "SELECT id, depth FROM runs WHERE project_id = ? AND run_id = ?",
            (project_id, spec.fork_run_id),
        ).fetchone()
        if row is None:
            issues.append(
                IngestIssue(
                    "RUN_FORK_PARENT_NOT_FOUND",
                    f"fork parent {spec.fork_run_id!r} does not exist in the project; "
                    f"run {spec.run_id!r} was created as a root run",
                    None,
                    WARNING,
                )
            )
        else:
            parent = (int(row[0]), int(row[1]))
    (short_no,) = conn.execute(
        "UPDATE projects SET next_run_no = next_run_no + 1 WHERE id = ? RETURNING next_run_no - 1",
        (project_id,),
    ).fetchone()
    if spec.experiment_name is not None:
        conn.execute(
            "UPDATE runs SET is_head = 0 WHERE project_id = ? AND experiment_name = ? "
            "AND is_head = 1",
            (project_id, spec.experiment_name),
        )
    creation = spec.creation_ms if spec.creation_ms is not None else now
    cursor = conn.execute(
        "INSERT INTO runs (project_id, run_id, short_no, uuid, family, experiment_name, is_head, "
        "owner, description, creation_ms, modification_ms, ping_ms, parent_id, fork_step, depth) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            project_id,
            spec.run_id,
            short_no,
            str(uuid.uuid4()),
            spec.family or spec.run_id,
            spec.experiment_name,
            1 if spec.experiment_name is not None else 0,
            spec.owner,
            spec.description,
            creation,
            now,
            now,
            None if parent is None else parent[0],
            None if parent is None else spec.fork_step,
            0 if parent is None else parent[1] + 1,
        ),
    )
    pk = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO attributes (run_id, path, type, text) VALUES (?, ?, 'string_set', '[]')",
        [(pk, path) for path in SYS_STRING_SETS],
    )
    if parent is not None and spec.fork_step is not None:
        _inherit(conn, pk, parent[0], spec.fork_step, spec.inherit_configs)
    return CreatedRun(pk, project_id, issues, False)


def _inherit(
    conn: sqlite3.Connection, child: int, parent: int, fork_step: int, configs: bool
) -> None:
    """Give the child its inherited series (aggregates up to the fork step) and, if asked, configs.

    The child's own points are written later; its series rows start with the aggregates of the
    lineage up to and including ``fork_step`` so that NQL and tables see full lineage.
    """
    links = lineage(conn, parent)
    parent_links = [
        links[0].__class__(links[0].run_pk, links[0].experiment_name, fork_step),
        *links[1:],
    ]
    rows = conn.execute(
        "SELECT path, type, num, text, count, last_step, last_ts, fmin, fmax, fsum, fsumsq, "
        "fcount FROM attributes WHERE run_id = ? AND path NOT LIKE 'sys/%'",
        (parent,),
    ).fetchall()
    for path, type_, num, text, count, last_step, last_ts, *floats in rows:
        if type_ == "float_series":
            if last_step is not None and last_step > fork_step:
                points = read_float_lineage(conn, parent_links, path, None, fork_step)
                num, count, last_step, last_ts, *floats = float_aggregates(points)
            if not count:
                continue
            conn.execute(
                "INSERT INTO attributes (run_id, path, type, num, count, last_step, last_ts, "
                "fmin, fmax, fsum, fsumsq, fcount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (child, path, type_, num, count, last_step, last_ts, *floats),
            )
        elif type_.endswith("_series"):
            if last_step is not None and last_step > fork_step:
                found = read_points_lineage(conn, parent_links, path, type_, None, fork_step)
                if not found:
                    continue
                count = len(found)
                last_step, last_ts, text = found[-1]
            if not count:
                continue
            conn.execute(
                "INSERT INTO attributes (run_id, path, type, text, count, last_step, last_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (child, path, type_, text, count, last_step, last_ts),
            )
        elif configs:
            conn.execute(
                "INSERT INTO attributes (run_id, path, type, num, text) VALUES (?, ?, ?, ?, ?)",
                (child, path, type_, num, text),
            )
