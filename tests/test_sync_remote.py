"""despina sync with an API token: neptune-scale queues go to the server the token names (issue
#14), against a real ``despina serve`` on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result

import despina.query as dq
import despina.query.runs as dqr
import despina.sync
import despina.sync_server
from despina.cli import cli
from despina.errors import ConfigError
from despina.store import Store
from despina.store.http.connection import ServerUnreachable
from despina.sync import find_queues
from serving import ServerProcess, free_port, mint, serving_new_store

neptune_scale = pytest.importorskip("neptune_scale")

PROJECTS = ("ws/sent", "ws/loaded", "ws/down")
RUNS = ["r-1", "r-2"]


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("sync-remote") / "home"
    with serving_new_store(home, PROJECTS, extra_args=("--no-access-log",)) as proc:
        yield proc


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return mint(server.home, server.url, workspace="ws")


def offline_run(directory: Path, project: str, run_id: str, first: int = 1, **kwargs: Any) -> None:
    """A neptune-scale offline run: its queue stays under ``directory``."""
    logging.getLogger("neptune").setLevel(logging.ERROR)
    with neptune_scale.Run(
        project=project,
        run_id=run_id,
        mode="offline",
        log_directory=directory,
        enable_console_log_capture=False,
        source_tracking_config=None,
        **kwargs,
    ) as run:
        run.log_configs({"lr": 0.1, "name": "baseline", "epochs": 3, "on": True})
        run.add_tags(["offline", "queued"])
        run.remove_tags(["queued"])
        for step in range(first, 201):
            run.log_metrics({"loss": 1 / step, "acc": 1 - 1 / step}, step=step)
        run.log_metrics({"loss": 0.0}, step=201, preview=True, preview_completion=0.5)
        run.log_string_series({"notes": "half"}, step=150)
        run.log_string_series({"notes": "done"}, step=200)
        run.assign_files({"weights": b"0123456789"})


def two_runs(directory: Path, project: str) -> list[Path]:
    offline_run(directory, project, "r-1", experiment_name="exp")
    offline_run(directory, project, "r-2", first=101, fork_run_id="r-1", fork_step=100)
    return find_queues(directory)


def sync(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sync", *args])


def left(path: Path) -> list[Path]:
    try:
        return find_queues(path)
    except ConfigError:
        return []


def _no_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """File cells as their size and type: storage keys hold a random part per logging call."""
    return frame.map(lambda v: repr(v) if type(v).__name__ == "File" else v)


def _frames(project: str, downloads: Path) -> dict[str, Any]:
    table = dqr.fetch_runs_table(
        project=project,
        runs=RUNS,
        attributes=r"^(lr|name|epochs|on|loss|acc|notes|weights)$|^sys/(tags|forking|family)",
        sort_by="sys/custom_run_id",
        sort_direction="asc",
    )
    files = dqr.download_files(files=table["weights"], destination=downloads)
    return {
        "table": _no_keys(table),
        "metrics": dqr.fetch_metrics(
            project=project, runs=RUNS, attributes="^(loss|acc)$", include_point_previews=True
        ),
        "series": dqr.fetch_series(project=project, runs=RUNS, attributes="^notes$"),
        "files": sorted(Path(p).read_bytes() for p in files["weights"]),
    }


def test_queues_go_to_the_tokens_server_equal_to_a_local_sync(
    server: ServerProcess,
    token: str,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent, loaded = tmp_path / "sent", tmp_path / "loaded"
    assert len(two_runs(sent, "ws/sent")) == len(two_runs(loaded, "ws/loaded")) == 2
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token)  # as a user moving from Neptune has it

    def no_local_store(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a sync with a token opened a local store")

    with monkeypatch.context() as patch:
        patch.setattr(Store, "open", classmethod(no_local_store))
        result = sync(str(sent))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert output.count(f"sent to {server.url}; queue removed") == 2
    assert "error" not in output
    assert not left(sent)
    assert not home.exists()  # nothing local created (no ~/.despina)

    # --home with the token set: loaded into that store, as before (the server's own store)
    result = sync(str(loaded), "--home", str(server.home))
    assert result.exit_code == 0, result.output
    assert "sent to" not in result.output and result.output.count("queue removed") == 2
    assert not left(loaded)

    dq.set_home(server.home)
    try:
        remote = _frames("ws/sent", tmp_path / "dl-sent")
        local = _frames("ws/loaded", tmp_path / "dl-loaded")
    finally:
        dq.set_home(None)
    for name in ("table", "metrics", "series"):
        pd.testing.assert_frame_equal(remote[name], local[name])
    assert remote["files"] == local["files"] == [b"0123456789", b"0123456789"]
    assert len(remote["metrics"]) == 2 * 201  # steps 1-201 each (r-2 with its parent's first 100)
    assert remote["table"]["sys/forking/parent"].tolist()[1:] == ["r-1"]


def test_the_api_token_option_sends_and_store_loads_locally(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    queues = tmp_path / "queues"
    offline_run(queues, "ws/sent", "opt-1")
    result = sync(str(queues), "--api-token", token)
    assert result.exit_code == 0, result.output
    assert f"sent to {server.url}; queue removed" in " ".join(result.output.split())
    dq.set_home(server.home)
    try:
        assert "opt-1" in dqr.list_runs(project="ws/sent")
    finally:
        dq.set_home(None)
    # --store with the token: that store (last: --store names the store for the process)
    offline_run(queues, "ws/loaded", "opt-2")
    local = tmp_path / "local"
    result = sync(str(queues), "--api-token", token, "--store", str(local))
    assert result.exit_code == 0, result.output
    assert "sent to" not in result.output and not left(queues)
    assert dqr.list_runs(project="ws/loaded") == ["opt-2"]


def test_a_server_down_mid_send_keeps_the_queue_and_a_second_sync_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "server-home"
    with serving_new_store(home, ["ws/down"], extra_args=("--no-access-log",)) as server:
        token = mint(home, server.url, workspace="ws")
        queues = tmp_path / "queues"
        offline_run(queues, "ws/down", "cut")
        (queue,) = find_queues(queues)
        monkeypatch.setattr(despina.sync, "UNIT_OPERATIONS", 40)  # several batches
        original = despina.sync_server._Target.send_batch
        calls: list[str] = []

        def cut_off(self: Any, batch: Any, request: str, receipts: Any = None) -> Any:
            calls.append(request)
            answer = original(self, batch, request, receipts)
            if len(calls) == 3:  # applied and committed, but the answer never arrives
                server.kill()
                raise ServerUnreachable(f"server {server.url} (named by the API token) died")
            return answer

        monkeypatch.setattr(despina.sync_server._Target, "send_batch", cut_off)
        monkeypatch.setenv("DESPINA_API_TOKEN", token)
        result = sync(str(queues))
        assert result.exit_code == 1, result.output
        output = " ".join(result.output.split())
        assert f"queue kept in {queue}" in output and server.url in output
        assert f"despina sync {queue}" in output and "--home DIR / --store URL" in output
        assert queue.exists()

        monkeypatch.setattr(despina.sync_server._Target, "send_batch", original)
        server.start()
        result = sync(str(queues))
        assert result.exit_code == 0, result.output
        assert "queue removed" in result.output
        assert "DUPLICATE" not in result.output  # the resent batch was answered from its record
        assert not left(queues)
        dq.set_home(home)
        try:
            metrics = dqr.fetch_metrics(project="ws/down", runs=["cut"], attributes="^loss$")
            table = dqr.fetch_runs_table(project="ws/down", attributes="^(lr|notes|sys/tags)$")
        finally:
            dq.set_home(None)
        steps = metrics.index.get_level_values("step").tolist()
        assert steps == [float(s) for s in range(1, 201)]  # each once
        assert table["lr"].tolist() == [0.1] and table["sys/tags"].tolist() == [{"offline"}]


def test_a_wrong_token_names_the_server_and_touches_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    queues = tmp_path / "queues"
    offline_run(queues, "ws/sent", "refused")
    offline_run(queues, "ws/sent", "refused-too")
    queue, other = find_queues(queues)
    before = queue.read_bytes(), other.read_bytes()
    payload = {"api_url": server.url, "api_key": "k" * 16 + ".not-a-secret-of-this-server"}
    foreign = base64.b64encode(json.dumps(payload).encode()).decode()
    result = sync(str(queues), "--api-token", foreign)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"server {server.url} refused the API token" in output
    assert f"queue kept in {queue}" in output and "--home DIR / --store URL" in output
    assert f"1 more queue not sent (the same server): {other}" in output  # not tried
    assert (queue.read_bytes(), other.read_bytes()) == before

    nowhere = f"http://127.0.0.1:{free_port()}"
    down = mint(server.home, nowhere, workspace="ws")
    result = sync(str(queues), "--api-token", down)
    assert result.exit_code == 1, result.output
    assert f"server {nowhere} (named by the API token) did not answer" in " ".join(
        result.output.split()
    )
    assert (queue.read_bytes(), other.read_bytes()) == before


def test_a_project_missing_on_the_server_keeps_the_queue(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    queues = tmp_path / "queues"
    offline_run(queues, "ws/absent", "lost")
    result = sync(str(queues), "--api-token", token)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "'ws/absent' does not exist" in output and "despina project create ws/absent" in output
    assert len(left(queues)) == 1
