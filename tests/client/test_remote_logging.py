"""despina.Run with an API token against a real ``despina serve`` on 127.0.0.1: what it stores
equals in-process logging, nothing queued is lost (killed logger, restarted server, revoked
token) and nothing is applied twice."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import despina
import despina.query as dq
from despina.errors import AuthError, RunNotFound
from despina.server.auth import mint_api_token
from despina.store import Store
from despina.store.access import revoke_api_key
from despina.store.http.connection import TokenRefused
from despina.store.http.queue import find_log_queues
from despina.store.series import lineage, read_float_lineage
from despina.types import File
from serving import ServerProcess, free_port, mint, serving_new_store

pytestmark = pytest.mark.usefixtures("remote_env")

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}
PROJECTS = ("ws/remote", "ws/local")


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("remote") / "home"
    with serving_new_store(home, PROJECTS, extra_args=("--no-access-log",)) as proc:
        yield proc


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return mint(server.home, server.url, workspace="ws")


def _log_everything(run: despina.Run, files: Path) -> None:
    """One of every logging call, with values that need exact types."""
    when = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    run.log_configs(
        {
            "cfg/int": 2**62 + 1,
            "cfg/float": 0.1,
            "cfg/nan": math.nan,
            "cfg/inf": -math.inf,
            "cfg/bool": True,
            "cfg/str": "zażółć \U0001f600",
            "cfg/when": when,
            "cfg/set": ["b", "a"],
        }
    )
    run.add_tags(["x", "y"])
    run.remove_tags(["y"])
    for step in range(300):
        run.log_metrics({"m/a": step * 0.5, "m/b": -float(step)}, step=step)
    run.log_metrics({"m/a": math.nan, "m/c": math.inf}, step=300)
    run.log_metrics({"m/p": 1.0}, step=301, preview=True, preview_completion=0.5)
    run.log_string_series({"s/text": "hello"}, step=1)
    run.log_string_series({"s/text": "world"}, step=2)
    run.log_histograms({"h/x": despina.types.Histogram(bin_edges=[0, 1, 2], counts=[3, 4])}, step=1)
    (files / "model.txt").write_text("weights")
    run.assign_files({"f/model": files / "model.txt", "f/bytes": File(b"\x00raw", mime_type="x/y")})
    run.log_files({"fs/img": b"one"}, step=1)
    run.log_files({"fs/img": b"two"}, step=2)
    run.log_metrics({"m/a": 1.0}, step=0)  # not after the last step: refused alike


def _no_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """File cells as their size and type: storage keys hold a random part per logging call."""
    return frame.map(lambda v: repr(v) if type(v).__name__ == "File" else v)


def _frames(project: str) -> dict[str, pd.DataFrame]:
    table = dq.fetch_experiments_table(
        project=project, experiments=["exp"], attributes="^(cfg|m|s|h|f|fs)/|sys/tags"
    )
    return {
        "table": _no_keys(table),
        "metrics": dq.fetch_metrics(
            project=project, experiments=["exp"], attributes="^m/", include_point_previews=True
        ),
        "series": _no_keys(
            dq.fetch_series(project=project, experiments=["exp"], attributes="^(s|h|fs)/")
        ),
        "fork": dq.fetch_metrics(project=project, experiments=["fork"], attributes="^m/"),
    }


def test_remote_logging_stores_what_in_process_logging_stores(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    errors: dict[str, list[str]] = {"remote": [], "local": []}
    for target, project, extra in (
        ("remote", "ws/remote", {"api_token": token}),
        ("local", "ws/local", {"home": server.home}),
    ):

        def on_error(exc: BaseException, last: float | None, _t: str = target) -> None:
            errors[_t].append(type(exc).__name__)

        with despina.Run(
            project=project,
            run_id="r1",
            experiment_name="exp",
            on_error_callback=on_error,
            **extra,
            **QUIET,
        ) as run:
            _log_everything(run, tmp_path)
        with despina.Run(
            project=project,
            run_id="r2",
            experiment_name="fork",
            fork_run_id="r1",
            fork_step=100,
            **extra,
            **QUIET,
        ) as run:
            for step in range(101, 120):
                run.log_metrics({"m/a": float(step)}, step=step)
    assert errors["remote"] == errors["local"] != []
    assert not find_log_queues(tmp_path / ".despina")  # everything sent: the queues are gone
    dq.set_home(server.home)
    try:
        remote, local = _frames("ws/remote"), _frames("ws/local")
    finally:
        dq.set_home(None)
    for name in remote:
        pd.testing.assert_frame_equal(remote[name], local[name], check_like=False)
    assert len(remote["metrics"]) > 300
    assert len(remote["fork"]) > 100


KILLED = textwrap.dedent(
    """
    import sys, time, despina
    run = despina.Run(project="ws/remote", run_id=sys.argv[1], api_token=sys.argv[2],
                      log_directory=sys.argv[3], enable_console_log_capture=False,
                      source_tracking_config=None)
    step = 0
    while True:  # about 20,000 steps/s: a fast training loop, not a flood of the flusher
        run.log_metrics({"a": float(step), "b": -float(step)}, step=step)
        step += 1
        if step % 100 == 0:
            time.sleep(0.005)
        if step % 1000 == 0:
            print(step, flush=True)
    """
)


def _stored_steps(home: Path, project: str, run_id: str) -> list[float]:
    store = Store.open(home)
    try:
        conn = store.connection()
        (pk,) = conn.execute(
            "SELECT r.id FROM runs r JOIN projects p ON p.id = r.project_id "
            "WHERE p.workspace || '/' || p.name = ? AND r.run_id = ?",
            (project, run_id),
        ).fetchone()
        got = read_float_lineage(conn, lineage(conn, pk), "a")
        return (got.steps / 1e6).tolist()
    finally:
        store.close()


def test_a_killed_logger_loses_at_most_its_last_second_and_the_next_run_sends_the_rest(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    Store.open(home).create_project("ws/remote")
    server = ServerProcess(home, extra_args=("--no-access-log",))
    server.start()
    queues = tmp_path / "queues"
    try:
        token = mint(home, server.url, workspace="ws")
        server.stop()  # the logger starts while the server is down: everything stays queued
        script = tmp_path / "killed.py"
        script.write_text(KILLED)
        child = subprocess.Popen(
            [sys.executable, str(script), "victim", token, str(queues)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout is not None
        seen = 0
        while seen < 10_000:
            seen = int(child.stdout.readline())
        time.sleep(1.5)  # the guarantee: what was logged a second before the kill is queued
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert len(find_log_queues(queues)) == 1
        server.start()
        # the next run from the same directory sends the leftover in the background
        with despina.Run(
            project="ws/remote", run_id="next", api_token=token, log_directory=queues, **QUIET
        ) as run:
            run.log_metrics({"a": 1.0}, step=1)
        deadline = time.monotonic() + 30
        while find_log_queues(queues) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not find_log_queues(queues)
        steps = _stored_steps(home, "ws/remote", "victim")
        assert len(steps) >= seen
        assert steps == [float(i) for i in range(len(steps))]  # nothing doubled, nothing skipped
    finally:
        server.stop()


def test_a_server_restarted_mid_run_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Store.open(home).create_project("ws/remote")
    server = ServerProcess(home, extra_args=("--no-access-log",))
    server.start()
    lagging: list[float] = []
    network: list[str] = []
    try:
        token = mint(home, server.url, workspace="ws")
        run = despina.Run(
            project="ws/remote",
            run_id="steady",
            api_token=token,
            async_lag_threshold=0.5,
            on_async_lag_callback=lambda: lagging.append(time.monotonic()),
            on_network_error_callback=lambda exc, last: network.append(str(exc)),
            **QUIET,
        )
        for step in range(1000):
            run.log_metrics({"a": float(step)}, step=step)
        assert run.wait_for_processing(timeout=30)
        server.kill()
        for step in range(1000, 2000):  # never waits on the network
            run.log_metrics({"a": float(step)}, step=step)
        assert run.wait_for_submission(timeout=10)  # queued on disk
        time.sleep(2.5)
        server.start()
        run.close(timeout=60)
        assert _stored_steps(home, "ws/remote", "steady") == [float(i) for i in range(2000)]
        assert lagging and network
        assert str(server.url) in network[0]
    finally:
        server.stop()


def test_the_lag_callback_hears_of_a_server_down_while_close_waits(
    server: ServerProcess,
) -> None:
    # a token for a port where nothing listens: close() waits on a server that never answers
    down = mint(server.home, f"http://127.0.0.1:{free_port()}", workspace="ws")
    lagging: list[float] = []
    run = despina.Run(
        project="ws/remote",
        run_id="lag-at-close",
        api_token=down,
        async_lag_threshold=0.5,
        on_async_lag_callback=lambda: lagging.append(time.monotonic()),
        on_network_error_callback=lambda exc, last: None,
        on_warning_callback=lambda exc, last: None,
        **QUIET,
    )
    run.log_metrics({"a": 1.0}, step=0)
    run.close(timeout=5)
    assert lagging  # as neptune-scale's lag tracker, which runs until close() stops waiting


def test_a_wrong_token_raises_at_creation_naming_the_server(
    server: ServerProcess, tmp_path: Path
) -> None:
    # a key this server never minted (one of another server, or made up)
    payload = {"api_url": server.url, "api_key": "k" * 16 + ".not-a-secret-of-this-server"}
    foreign = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(TokenRefused, match=server.url):
        despina.Run(project="ws/remote", api_token=foreign, **QUIET)
    assert not find_log_queues(tmp_path / ".despina")  # nothing was logged: nothing stays


def test_a_revoked_token_keeps_the_queue_and_sync_sends_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    store = Store.open(server.home)
    token, key = mint_api_token(store, url=server.url, workspace="ws")
    good = mint(server.home, server.url, workspace="ws")
    network: list[BaseException] = []
    run = despina.Run(
        project="ws/remote",
        run_id="revoked",
        api_token=token,
        on_network_error_callback=lambda exc, last: network.append(exc),
        **QUIET,
    )
    run.log_metrics({"a": 0.0}, step=0)
    assert run.wait_for_processing(timeout=30)
    revoke_api_key(store, key.key_id)
    store.close()
    for step in range(1, 100):
        run.log_metrics({"a": float(step)}, step=step)
    run.close(timeout=3)
    assert network and "revoked" in str(network[0]) and server.url in str(network[0])
    left = find_log_queues(tmp_path / ".despina")
    assert len(left) == 1
    result = subprocess.run(
        [sys.executable, "-c", "from despina.cli import main; main()", "sync", str(left[0])],
        env={**os.environ, "DESPINA_API_TOKEN": good},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ws/remote / revoked" in result.stdout
    assert not find_log_queues(tmp_path / ".despina")
    assert _stored_steps(server.home, "ws/remote", "revoked") == [float(i) for i in range(100)]


def test_offline_mode_queues_and_sync_sends(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    with despina.Run(
        project="ws/remote", run_id="offline", api_token=token, mode="offline", **QUIET
    ) as run:
        run.log_metrics({"a": 1.0}, step=0)
        run.assign_files({"f": b"queued file"})
    (queue,) = find_log_queues(tmp_path / ".despina")
    result = subprocess.run(
        [sys.executable, "-c", "from despina.cli import main; main()", "sync", str(tmp_path)],
        env={**os.environ, "DESPINA_API_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not queue.exists()
    assert _stored_steps(server.home, "ws/remote", "offline") == [0.0]


def test_models_and_versions(server: ServerProcess, token: str) -> None:
    model = despina.init_model(key="NET", project="ws/remote", api_token=token)
    model.log_configs({"kind": "cnn"})
    model.close()
    version = despina.init_model_version(model=model.id, project="ws/remote", api_token=token)
    version.log_configs({"acc": 0.9})
    version.change_stage("production")
    version.close()
    again = despina.init_model_version(with_id=version.id, project="ws/remote", api_token=token)
    again.log_configs({"note": "reopened"})
    again.close()
    with pytest.raises(RunNotFound):
        despina.init_model_version(with_id="NOPE-1", project="ws/remote", api_token=token)
    project = despina.init_project(project="ws/remote", home=server.home)
    table = project.fetch_model_versions_table(model.id, columns=["acc", "note", "sys/stage"])
    frame = table.to_pandas()
    assert frame["sys/stage"].tolist() == ["production"]
    assert frame["acc"].tolist() == [0.9] and frame["note"].tolist() == ["reopened"]


def test_auth_error_class_is_kept() -> None:
    assert issubclass(TokenRefused, AuthError)


def test_a_batch_survives_encoding_exactly() -> None:
    import numpy as np

    from despina.store.batch import Assign, Batch, MetricColumn, ModifySet, PointAppend
    from despina.store.http.batches import decode_batch, encode_batch, split_batch

    steps = np.arange(5, dtype=np.int64) * 1_000_000
    stamps = steps // 1000 + 7
    values = np.array([0.0, -0.0, math.nan, math.inf, 2.0**-1074])
    batch = Batch(
        ops=[
            Assign("i", "int", 2**63 - 1),
            Assign("f", "float", 0.1),
            Assign("s", "string_set", frozenset({"a", "b"})),
            ModifySet("sys/tags", ["x"], ["y"]),
        ],
        metrics={
            "a": MetricColumn(steps, values, stamps),  # shared steps: sent once
            "b": MetricColumn(steps, values[::-1].copy(), stamps),
            "c": MetricColumn(steps[:2].copy(), values[:2].copy(), stamps[:2].copy()),
        },
        points=[PointAppend("t", "string_series", -1, 5, "\U0001f600")],
        blobs=[("key", "0" * 64, 3, "x/y")],
        first_types={"a": "float_series"},
    )
    for part_limit in (1000, 4):
        parts = [decode_batch(encode_batch(p)) for p in split_batch(batch, part_limit)]
        ops = [op for p in parts for op in p.ops]
        assert ops == batch.ops and type(ops[0].value) is int
        for key, column in batch.metrics.items():
            got = [p.metrics[key] for p in parts if key in p.metrics]
            for field in ("steps", "values", "timestamps"):
                joined = np.concatenate([getattr(g, field) for g in got])
                assert joined.tobytes() == np.asarray(getattr(column, field)).tobytes()
        assert [p.points for p in parts if p.points] == [batch.points]
    unshared = {
        k: MetricColumn(c.steps.copy(), c.values, c.timestamps.copy())
        for k, c in batch.metrics.items()
    }
    shared_size = len(encode_batch(Batch(metrics=batch.metrics)))
    assert shared_size < len(encode_batch(Batch(metrics=unshared)))


def test_which_store_a_run_uses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from despina.client.remote import remote_token

    assert remote_token(None) is None
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "from-neptune")
    assert remote_token(None) == "from-neptune"
    monkeypatch.setenv("DESPINA_API_TOKEN", "from-despina")
    assert remote_token(None) == "from-despina"
    assert remote_token(None, home=tmp_path) is None  # an explicit local store wins over the env
    assert remote_token(None, store=str(tmp_path)) is None
    assert remote_token("explicit", home=tmp_path) == "explicit"  # an explicit token wins
    from despina.query import api as query_api

    monkeypatch.setattr(query_api, "_api_token", None)
    monkeypatch.setattr(query_api, "_context", query_api._context)
    payload = {
        "api_address": "http://127.0.0.1:9",
        "api_url": "http://127.0.0.1:9",
        "api_key": "k.s",
    }
    set_token = base64.b64encode(json.dumps(payload).encode()).decode()
    dq.set_api_token(set_token)
    assert remote_token(None) == set_token  # set_api_token wins over the environment
    dq.set_home(tmp_path)
    try:
        assert remote_token(None) is None
    finally:
        dq.set_home(None)


def test_a_remote_close_packs_the_run_as_a_local_close_does(
    server: ServerProcess, token: str
) -> None:
    """The server's close route marks the run closed with the same store function, which packs
    its attribute rows (store/sql/attribute_packs.py)."""
    from despina.store.sql.attribute_columns import READ_STATS, read_columns

    configs = {f"cfg/p{i:03d}": i / 3 for i in range(80)}
    targets: list[tuple[str, dict[str, Any]]] = [
        ("ws/remote", {"api_token": token}),
        ("ws/local", {"home": server.home}),
    ]
    for project, extra in targets:
        with despina.Run(project=project, run_id="packed", **extra, **QUIET) as run:
            run.log_configs(configs)
    store = Store.open(server.home)
    try:
        with store.read() as conn:
            found = conn.execute(
                "SELECT r.id FROM runs r JOIN attribute_packs a ON a.run_id = r.id "
                "AND a.revision = r.revision AND a.uuid = r.uuid WHERE r.run_id = 'packed'"
            ).fetchall()
            pks = [int(pk) for (pk,) in found]
            assert len(pks) == 2
            before = READ_STATS.packs
            rows = read_columns(conn, pks, paths=list(configs))
            assert READ_STATS.packs - before == 2
            assert sorted(rows.num_f.tolist()) == sorted(list(configs.values()) * 2)
    finally:
        store.close()
