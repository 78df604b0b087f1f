"""The PostgreSQL store (PostgreSQL 15+, psycopg 3 and psycopg-pool): schema, migrations, and
opening a database from a ``postgresql://`` URL. See ``schema.py`` for how its tables differ from
the embedded store's and why."""

from __future__ import annotations

from despina.store.postgres.connection import PoolSettings, PostgresDatabase
from despina.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION, advisory_key

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PoolSettings", "PostgresDatabase", "advisory_key"]
