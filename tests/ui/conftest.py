"""Fixtures of the web UI tests: one demo home and one ``despina serve`` per test module, and
headless Chromium for the browser tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from ui_helpers import CHROMIUM_ARGS, ServerProcess, Tokens, chromium_path, mint, serve_demo


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server over the small demo (no token in the home: it prints a sign-in link)."""
    proc = serve_demo(tmp_path_factory.mktemp("ui") / "home")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> Tokens:
    return Tokens(
        workspace=mint(server.home, server.url, workspace="demo"),
        other_project=mint(server.home, server.url, workspace="demo", project="other"),
        foreign=mint(server.home, server.url, workspace="elsewhere"),
    )


def _unavailable(reason: str) -> None:
    if os.environ.get("DESPINA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DESPINA_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright: skips without it, or fails under
    ``DESPINA_REQUIRE_BROWSER=1`` (set by CI)."""
    if os.environ.get("DESPINA_TEST_STORE") == "postgresql":
        # the pages' JavaScript does not depend on the store, and the JSON routes it calls are
        # tested over PostgreSQL by the API tests: the browser tests run once, on the embedded
        # store, which keeps `make test` well under 15 minutes on two cores
        pytest.skip("browser tests run once, over the embedded store")
    executable = chromium_path()
    if executable is None:
        _unavailable("no Chromium found (install it: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
