"""The two store backends side by side: an embedded store directory and a PostgreSQL database.

PostgreSQL comes from ``DESPINA_BENCH_POSTGRES`` (a server URL whose user may create databases)
or, without it, from a throwaway cluster started on 127.0.0.1 the way the tests start theirs
(``tests/postgres_cluster.py``: Debian's PostgreSQL 15, fsync on here, since write costs are
measured). Each benchmark gets a new database.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["backends", "postgres_database"]

_cluster: Any = None
_numbers = itertools.count(1)


def _server_url() -> str:
    global _cluster
    given = os.environ.get("DESPINA_BENCH_POSTGRES")
    if given:
        return given
    if _cluster is None:
        tests = Path(__file__).resolve().parent.parent / "tests"
        sys.path.insert(0, str(tests))
        from postgres_cluster import PostgresCluster

        _cluster = PostgresCluster.start(fsync=True)
    return str(_cluster.url("postgres"))


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new empty database (dropped afterwards), as a URL."""
    import psycopg

    server = _server_url()
    name = f"bench_{prefix}_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = server.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@contextlib.contextmanager
def backends(workdir: Path, prefix: str) -> Iterator[list[tuple[str, str]]]:
    """``[("sqlite", dir), ("postgresql", url)]``: one new store of each kind."""
    with postgres_database(prefix) as url:
        yield [("sqlite", str(workdir / f"{prefix}-sqlite")), ("postgresql", url)]
