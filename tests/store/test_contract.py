"""The store contract (``despina.store.Store``) as every implementation must keep it; run over
the session's backend (``DESPINA_TEST_STORE``), like the rest of the suite."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from despina.errors import ProjectNotFound
from despina.store import Store


@pytest.fixture
def store(home: Path) -> Store:
    return Store.open(home)


def test_projects(store: Store) -> None:
    first = store.create_project("ws/alpha")
    assert store.project_id("ws/alpha") == first
    assert store.create_project("ws/alpha", exist_ok=True) == first
    assert store.project_id("ws/beta", create=True) != first
    assert store.list_projects() == ["ws/alpha", "ws/beta"]
    with pytest.raises(ProjectNotFound, match="ws/gamma"):
        store.project_id("ws/gamma")


def test_a_closed_store_can_be_used_again(store: Store) -> None:
    store.create_project("ws/p")
    store.close()
    assert store.list_projects() == ["ws/p"]
    store.close()


def test_transactions_commit_or_roll_back(store: Store) -> None:
    store.create_project("ws/p")
    with pytest.raises(RuntimeError), store.write() as conn:
        conn.execute("UPDATE projects SET description = ? WHERE name = ?", ("gone", "p"))
        raise RuntimeError("rolled back")
    with store.read() as conn:
        assert conn.execute("SELECT description FROM projects").fetchone()[0] == ""
    with store.write(durable=True) as conn:
        conn.execute("UPDATE projects SET description = ? WHERE name = ?", ("kept", "p"))
    store.sync()
    with store.read() as conn:
        assert conn.execute("SELECT description FROM projects").fetchone()[0] == "kept"


def test_server_secrets_are_shared_and_first_wins(home: Path) -> None:
    one, two = Store.open(home), Store.open(home)
    assert one.server_secret("k", b"first") == b"first"
    assert two.server_secret("k", b"second") == b"first"
    one.close()
    two.close()


def test_a_job_lease_is_held_by_one_at_a_time(home: Path) -> None:
    one, two = Store.open(home), Store.open(home)
    inside = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def hold() -> None:
        with one.job_lease("purge") as held:
            seen.append(held)
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    with two.job_lease("purge") as other:
        assert other is False  # someone else runs it
    release.set()
    holder.join(10)
    with two.job_lease("purge") as again:
        assert again is True
    assert seen == [True]
    one.close()
    two.close()
