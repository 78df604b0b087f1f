"""Fixtures: one ``despina serve`` process per test module, with projects and tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import (
    FOREIGN_PROJECT,
    OTHER_PROJECT,
    PROJECT,
    ServerProcess,
    Tokens,
    mint,
)

from serving import serving_new_store


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A running server over a fresh home with projects ws/proj, ws/other, elsewhere/proj."""
    home = tmp_path_factory.mktemp("server") / "home"
    with serving_new_store(home, (PROJECT, OTHER_PROJECT, FOREIGN_PROJECT)) as proc:
        yield proc


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> Tokens:
    return Tokens(
        project=mint(server.home, server.url, project="proj", workspace="ws"),
        workspace=mint(server.home, server.url, project=None, workspace="ws"),
        other_project=mint(server.home, server.url, project="other", workspace="ws"),
        foreign=mint(server.home, server.url, project="proj", workspace="elsewhere"),
    )
