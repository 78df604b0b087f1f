"""What a store copy did (:class:`CopyReport`) and how it tells its progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CopyConflict", "CopyProgress", "CopyReport", "NoProgress"]


@dataclass(frozen=True, slots=True)
class CopyConflict:
    """Something the destination holds differently, left as the destination has it."""

    kind: str  # "run", "file", "view" or "api_key"
    name: str  # workspace/project/run_id, workspace/project:path or :view, or the key id
    reason: str


@dataclass
class CopyReport:
    """What a copy did. ``changed`` is false when the destination already held everything."""

    source: str
    destination: str
    projects: int = 0
    projects_created: int = 0
    runs: int = 0
    runs_copied: int = 0
    runs_present: int = 0
    runs_changed_since: int = 0
    points: int = 0
    previews: int = 0
    attributes: int = 0
    files: int = 0
    files_present: int = 0
    file_contents: int = 0
    file_bytes: int = 0
    files_missing: int = 0
    views: int = 0
    api_keys: int = 0
    refresh_tokens: int = 0
    conflicts: list[CopyConflict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.projects_created
            or self.runs_copied
            or self.files
            or self.file_contents
            or self.views
            or self.api_keys
            or self.refresh_tokens
        )

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """The report as text lines (the CLI prints them)."""
        out = [f"copied {self.source} -> {self.destination} in {self.seconds:.1f} s"]
        if not self.changed:
            out.append(
                f"nothing to copy: the destination already holds all {self.runs:,} runs of "
                f"{self.projects:,} projects"
            )
        out.append(f"projects: {self.projects:,} ({self.projects_created:,} created)")
        runs = (
            f"runs: {self.runs_copied:,} copied, {self.runs_present:,} already there, "
            f"{sum(c.kind == 'run' for c in self.conflicts):,} conflicts"
        )
        if self.runs_changed_since:
            runs += f" ({self.runs_changed_since:,} already there changed in the source since)"
        out.append(runs)
        rate = f" ({self.points_per_second:,.0f} points/s)" if self.points else ""
        out.append(f"points: {self.points:,} copied{rate}, previews {self.previews:,}")
        out.append(
            f"files: {self.files:,} copied, {self.files_present:,} already there; "
            f"{self.file_contents:,} contents, {self.file_bytes:,} bytes"
        )
        if self.files_missing:
            out.append(f"files without content in the source: {self.files_missing:,}")
        if self.views:
            out.append(f"saved views: {self.views:,} copied")
        if self.api_keys or self.refresh_tokens:
            out.append(
                f"API keys: {self.api_keys:,} copied or revoked, refresh tokens "
                f"{self.refresh_tokens:,}"
            )
        out.extend(f"note: {note}" for note in self.notes)
        for conflict in self.conflicts:
            out.append(f"conflict: {conflict.kind} {conflict.name}: {conflict.reason}")
        return out


class CopyProgress(Protocol):
    """Told how much there is to copy, then after each run how far the copy got."""

    def begin(self, runs: int, points: int) -> None: ...

    def advance(self, runs: int, points: int) -> None: ...


class NoProgress:
    """Progress told to no one."""

    def begin(self, runs: int, points: int) -> None:
        pass

    def advance(self, runs: int, points: int) -> None:
        pass
