"""Over PostgreSQL, each home directory of an importer test is a store of its own.

The importer tests compare stores: an import into one home against an import into another, a
logged run against an imported one. On the embedded store each home is its own database; over
PostgreSQL (``DESPINA_TEST_STORE=postgresql``) every ``Store.open`` would land in the test's one
database. Here a home opened without a store URL gets a database of its own for the session
(the test's own home keeps the test's database), so the comparisons mean the same on both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from despina.config import resolve_home

_databases: dict[str, str] = {}
"""A home's absolute path -> the URL of its database, for the session (module fixtures keep
their store across tests)."""


@pytest.fixture(scope="module", autouse=True)
def database_per_home(request: pytest.FixtureRequest) -> Iterator[None]:
    if os.environ.get("DESPINA_TEST_STORE", "sqlite") != "postgresql":
        yield
        return
    cluster = request.getfixturevalue("postgres_cluster")
    import despina.client.stores as client_stores
    import despina.query.service as query_service
    import despina.store.opening as opening

    real = opening.resolve_store

    def resolve(home: str | os.PathLike[str] | None = None, *, url: Any = None) -> Any:
        if url in (None, ""):
            local = os.path.abspath(resolve_home(home))
            default = os.environ.get("DESPINA_HOME")
            if default and local == os.path.abspath(default) and os.environ.get("DESPINA_STORE"):
                url = os.environ["DESPINA_STORE"]  # the test's own home: the test's database
            else:
                if local not in _databases:
                    _databases[local] = cluster.create_database("home")
                url = _databases[local]
        return real(home, url=url)

    with pytest.MonkeyPatch.context() as patch:
        for module in (opening, client_stores, query_service):
            patch.setattr(module, "resolve_store", resolve)
        yield


@pytest.fixture(autouse=True)
def forget_closed_query_services() -> Iterator[None]:
    """The suite closes every PostgreSQL store a test opened; the query API keeps one service
    per store URL, so it forgets those of the homes' databases after each test."""
    yield
    if _databases:
        from despina.query.service import QueryService

        with QueryService._instances_lock:
            for url in _databases.values():
                QueryService._instances.pop(url, None)
