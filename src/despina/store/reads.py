"""The read transaction that store functions for the server and the UI read through.

The query service opens one read transaction per request (its ``Snapshot``) so that everything a
page shows comes from one state of the store. The store's read functions take that transaction
as :class:`ProjectReads`; callers hand it on and never use its connection themselves.
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

__all__ = ["ProjectReads"]


class ProjectReads(Protocol):
    """A read transaction over one project (the query service's ``Snapshot`` is one).

    Attributes:
        conn: the store's connection inside the transaction; only store modules use it.
        project_id: the project's row id.
        now_ms: the transaction's clock (epoch ms) for relative times in NQL.
    """

    conn: sqlite3.Connection
    project_id: int
    now_ms: int
