"""The server secret: kept in the store, the same for every process over it; an embedded store's
old ``server.key`` file is adopted once, so that what it signed stays valid."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from despina.server.auth import KEY_FILE, SERVER_SECRET, load_server_key
from despina.store import Store


def test_a_new_key_is_made_once_and_shared_by_every_opener(tmp_path: Path) -> None:
    first = Store.open(tmp_path / "home")
    second = Store.open(tmp_path / "home")
    try:
        key = load_server_key(first)
        assert len(key) == 32
        assert load_server_key(second) == key
        assert second.server_secret(SERVER_SECRET, make=b"x" * 32) == key
        assert not (first.home / KEY_FILE).exists()  # the store holds it, not the home
    finally:
        first.close()
        second.close()


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    stores = [Store.open(tmp_path / "home") for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            keys = set(pool.map(load_server_key, stores))
        assert len(keys) == 1
    finally:
        for store in stores:
            store.close()


@pytest.mark.sqlite_only
def test_an_embedded_stores_key_file_is_adopted_then_the_store_wins(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / KEY_FILE).write_text("ab" * 32 + "\n")
    store = Store.open(home)
    try:
        assert load_server_key(store) == bytes.fromhex("ab" * 32)
        (home / KEY_FILE).unlink()
        assert load_server_key(store) == bytes.fromhex("ab" * 32)
        (home / KEY_FILE).write_text("cd" * 32)  # a later file changes nothing
        assert load_server_key(store) == bytes.fromhex("ab" * 32)
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_a_damaged_key_file_is_left_out_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / KEY_FILE).write_text("not hex")
    store = Store.open(home)
    try:
        with caplog.at_level(logging.WARNING, logger="despina.server"):
            key = load_server_key(store)
        assert len(key) == 32
        assert "damaged" in caplog.text and KEY_FILE in caplog.text
        assert load_server_key(store) == key
    finally:
        store.close()


def test_a_postgresql_store_never_reads_a_replicas_home(postgres_url: str, tmp_path: Path) -> None:
    home = tmp_path / "replica"
    home.mkdir()
    (home / KEY_FILE).write_text("ab" * 32)
    store = Store.open(home, url=postgres_url)
    try:
        key = load_server_key(store)
        assert key != bytes.fromhex("ab" * 32) and len(key) == 32
    finally:
        store.close()
    other = Store.open(tmp_path / "other", url=postgres_url)
    try:
        assert load_server_key(other) == key
    finally:
        other.close()
