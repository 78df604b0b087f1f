"""The embedded store: SQLite in WAL mode with chunked series (see docs/architecture.md)."""

from __future__ import annotations

from despina.store.sqlite import Store

__all__ = ["Store"]
