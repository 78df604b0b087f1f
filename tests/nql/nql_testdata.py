"""Test data for NQL: runs described in Python, inserted straight into the store tables, and the
same runs as the reference evaluator sees them (built from the Python description, not the
database, so that the two sides stay independent)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from despina.nql.reference import RunAttributes, aggregates_from_stats
from despina.store import Store
from despina.store.nql import compile_filter

__all__ = [
    "PROJECT_KEY",
    "Attr",
    "Dataset",
    "RunSpec",
    "backend",
    "ms",
    "open_dataset",
    "open_store",
]

PROJECT_KEY = "NLI"
RECENT_PING_MS = 60_000
"""Runs in these tests ping either within this of the evaluation time or months before it, so
``sys/state`` does not depend on the store's exact ping timeout (minutes)."""
SERIES = {"float_series", "string_series", "histogram_series", "file_series"}


def backend() -> str:
    """``"postgresql"`` or ``"sqlite"``: the store backend of this session (``DESPINA_TEST_STORE``,
    see ``tests/conftest.py``)."""
    return "postgresql" if os.environ.get("DESPINA_TEST_STORE") == "postgresql" else "sqlite"


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO datetime (UTC when no offset)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass
class Attr:
    """One attribute: ``value`` is the scalar, or the list of committed points of a series."""

    type: str
    value: Any


@dataclass
class RunSpec:
    """A run with its sys fields and user attributes."""

    run_id: str
    short_no: int
    experiment_name: str | None = None
    owner: str = ""
    description: str = ""
    creation_ms: int = 0
    modification_ms: int = 0
    ping_ms: int = 0
    closed: bool = True
    failed: bool = False
    trashed: bool = False
    archived: bool = False
    is_head: bool = False
    size_bytes: int = 0
    tags: set[str] = field(default_factory=set)
    group_tags: set[str] = field(default_factory=set)
    attrs: dict[str, Attr] = field(default_factory=dict)


def _stats(points: Sequence[float]) -> tuple[Any, ...]:
    """(fmin, fmax, fsum, fsumsq, fcount) over finite values, summed in order like the store."""
    finite = [v for v in points if math.isfinite(v)]
    if not finite:
        return None, None, None, None, 0
    total = total_sq = 0.0
    for v in finite:
        total += v
        total_sq += v * v
    return min(finite), max(finite), total, total_sq, len(finite)


def _row(attr: Attr) -> dict[str, Any]:
    """Column values of the attributes row for ``attr``."""
    kind, value = attr.type, attr.value
    row: dict[str, Any] = {"num": None, "text": None, "count": None}
    if kind in ("float", "int", "datetime"):
        row["num"] = value
    elif kind == "bool":
        row["num"] = int(value)
    elif kind == "string":
        row["text"] = value
    elif kind == "artifact":  # as Run.track_artifact stores it
        row["text"] = json.dumps({"hash": value, "files": []})
    elif kind == "string_set":
        row["text"] = json.dumps(sorted(value))
    elif kind == "file":
        row["text"] = json.dumps({"path": value})
    elif kind == "float_series":
        row.update(count=len(value), num=value[-1] if value else None)
        row.update(zip(("fmin", "fmax", "fsum", "fsumsq", "fcount"), _stats(value), strict=True))
    elif kind == "string_series":
        row.update(count=len(value), text=value[-1] if value else None)
    else:  # histogram_series, file_series: the last value as JSON
        row.update(count=len(value), text=json.dumps(value[-1]) if value else None)
    return row


def _view_value(attr: Attr) -> tuple[str, Any, dict[str, Any] | None]:
    kind, value = attr.type, attr.value
    if kind == "string_set":
        return kind, set(value), None
    if kind == "float_series":
        stats = _stats(value)
        aggs = aggregates_from_stats(len(value), *stats)
        return kind, (value[-1] if value else None), aggs
    if kind in SERIES:
        return kind, (value[-1] if value else None), {"count": len(value)}
    return kind, value, None


