"""despina sync: neptune-scale's offline queues loaded into the store."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import despina
from despina.cli import cli
from despina.errors import ConfigError
from despina.store import Store
from despina.sync import find_queues, sync_queue

neptune_scale = pytest.importorskip("neptune_scale")


def offline_run(directory: Path, run_id: str, first: int = 1, **kwargs: object) -> None:
    logging.getLogger("neptune").setLevel(logging.ERROR)
    with neptune_scale.Run(
        project="ws/offline",
        run_id=run_id,
        mode="offline",
        log_directory=directory,
        enable_console_log_capture=False,
        source_tracking_config=None,
        **kwargs,
    ) as run:
        run.log_configs({"lr": 0.1, "name": "baseline"})
        run.add_tags(["offline"])
        for step in range(first, 201):
            run.log_metrics({"loss": 1 / step, "acc": 1 - 1 / step}, step=step)
        run.log_string_series({"notes": "done"}, step=200)
        run.assign_files({"weights": b"0123456789"})


def test_offline_queues_are_loaded_and_removed(home: Path, tmp_path: Path) -> None:
    queues = tmp_path / "queues"
    offline_run(queues, "off-1", experiment_name="exp")
    offline_run(queues, "off-2", first=101, fork_run_id="off-1", fork_step=100)
    found = find_queues(queues)
    assert len(found) == 2
    result = CliRunner().invoke(cli, ["sync", str(queues)])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output and result.output.count("queue removed") == 2
    assert not find_queues_or_none(queues)
    table = despina.init_project("ws/offline").fetch_runs_table(
        columns=["sys/custom_run_id", "lr", "loss", "sys/tags", "sys/forking/parent", "weights"]
    )
    rows = {row["sys/custom_run_id"]: row for row in table.to_rows()}
    assert rows["off-1"]["lr"] == 0.1 and rows["off-1"]["loss"] == 1 / 200
    assert rows["off-1"]["sys/tags"] == "offline"
    assert rows["off-2"]["sys/forking/parent"] == "off-1"
    blobs = [p for p in (home / "blobs").rglob("*") if p.is_file()]
    assert any(p.read_bytes() == b"0123456789" for p in blobs)


def find_queues_or_none(path: Path) -> list[Path]:
    try:
        return find_queues(path)
    except ConfigError:
        return []


def test_syncing_twice_changes_nothing(home: Path, tmp_path: Path) -> None:
    queues = tmp_path / "queues"
    offline_run(queues, "again")
    (queue,) = find_queues(queues)
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(queue.read_bytes())
    store = Store.open(home)
    first = sync_queue(store, queue)
    assert first.deleted and first.operations > 0
    second = sync_queue(store, copy)
    assert {i.code for i in second.issues} <= {"RUN_DUPLICATE", "SERIES_POINT_DUPLICATE"}
    table = despina.init_project("ws/offline").fetch_runs_table(columns=["loss"]).to_rows()
    assert table == [{"loss": 1 / 200}]


def test_not_a_queue(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["sync", str(tmp_path)])
    assert result.exit_code == 1 and "no run_operations.sqlite3" in result.output
    bad = tmp_path / "x.sqlite3"
    bad.write_bytes(b"not a database at all")
    result = CliRunner().invoke(cli, ["sync", str(bad)])
    assert result.exit_code == 1 and "is not a run operations queue" in result.output


def add_upload(queue: Path, source: Path, destination: str, temporary: bool) -> None:
    conn = sqlite3.connect(queue)
    with conn:
        conn.execute(
            "INSERT INTO file_upload_requests"
            " (source_path, destination, mime_type, size_bytes, is_temporary)"
            " VALUES (?, ?, 'text/plain', 6, ?)",
            (str(source), destination, int(temporary)),
        )
    conn.close()


def stored_blobs(home: Path) -> list[bytes]:
    return [p.read_bytes() for p in (home / "blobs").rglob("*") if p.is_file()]


def test_files_outside_the_queue_directory_are_refused(home: Path, tmp_path: Path) -> None:
    """A queue naming a file outside its own directory (directly or through a link) cannot
    copy it into the store, nor delete it as temporary; the path is named in a warning."""
    queues = tmp_path / "queues"
    offline_run(queues, "outside")
    (queue,) = find_queues(queues)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"victim")
    link = queue.parent / "link.bin"
    link.symlink_to(secret)
    add_upload(queue, secret, "k/secret", temporary=False)
    add_upload(queue, victim, "k/victim", temporary=True)
    add_upload(queue, link, "k/link", temporary=True)
    result = CliRunner().invoke(cli, ["sync", str(queue)])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    for path in (secret, victim, link):
        assert f"file '{path}' is outside the queue's directory" in output
    assert victim.read_bytes() == b"victim" and secret.read_bytes() == b"secret"
    assert link.is_symlink()
    blobs = stored_blobs(home)
    assert b"0123456789" in blobs  # the queue's own temporary copy
    assert b"secret" not in blobs and b"victim" not in blobs
    assert queue.exists()  # the refused requests stay queued


def test_files_from_allows_a_directory(home: Path, tmp_path: Path) -> None:
    queues = tmp_path / "queues"
    offline_run(queues, "allowed")
    (queue,) = find_queues(queues)
    data = tmp_path / "data"
    data.mkdir()
    model = data / "model.txt"
    model.write_bytes(b"model!")
    add_upload(queue, model, "k/model", temporary=True)
    store = Store.open(home)
    result = sync_queue(store, queue, files_from=[data])
    assert result.refused_files == [] and result.deleted
    assert b"model!" in stored_blobs(home)
    assert model.exists()  # temporary, but outside the queue's directory: never deleted
