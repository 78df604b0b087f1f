"""Tables read earlier, answered again while nothing was written to the store.

A repeated table call (a notebook cell run again, a dashboard refreshing) would otherwise
search the runs, check every matched run's revision and regroup its cells each time, a fixed
cost that dominates at a few thousand runs. The store's read version
(:meth:`despina.store.Store.read_version`) tells that nothing was written since, by this
process or any other; the key holds the compiled filter (the evaluation time is among its
parameters when the filter depends on it, so such a table never matches again), the sort,
the limit and the attribute selection.

Entries are only read: callers build their frames (or wire answers) from them without
changing them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from despina.query.service import TableData

__all__ = ["MAX_CELLS", "MAX_ENTRIES", "TableMemo"]

MAX_ENTRIES = 8
"""Tables kept (least recently used dropped first)."""
MAX_CELLS = 2_000_000
"""Cells kept over every entry; a larger table is not kept (its read dwarfs the fixed cost)."""


class TableMemo:
    """The last tables read, per key, with the connection and read version they were read at;
    safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> (connection, read version, table, cells); the connection is held (not a weak
        # reference: sqlite3 connections have none) so that its identity is never reused
        self._entries: OrderedDict[Hashable, tuple[Any, Hashable, TableData, int]] = OrderedDict()

    def get(self, key: Hashable, conn: Any, version: Hashable) -> TableData | None:
        """The table kept for ``key`` if it was read on ``conn`` at ``version`` (``conn``
        ``None``: a store whose read versions hold in every connection)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not conn or entry[1] != version:
                return None
            self._entries.move_to_end(key)
            return entry[2]

    def put(self, key: Hashable, conn: Any, version: Hashable, table: TableData) -> None:
        """Keep ``table``, read on ``conn`` at ``version``, for ``key``."""
        cells = len(table.containers) + sum(len(c.rows) for c in table.columns)
        with self._lock:
            self._entries.pop(key, None)
            if cells > MAX_CELLS:
                return
            self._entries[key] = (conn, version, table, cells)
            total = sum(e[3] for e in self._entries.values())
            while len(self._entries) > MAX_ENTRIES or total > MAX_CELLS:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped[3]

    def clear(self) -> None:
        """Forget every table."""
        with self._lock:
            self._entries.clear()
