"""Fixtures of the web UI tests: one demo home and one ``despina serve`` per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ui_helpers import ServerProcess, Tokens, log_small_demo, mint

from despina.store.sqlite import Store


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server over the small demo (no token in the home: it prints a sign-in link)."""
    home = tmp_path_factory.mktemp("ui") / "home"
    log_small_demo(home)
    store = Store.open(home)
    store.create_project("demo/other")
    store.create_project("elsewhere/proj")
    store.close()
    proc = ServerProcess(home)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> Tokens:
    return Tokens(
        workspace=mint(server.home, server.url, workspace="demo"),
        other_project=mint(server.home, server.url, workspace="demo", project="other"),
        foreign=mint(server.home, server.url, workspace="elsewhere"),
    )
