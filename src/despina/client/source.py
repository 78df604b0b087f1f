"""Source tracking: git facts about the code that is running, logged as configs (§8.2)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["SourceTrackingConfig", "source_configs"]


@dataclass(frozen=True)
class SourceTrackingConfig:
    """What to record about the source code (mirrors ``neptune_scale``'s config)."""

    namespace: str = "source_code"
    repository: str | Path | None = None
    upload_run_command: bool = True
    upload_entry_point: bool = False
    upload_diff_head: bool = False
    upload_diff_upstream: bool = False


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_configs(config: SourceTrackingConfig) -> dict[str, Any]:
    """Configs describing the git checkout we run from; empty outside a repository."""
    cwd = Path(config.repository) if config.repository else Path.cwd()
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top is None:
        return {}
    root = Path(top)
    ns = config.namespace
    out: dict[str, Any] = {}
    log = _git(root, "log", "-1", "--format=%H%x00%s%x00%an%x00%ae%x00%cI")
    if log:
        commit, message, author, email, date = (log.split("\x00") + [""] * 5)[:5]
        out[f"{ns}/commit/commit_id"] = commit
        out[f"{ns}/commit/message"] = message
        out[f"{ns}/commit/author_name"] = author
        out[f"{ns}/commit/author_email"] = email
        if date:
            out[f"{ns}/commit/commit_date"] = datetime.fromisoformat(date)
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch:
        out[f"{ns}/branch"] = branch
    for line in (_git(root, "remote", "-v") or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1] == "(fetch)":
            out[f"{ns}/remote/{parts[0]}"] = parts[1]
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        out[f"{ns}/dirty"] = bool(status)
    if config.upload_run_command:
        out[f"{ns}/run_command"] = " ".join([sys.executable, *sys.argv])
    return out
