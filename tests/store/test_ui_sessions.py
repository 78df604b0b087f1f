"""Web UI sessions in the store: hashed at rest, revocable, expiring, replaced on rotation."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from despina.store import Store
from despina.store.sessions import create_session, find_session, revoke_session


def test_a_session_is_found_by_its_id_and_stored_hashed(home: Path) -> None:
    store = Store.open(home)
    session_id = create_session(store, ["k1", "k2"], "ada", 3600)
    found = find_session(store, session_id)
    assert found is not None and found.is_live()
    assert found.key_ids == ("k1", "k2") and found.username == "ada"
    assert found.expires_ms - found.created_ms == 3600 * 1000
    rows = store.connection().execute("SELECT * FROM ui_sessions").fetchall()
    assert session_id not in repr(rows)
    assert rows[0][0] == hashlib.sha256(session_id.encode()).hexdigest()
    assert find_session(store, session_id + "x") is None
    assert find_session(store, "") is None
    assert find_session(store, "a" * 10_000) is None


def test_revoking_ends_a_session_once(home: Path) -> None:
    store = Store.open(home)
    session_id = create_session(store, ["k1"], "ada", 3600)
    other = create_session(store, ["k1"], "ada", 3600)
    assert revoke_session(store, session_id)
    found = find_session(store, session_id)
    assert found is not None and not found.is_live() and found.revoked_ms is not None
    assert not revoke_session(store, session_id)
    assert not revoke_session(store, "unknown")
    live = find_session(store, other)
    assert live is not None and live.is_live()


def test_a_replacing_session_revokes_the_one_it_replaces(home: Path) -> None:
    store = Store.open(home)
    first = create_session(store, ["k1"], "ada", 3600)
    second = create_session(store, ["k1", "k2"], "ada", 3600, replaces=first)
    old = find_session(store, first)
    assert old is not None and not old.is_live()
    new = find_session(store, second)
    assert new is not None and new.is_live()


def test_expired_sessions_stop_and_are_deleted(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(home)
    session_id = create_session(store, ["k1"], "ada", 60)
    found = find_session(store, session_id)
    assert found is not None
    assert not found.is_live(now_ms=found.expires_ms)
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    create_session(store, ["k2"], "bob", 60)  # sweeps the expired row
    assert find_session(store, session_id) is None
    assert store.connection().execute("SELECT count(*) FROM ui_sessions").fetchone()[0] == 1
