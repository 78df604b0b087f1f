"""Fixtures shared by the client tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A git checkout on branch ``main`` with one empty commit whose message is ``msg``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@x",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@x",
        "HOME": str(tmp_path),
    }
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "msg"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo


@pytest.fixture
def remote_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote run's surroundings as a test sets them: the working directory (where the queue
    directory ``.despina/`` lands) is the test's, and no token or queue directory comes from the
    environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("DESPINA_API_TOKEN", "NEPTUNE_API_TOKEN", "DESPINA_LOG_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
