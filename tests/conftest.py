"""Shared fixtures: every test gets its own store directory and no inherited project settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# a real PostgreSQL cluster per session (fixtures postgres_cluster, postgres_url)
pytest_plugins = ("postgres_cluster",)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point DESPINA_HOME at a fresh directory and clear project/token variables."""
    home = tmp_path / "despina-home"
    monkeypatch.setenv("DESPINA_HOME", str(home))
    for name in (
        "DESPINA_PROJECT",
        "NEPTUNE_PROJECT",
        "NEPTUNE_API_TOKEN",
        "NEPTUNE_MODE",
        "NEPTUNE_LOG_FAILURE_ACTION",
    ):
        monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture
def home(isolated_env: Path) -> Path:
    """The store directory of this test."""
    return isolated_env
