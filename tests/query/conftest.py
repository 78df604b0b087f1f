"""One store for the query tests, holding the §16 example, the seed runs and a rich project.

``DESPINA_TEST_REMOTE=1`` runs the tests that read the shared store through a real
``despina serve`` over it: the ``home`` fixture sets an API token for that server instead of
choosing the store with ``set_home``/``set_store``, so every ``despina.query`` call goes over
HTTP. Tests that read a store of their own, or look inside the local snapshot, run only in the
local pass (marked ``local_only``, or without the ``home`` fixture).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import query_data as data

import despina.query as nq
from despina.query import api
from despina.query.service import QueryService
from serving import ServerProcess

REMOTE = os.environ.get("DESPINA_TEST_REMOTE", "") == "1"
"""Whether this pass reads the shared store through a server."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "local_only: reads the in-process store itself; not run with DESPINA_TEST_REMOTE"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not REMOTE:
        return
    for item in items:
        if "tests/query/" not in str(item.path).replace(os.sep, "/"):
            continue
        marker = item.get_closest_marker("local_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else "reads the in-process store itself"
            item.add_marker(pytest.mark.skip(reason=f"local only: {reason}"))
        elif "home" not in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason="local only: does not read the shared store"))


@pytest.fixture(scope="session")
def shared_home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """The store of the examples: its directory and its location (the directory, or a
    PostgreSQL database of its own with ``DESPINA_TEST_STORE=postgresql``)."""
    home = tmp_path_factory.mktemp("query-store")
    with data.shared_store(request, home) as location:
        with data.logging_into(location):
            data.log_example(home)
            data.log_seed(home)
            data.log_rich(home)
        yield home, location


@pytest.fixture(scope="session")
def query_server(shared_home: tuple[Path, str]) -> Iterator[tuple[ServerProcess, str]]:
    """A ``despina serve`` over the shared store and a token for its ``ws`` workspace."""
    directory, location = shared_home
    server = ServerProcess(directory, extra_args=("--store", location))
    server.start()
    try:
        yield server, data.mint_for(location, server.url)
    finally:
        server.stop()


@pytest.fixture()
def home(request: pytest.FixtureRequest, shared_home: tuple[Path, str]) -> Iterator[Path]:
    """The examples' store, read by ``despina.query`` during the test (through a server with
    ``DESPINA_TEST_REMOTE=1``)."""
    directory, location = shared_home
    if REMOTE:
        _, token = request.getfixturevalue("query_server")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(api, "_api_token", token)
            yield directory
        return
    nq.set_home(directory)
    nq.set_store(location)
    yield directory
    nq.set_store(None)
    nq.set_home(None)


@pytest.fixture()
def local_snapshot(
    shared_home: tuple[Path, str],
) -> Callable[[str], AbstractContextManager[Any]]:
    """Opens an in-process snapshot of the shared store (references read the server's data
    directly, whichever way the test's queries go)."""
    directory, location = shared_home

    def open_(project: str) -> AbstractContextManager[Any]:
        return QueryService.for_home(directory, url=location).snapshot(project)

    return open_
