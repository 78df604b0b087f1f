"""The store: where projects, runs and everything logged to them live.

:class:`Store` is the contract (``store/contract.py``); :meth:`Store.open` picks the embedded
SQLite store (``store/sqlite.py``) or PostgreSQL (``store/postgres/``) from a store URL. See
docs/architecture.md.
"""

from __future__ import annotations

from despina.store.contract import Store

__all__ = ["Store"]
