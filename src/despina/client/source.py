"""Source tracking: git facts about the code that is running, logged as configs (§8.2).

Asking git takes five subprocesses (tens of milliseconds), which a sweep of short runs would pay
per run and which would hold up every ``Run()``. The facts are looked up once per process and
repository directory, in a background thread started by the first run: the run logs them as
soon as they are known, and its ``close()`` (or ``wait_for_processing()``) waits for them, so
they are always stored. The code a process runs is the code it imported at start, so later
runs of the process share the first lookup (a commit made meanwhile is not the running code).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["GitLookup", "SourceTrackingConfig", "git_lookup", "source_configs"]

GIT_TIMEOUT = 5.0
"""Seconds each git call may take."""


@dataclass(frozen=True)
class SourceTrackingConfig:
    """What to record about the source code (mirrors ``neptune_scale``'s config)."""

    namespace: str = "source_code"
    repository: str | Path | None = None
    upload_run_command: bool = True
    upload_entry_point: bool = False
    upload_diff_head: bool = False
    upload_diff_upstream: bool = False


def _git_many(cwd: Path, *commands: tuple[str, ...]) -> list[str | None]:
    """Several git commands at once (each is mostly process start-up): their outputs."""
    procs: list[subprocess.Popen[str] | None] = []
    for args in commands:
        try:
            procs.append(
                subprocess.Popen(
                    ["git", *args],
                    cwd=cwd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
            )
        except OSError:
            procs.append(None)
    out: list[str | None] = []
    for proc in procs:
        if proc is None:
            out.append(None)
            continue
        try:
            stdout, _ = proc.communicate(timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out.append(None)
            continue
        out.append(stdout.strip() if proc.returncode == 0 else None)
    return out


def _maybe_in_checkout(cwd: Path) -> bool:
    """Whether ``cwd`` may be inside a git checkout (a ``.git`` above it, or git told where).

    A few ``stat`` calls instead of starting git where there is certainly no checkout.
    """
    if any(name in os.environ for name in ("GIT_DIR", "GIT_WORK_TREE")):
        return True
    try:
        here = cwd.resolve()
    except OSError:
        return True
    return any((folder / ".git").exists() for folder in (here, *here.parents))


def _git_facts(cwd: Path) -> dict[str, Any]:
    """The git facts of the checkout holding ``cwd``, without namespace; empty outside one."""
    if not _maybe_in_checkout(cwd):
        return {}
    # all at once from ``cwd`` (git finds the checkout from any directory inside it)
    top, log, branch, remotes, status = _git_many(
        cwd,
        ("rev-parse", "--show-toplevel"),
        ("log", "-1", "--format=%H%x00%s%x00%an%x00%ae%x00%cI"),
        ("rev-parse", "--abbrev-ref", "HEAD"),
        ("remote", "-v"),
        ("status", "--porcelain", "--untracked-files=no"),
    )
    if top is None:
        return {}
    out: dict[str, Any] = {}
    if log:
        commit, message, author, email, date = (log.split("\x00") + [""] * 5)[:5]
        out["commit/commit_id"] = commit
        out["commit/message"] = message
        out["commit/author_name"] = author
        out["commit/author_email"] = email
        if date:
            out["commit/commit_date"] = datetime.fromisoformat(date)
    if branch:
        out["branch"] = branch
    for line in (remotes or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1] == "(fetch)":
            out[f"remote/{parts[0]}"] = parts[1]
    if status is not None:
        out["dirty"] = bool(status)
    return out


class GitLookup:
    """The git facts of one directory, looked up in a background thread."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.pid = os.getpid()
        self.facts: dict[str, Any] = {}
        self.done = threading.Event()
        if _maybe_in_checkout(cwd):
            threading.Thread(target=self._run, name="despina-git", daemon=True).start()
        else:  # nothing to ask git: no thread, no subprocess
            self.done.set()

    def _run(self) -> None:
        try:
            self.facts = _git_facts(self.cwd)
        finally:
            self.done.set()

    def configs(self, config: SourceTrackingConfig) -> dict[str, Any]:
        """The configs for ``config`` (call once :attr:`done` is set)."""
        return _configs(self.facts, config)


_lookups: dict[str, GitLookup] = {}
_lookups_lock = threading.Lock()


def git_lookup(config: SourceTrackingConfig) -> GitLookup:
    """The lookup for ``config``'s directory, started on first use in this process."""
    cwd = Path(config.repository) if config.repository else Path(os.getcwd())
    key = os.path.abspath(cwd)
    with _lookups_lock:
        found = _lookups.get(key)
        # a forked child has no thread of its parent: a lookup still running there never ends
        if found is None or (found.pid != os.getpid() and not found.done.is_set()):
            found = GitLookup(cwd)
            _lookups[key] = found
        return found


def _configs(facts: dict[str, Any], config: SourceTrackingConfig) -> dict[str, Any]:
    if not facts:
        return {}
    ns = config.namespace
    out = {f"{ns}/{name}": value for name, value in facts.items()}
    if config.upload_run_command:
        out[f"{ns}/run_command"] = " ".join([sys.executable, *sys.argv])
    return out


def source_configs(config: SourceTrackingConfig) -> dict[str, Any]:
    """Configs describing the git checkout we run from; empty outside a repository."""
    lookup = git_lookup(config)
    lookup.done.wait()
    return lookup.configs(config)
