"""One store for the query tests, holding the §16 example, the seed runs and a rich project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import query_data as data

import despina.query as nq


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


@pytest.fixture()
def home(shared_home: tuple[Path, str]) -> Iterator[Path]:
    """The examples' store, read by ``despina.query`` during the test."""
    directory, location = shared_home
    nq.set_home(directory)
    nq.set_store(location)
    yield directory
    nq.set_store(None)
    nq.set_home(None)
