"""The store's shared read SQL for the query service, written once for both databases.

Each module answers one kind of read with functions of typed arguments and documented return
shapes; the query service (``despina.query``) calls them inside its read transaction and never
holds SQL itself:

* :mod:`~despina.store.sql.attribute_columns`: ``attributes`` rows of many runs as NumPy columns
  (tables, attribute lists, series listings);
* :mod:`~despina.store.sql.attribute_reads`: attribute values, definitions and ``sys/`` values of
  runs for the batch API;
* :mod:`~despina.store.sql.table_reads`: run search (one project or many), run lookups by
  identifier, the tables of ``despina.init_project``;
* :mod:`~despina.store.sql.series_reads`: lineages of forked runs, series ids, float-series
  chunks (bounds, blobs, or whole series decoded at once) and previews, the points of string,
  histogram and file series;
* :mod:`~despina.store.sql.bucket_reads`: chunk statistics and blobs for metric buckets.

Statements are in SQLite's spelling (``?`` placeholders, ``json_each`` lists);
:mod:`despina.store.postgres.dialect` translates them. Where PostgreSQL needs another shape to be
fast (it pays per row fetched, so rows are aggregated per run on the server), a function branches
on :func:`dialect_of`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from despina.store.contract import Dialect

__all__ = ["c_collation", "dialect_of"]


def dialect_of(conn: Any) -> Dialect:
    """Which database a connection handed out by the store talks to."""
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgresql"


def c_collation(conn: Any) -> str:
    """`` COLLATE "C"`` on PostgreSQL (empty on SQLite, whose text order is already binary):
    text ordered by code point, as Python orders ``str``, whatever the database's locale."""
    return "" if dialect_of(conn) == "sqlite" else ' COLLATE "C"'
