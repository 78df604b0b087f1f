"""What an import did: per run, rows read, values and points loaded, skipped items with reasons,
id re-mappings and fork handling; for the export, the runs and files that were skipped.

Skipped items are counted per ``(code, path)`` so that one bad series cannot flood the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ImportReport", "Issue", "RunReport", "SkippedRun"]


@dataclass(slots=True)
class Issue:
    """One kind of skipped or adjusted item: ``count`` occurrences at ``path`` (None: the run)."""

    code: str
    message: str
    path: str | None = None
    count: int = 1


@dataclass(slots=True)
class RunReport:
    """The import of one run."""

    name: str
    """``<project directory>/<file prefix>`` in the export."""
    project: str = ""
    """Target project."""
    run_id: str = ""
    """``sys/custom_run_id`` in despina."""
    status: str = "pending"
    """``imported``, ``exists`` (left alone), ``would import`` (dry run) or ``failed``."""
    exported_run_id: str = ""
    exported_sys_id: str | None = None
    sys_id: str | None = None
    """``sys/id`` in despina (differs from ``exported_sys_id`` when re-mapped)."""
    parent: str | None = None
    """despina run id of the fork parent, when the run was imported as a fork."""
    rows: int = 0
    values: int = 0
    points: int = 0
    files: int = 0
    issues: list[Issue] = field(default_factory=list)
    _index: dict[tuple[str, str | None], Issue] = field(default_factory=dict, repr=False)

    def add(self, code: str, message: str, path: str | None = None, count: int = 1) -> None:
        """Record ``count`` items skipped or adjusted for one reason."""
        if count <= 0:
            return
        found = self._index.get((code, path))
        if found is None:
            issue = Issue(code, message, path, count)
            self._index[(code, path)] = issue
            self.issues.append(issue)
        else:
            found.count += count

    @property
    def remapped(self) -> bool:
        """The run got another ``sys/id`` than the exported one."""
        return (
            self.exported_sys_id is not None
            and self.sys_id is not None
            and self.sys_id != self.exported_sys_id
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_index", None)
        return data


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """A run (or directory) left out entirely, with the files concerned and the reason."""

    name: str
    reason: str
    files: tuple[str, ...] = ()
    kind: str = "unreadable"
    """``unreadable`` (a damaged or foreign file), ``incomplete`` (no ``part_0``), ``models``
    (model-registry export) or ``errors-file`` (the exporter's error log)."""


@dataclass(slots=True)
class ImportReport:
    """Everything an import did, for the console summary and the JSON report."""

    data_path: str
    files_path: str | None
    dry_run: bool = False
    runs: list[RunReport] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)
    exporter_errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for run in self.runs if run.status == status)

    @property
    def points(self) -> int:
        return sum(run.points for run in self.runs)

    @property
    def rows(self) -> int:
        return sum(run.rows for run in self.runs)

    @property
    def ok(self) -> bool:
        """No run failed and no file was unreadable (incomplete runs do not count)."""
        return all(s.kind not in ("unreadable", "errors-file") for s in self.skipped) and all(
            run.status != "failed" for run in self.runs
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "data_path": self.data_path,
            "files_path": self.files_path,
            "dry_run": self.dry_run,
            "seconds": self.seconds,
            "runs": [run.to_json() for run in self.runs],
            "skipped": [asdict(s) for s in self.skipped],
            "exporter_errors": self.exporter_errors,
        }

    def write(self, path: Path) -> None:
        """Write the report as JSON."""
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
