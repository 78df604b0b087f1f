"""One store for the query tests, holding the §16 example, the seed runs and a rich project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import query_data as data

import despina.query as nq


@pytest.fixture(scope="session")
def store_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("query-store")
    data.log_example(home)
    data.log_seed(home)
    data.log_rich(home)
    nq.set_home(home)
    yield home
    nq.set_home(None)


@pytest.fixture()
def home(store_home: Path) -> Path:
    nq.set_home(store_home)
    return store_home
