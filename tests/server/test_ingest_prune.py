"""Request statuses past their retention are pruned from the first applied operation on."""

from __future__ import annotations

from pathlib import Path

import pytest

from despina.server import ingest as ingest_module
from despina.server.ingest import IngestService
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import StoredStatus, save_request


def test_old_statuses_are_pruned_soon_after_the_machine_boots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "home")
    save_request(store, "old-request", 1, "run", "0" * 64, StoredStatus([]))
    with store.write() as conn:
        conn.execute("UPDATE ingest_requests SET created_ms = 0")
    # monotonic time counts from boot: a machine up for 100 s must prune too
    monkeypatch.setattr(ingest_module.time, "monotonic", lambda: 100.0)
    IngestService(store, ServerSettings())._maybe_prune()
    with store.read() as conn:
        assert conn.execute("SELECT count(*) FROM ingest_requests").fetchone()[0] == 0
    store.close()
