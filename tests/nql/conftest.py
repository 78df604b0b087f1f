"""NQL tests run over the backend of the session (``DESPINA_TEST_STORE``): the embedded store, or
PostgreSQL with one database per test module, which the module's datasets share.

Most NQL tests (tokens, parser, resolver) open no store at all: this directory's
``store_backend`` replaces the suite's (a new database per test) with the module's database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nql_testdata import backend


@pytest.fixture(scope="module")
def nql_location(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Where this module's store is: a new directory, or a new PostgreSQL database's URL."""
    if backend() != "postgresql":
        yield str(tmp_path_factory.mktemp("nql-store"))
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database("nql")
    yield url
    cluster.drop_database(url)


@pytest.fixture(scope="module")
def nql_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local directory of this module's stores (blobs of the embedded store, caches)."""
    return tmp_path_factory.mktemp("nql-home")


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend of this test; over PostgreSQL every ``Store.open`` lands in the module's
    database."""
    if backend() != "postgresql":
        return "sqlite"
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("checks the embedded store itself")
    monkeypatch.setenv("DESPINA_STORE", request.getfixturevalue("nql_location"))
    return "postgresql"
