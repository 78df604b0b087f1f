"""The server secret file: created atomically, synced, private; a failed write leaves no key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from despina.errors import ConfigError
from despina.server.auth import KEY_FILE, load_server_key


def _fsynced_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_new_key_is_fsynced_with_its_directory_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _fsynced_paths(monkeypatch)
    old = os.umask(0)
    try:
        key = load_server_key(tmp_path)
    finally:
        os.umask(old)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32
    assert str(tmp_path) in synced  # the directory entry of the new name
    # the key's content was synced (under its temporary name, before it got its own)
    assert any(Path(p).name.startswith(f".{KEY_FILE}.") for p in synced)
    assert load_server_key(tmp_path) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]  # no temporary left


def test_a_write_that_fails_leaves_no_key_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(ConfigError, match="cannot write the server key"):
        load_server_key(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither a half-written key nor a temporary
    monkeypatch.undo()
    key = load_server_key(tmp_path)
    assert load_server_key(tmp_path) == key


def test_an_existing_key_is_kept(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("ab" * 32)
    assert load_server_key(tmp_path) == bytes.fromhex("ab" * 32)