@dataclass
class Dataset:
    """Runs inserted into a store; ``ids`` maps run ids to ``runs.id``. ``conn`` is a store
    connection (SQLite's, or the PostgreSQL store's), outside any transaction."""

    conn: Any
    project_id: int
    runs: list[RunSpec]
    ids: dict[str, int]
    store: Store | None = None

    def select(self, query: Any, now_ms: int) -> set[str]:
        """Run ids the compiled SQL selects, in the connection's dialect."""
        sql, params = compile_filter(self.conn, query, now_ms=now_ms, project_ids=[self.project_id])
        rows = self.conn.execute(
            "SELECT r.run_id FROM runs r JOIN projects p ON p.id = r.project_id "
            f"WHERE r.project_id = ? AND ({sql})",
            [self.project_id, *params],
        )
        return {row[0] for row in rows}

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def view(self, run: RunSpec, now_ms: int) -> RunAttributes:
        """``run`` as the reference evaluator sees it."""
        out: dict[str, tuple[str, Any, Any]] = {
            path: _view_value(attr) for path, attr in run.attrs.items()
        }
        sys_values: dict[str, tuple[str, Any]] = {
            "sys/id": ("string", f"{PROJECT_KEY}-{run.short_no}"),
            "sys/custom_run_id": ("string", run.run_id),
            "sys/name": ("string", run.experiment_name or ""),
            "sys/experiment/name": ("string", run.experiment_name),
            "sys/experiment/is_head": ("bool", run.is_head),
            "sys/family": ("string", run.run_id),
            "sys/owner": ("string", run.owner),
            "sys/description": ("string", run.description),
            "sys/diagnostics/project_uuid": ("string", "project-uuid"),
            "sys/diagnostics/run_uuid": ("string", f"uuid-{run.run_id}"),
            "sys/creation_time": ("datetime", run.creation_ms),
            "sys/modification_time": ("datetime", run.modification_ms),
            "sys/ping_time": ("datetime", run.ping_ms),
            "sys/archived": ("bool", run.archived),
            "sys/trashed": ("bool", run.trashed),
            "sys/failed": ("bool", run.failed),
            "sys/forking/depth": ("int", 0),
            "sys/size": ("int", run.size_bytes),
            "sys/forking/parent": ("string", None),
            "sys/forking/step": ("float", None),
        }
        out.update({path: (kind, value, None) for path, (kind, value) in sys_values.items()})
        out["sys/tags"] = ("string_set", set(run.tags), None)
        out["sys/group_tags"] = ("string_set", set(run.group_tags), None)
        running = not run.closed and run.ping_ms >= now_ms - RECENT_PING_MS
        out["sys/state"] = ("experimentState", "running" if running else "inactive", None)
        return out


def insert_runs(conn: Any, runs: Iterable[RunSpec]) -> tuple[int, dict[str, int]]:
    """Insert a project and ``runs`` with their attributes; returns (project id, run ids)."""
    project_id = conn.execute(
        "INSERT INTO projects (workspace, name, project_key, uuid, created_ms) "
        "VALUES ('ws', 'proj', ?, 'project-uuid', 0)",
        (PROJECT_KEY,),
    ).lastrowid
    assert project_id is not None
    ids: dict[str, int] = {}
    attr_rows = []
    for run in runs:
        cursor = conn.execute(
            "INSERT INTO runs (project_id, run_id, short_no, uuid, family, experiment_name, "
            "is_head, owner, description, creation_ms, modification_ms, ping_ms, closed, failed, "
            "trashed, archived, size_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?)",
            (
                project_id,
                run.run_id,
                run.short_no,
                f"uuid-{run.run_id}",
                run.run_id,
                run.experiment_name,
                int(run.is_head),
                run.owner,
                run.description,
                run.creation_ms,
                run.modification_ms,
                run.ping_ms,
                int(run.closed),
                int(run.failed),
                int(run.trashed),
                int(run.archived),
                run.size_bytes,
            ),
        )
        rid = cursor.lastrowid
        assert rid is not None
        ids[run.run_id] = rid
        attrs = dict(run.attrs)
        attrs["sys/tags"] = Attr("string_set", run.tags)
        attrs["sys/group_tags"] = Attr("string_set", run.group_tags)
        for path, attr in attrs.items():
            row = _row(attr)
            attr_rows.append(
                (
                    rid,
                    path,
                    attr.type,
                    row["num"],
                    row["text"],
                    row["count"],
                    row.get("fmin"),
                    row.get("fmax"),
                    row.get("fsum"),
                    row.get("fsumsq"),
                    row.get("fcount"),
                )
            )
    conn.executemany(
        "INSERT INTO attributes (run_id, path, type, num, text, count, fmin, fmax, fsum, "
        "fsumsq, fcount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        attr_rows,
    )
    return project_id, ids


def open_store(location: str, home: Path) -> Store:
    """The store at ``location`` (a directory or a PostgreSQL URL, see ``conftest.py``)."""
    return Store.open(home, url=location)


def open_dataset(location: str, home: Path, runs: list[RunSpec]) -> Dataset:
    """The store at ``location`` holding ``runs`` in a project of their own."""
    store = open_store(location, home)
    with store.write() as wconn:
        project_id, ids = insert_runs(wconn, runs)
    return Dataset(store.connection(), project_id, runs, ids, store)
