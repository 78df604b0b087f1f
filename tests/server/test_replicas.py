"""Two ``despina serve`` replicas over one PostgreSQL database are interchangeable.

Each test starts two real server processes on 127.0.0.1 (each with its own home, sharing the
database and a blob directory) and checks, with the official clients where they can say it:
what one replica ingests, the other serves; a token works on both, and its revocation on both
at once; the same operation sent to both at once is applied once; a replica killed with
SIGKILL while neptune-scale sends through a load balancer (a failover proxy here) loses no point
and doubles none.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
from neptune_api.proto.neptune_pb.ingest.v1.pub.client_pb2 import SubmitResponse
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from server_helpers import PROJECT, ServerProcess, run_logging_script

from despina.server.auth import mint_api_token
from despina.server.ui.session import SignInCodes, operator_key
from despina.store import Store
from despina.store.access import revoke_api_key

nq = pytest.importorskip("neptune_query")
nq_runs = pytest.importorskip("neptune_query.runs")

TOKEN_PATH = "/api/backend/v1/authorization/oauth-token"
INGEST_PATH = "/api/client/v1/ingest"
PROJECTS_PATH = "/api/backend/v1/projects/get"


@dataclass
class Replicas:
    store_url: str
    a: ServerProcess
    b: ServerProcess

    def mint(self, server: ServerProcess) -> tuple[str, str]:
        """``(API token addressed to server, key id)``, minted in the shared store."""
        store = Store.open(self.a.home.parent / "minting", url=self.store_url)
        try:
            token, key = mint_api_token(
                store, url=server.url, workspace="ws", project="proj", username="tester"
            )
        finally:
            store.close()
        return token, key.key_id


def addressed_to(token: str, url: str) -> str:
    """The same API key, addressed to another replica (what a load balancer's URL would be)."""
    data = json.loads(base64.b64decode(token))
    data.update(api_address=url, api_url=url)
    return base64.b64encode(json.dumps(data).encode()).decode()


def _replica(root: Path, name: str, store_url: str, blobs: Path) -> ServerProcess:
    (root / name).mkdir()
    return ServerProcess(
        root / name / "home",
        extra_args=("--store", store_url, "--blobs", str(blobs), "--no-sign-in-link"),
    )


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[Replicas]:
    store = Store.open(tmp_path / "setup", url=postgres_url)
    store.create_project(PROJECT)
    store.close()
    blobs = tmp_path / "blobs"  # shared, as S3 or a mounted directory would be
    a = _replica(tmp_path, "a", postgres_url, blobs)
    b = _replica(tmp_path, "b", postgres_url, blobs)
    a.start()
    b.start()
    try:
        yield Replicas(postgres_url, a, b)
    finally:
        a.stop()
        b.stop()


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- the official clients: log through one, read through the other ----------------------------

LOGGING = """
from neptune_scale import Run
from neptune_scale.types import File

with Run(run_id="shared", experiment_name="exp", enable_console_log_capture=False,
         source_tracking_config=None) as run:
    run.log_configs({"params/lr": 0.25, "params/name": "adam", "params/layers": 4})
    run.add_tags(["replicated"])
    for step in range(1, 301):
        run.log_metrics({"metrics/loss": 1.0 / step, "metrics/acc": step / 300}, step=step)
    for step in range(1, 4):
        run.log_string_series({"logs/text": f"line {step}"}, step=step)
    run.assign_files({"files/config": File(b"shared blob", mime_type="text/plain")})
"""


@pytest.mark.slow
def test_logged_through_one_replica_read_through_the_other(
    replicas: Replicas, tmp_path: Path
) -> None:
    token, _ = replicas.mint(replicas.a)
    run_logging_script(LOGGING, tmp_path, token)
    nq.set_api_token(addressed_to(token, replicas.b.url))
    table = nq_runs.fetch_runs_table(
        project=PROJECT,
        runs=["shared"],
        attributes=["params/lr", "params/name", "params/layers", "sys/tags"],
    )
    row = table.loc["shared"]
    assert row["params/lr"] == 0.25 and row["params/name"] == "adam"
    assert row["params/layers"] == 4 and set(row["sys/tags"]) == {"replicated"}
    metrics = nq_runs.fetch_metrics(
        project=PROJECT, runs=["shared"], attributes=["metrics/loss", "metrics/acc"]
    )
    assert len(metrics) == 300
    steps = np.arange(1, 301, dtype=float)
    assert metrics["metrics/loss"].to_numpy().tolist() == (1.0 / steps).tolist()
    assert metrics["metrics/acc"].to_numpy().tolist() == (steps / 300).tolist()
    series = nq_runs.fetch_series(project=PROJECT, runs=["shared"], attributes="logs/text")
    assert series["logs/text"].tolist() == ["line 1", "line 2", "line 3"]
    files = nq_runs.fetch_runs_table(project=PROJECT, runs=["shared"], attributes="files/config")
    downloaded = nq_runs.download_files(files=files, destination=tmp_path / "downloads")
    assert Path(downloaded.iloc[0, 0]).read_bytes() == b"shared blob"


# -- tokens: minted anywhere, valid everywhere, revoked everywhere at once ---------------------


def _exchange(server: ServerProcess, token: str) -> httpx.Response:
    return httpx.get(server.url + TOKEN_PATH, headers={"X-Neptune-Api-Token": token})


def _project(server: ServerProcess, access_token: str) -> int:
    return httpx.get(
        server.url + PROJECTS_PATH,
        params={"projectIdentifier": PROJECT},
        headers={"Authorization": f"Bearer {access_token}"},
    ).status_code


def test_a_token_works_on_every_replica_and_its_revocation_at_once(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    token, key_id = replicas.mint(a)
    from_a = _exchange(a, token)
    assert from_a.status_code == 200, from_a.text
    access = from_a.json()["accessToken"]
    assert _project(b, access) == 200  # signed by A, accepted by B: one signing key
    assert _project(a, access) == 200
    refreshed = httpx.post(
        b.url + "/auth/realms/neptune/protocol/openid-connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": from_a.json()["refreshToken"],
            "client_id": "neptune-client",
        },
    )
    assert refreshed.status_code == 200, refreshed.text  # A's refresh token, rotated by B
    assert _project(a, refreshed.json()["access_token"]) == 200
    assert _exchange(b, addressed_to(token, b.url)).status_code == 200

    store = Store.open(a.home, url=replicas.store_url)  # what 'despina token revoke' does
    try:
        assert revoke_api_key(store, key_id)
    finally:
        store.close()
    assert _project(b, access) == 401  # no waiting, no restart
    assert _project(a, access) == 401
    assert _exchange(b, token).status_code == 401


def test_the_cli_mints_a_token_both_replicas_take(replicas: Replicas) -> None:
    created = subprocess.run(
        [
            sys.executable,
            "-c",
            "from despina.cli import main; main()",
            "token",
            "create",
            "--store",
            replicas.store_url,
            "--project",
            PROJECT,
            "--url",
            replicas.a.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")},
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    for server in (replicas.a, replicas.b):
        answer = _exchange(server, addressed_to(token, server.url))
        assert answer.status_code == 200, answer.text


# -- the web UI: a session or a sign-in link of one replica works on the other -----------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def test_a_ui_session_and_a_sign_in_link_work_on_every_replica(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    token, _ = replicas.mint(a)
    # one cookie jar for 127.0.0.1, as a browser behind a load balancer has
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        form = browser.get(a.url + "/sign-in")
        signed = browser.post(
            a.url + "/sign-in",
            data={"token": token, "next": "/projects", "csrf": _csrf(form.text)},
        )
        assert signed.status_code == 303, signed.text
        assert browser.get(b.url + "/projects.json").status_code == 200
        page = browser.get(b.url + "/projects")  # a form of B, its CSRF token checked by A
        out = browser.post(a.url + "/sign-out", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303
        assert browser.get(b.url + "/projects.json").status_code == 401

    store = Store.open(a.home, url=replicas.store_url)
    try:
        code = SignInCodes(store).issue([operator_key(store, "operator").key_id])
    finally:
        store.close()
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        assert browser.get(b.url + f"/sign-in/link?code={code}").status_code == 303
        assert browser.get(a.url + "/projects.json").status_code == 200
    with httpx.Client(follow_redirects=False, timeout=30) as other:
        assert other.get(a.url + f"/sign-in/link?code={code}").status_code == 400  # used


# -- one operation sent to both replicas at once: applied once --------------------------------


def _session(server: ServerProcess, token: str) -> dict[str, str]:
    answer = _exchange(server, token)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['accessToken']}"}


def _batch(first: int, count: int) -> bytes:
    snapshots = []
    for step in range(first, first + count):
        snap = c.UpdateRunSnapshot(timestamp=Timestamp(seconds=1_700_000_000 + step))
        snap.step.CopyFrom(c.Step(whole=step))
        snap.append["metrics/x"].CopyFrom(c.Value(float64=step * 0.5))
        snap.append["logs/line"].CopyFrom(c.Value(string=f"line {step}"))
        snapshots.append(snap)
    op = RunOperation(
        project=PROJECT, run_id="raced", update_batch=c.UpdateRunSnapshots(snapshots=snapshots)
    )
    return op.SerializeToString()


def test_the_same_operation_sent_to_both_replicas_at_once_is_applied_once(
    replicas: Replicas,
) -> None:
    token, _ = replicas.mint(replicas.a)
    targets = [
        (replicas.a.url, _session(replicas.a, token)),
        (replicas.b.url, _session(replicas.b, token)),
    ]
    create = RunOperation(project=PROJECT, run_id="raced", create=c.Run(run_id="raced"))

    def send(target: tuple[str, dict[str, str]], body: bytes) -> str:
        url, headers = target
        answer = httpx.post(url + INGEST_PATH, content=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        return SubmitResponse.FromString(answer.content).request_id

    batches, size = 10, 1000  # big enough that the two transactions overlap
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(send, targets, [create.SerializeToString()] * 2))
        assert ids[0] == ids[1] or all(ids)
        for n in range(batches):
            body = _batch(1 + n * size, size)
            barrier = threading.Barrier(2)

            def racing(
                target: tuple[str, dict[str, str]],
                body: bytes = body,
                barrier: threading.Barrier = barrier,
            ) -> str:
                barrier.wait(10)
                return send(target, body)

            answered = list(pool.map(racing, targets))
            assert answered[0] == answered[1]  # one application, one request id
    store = Store.open(replicas.a.home, url=replicas.store_url)
    try:
        with store.read() as conn:
            (count,) = conn.execute(
                "SELECT a.count FROM attributes a JOIN runs r ON r.id = a.run_id "
                "WHERE r.run_id = 'raced' AND a.path = 'metrics/x'"
            ).fetchone()
            lines = conn.execute(
                "SELECT p.step, p.value FROM points p JOIN attributes a ON a.id = p.attr_id "
                "JOIN runs r ON r.id = a.run_id WHERE r.run_id = 'raced' "
                "AND a.path = 'logs/line' ORDER BY p.step"
            ).fetchall()
    finally:
        store.close()
    total = batches * size
    assert int(count) == total
    assert lines == [(s * 1_000_000, f"line {s}") for s in range(1, total + 1)]
    nq.set_api_token(addressed_to(token, replicas.b.url))
    metrics = nq_runs.fetch_metrics(project=PROJECT, runs=["raced"], attributes="metrics/x")
    assert metrics["metrics/x"].tolist() == [s * 0.5 for s in range(1, total + 1)]


# -- SIGKILL of a replica while neptune-scale sends through a load balancer ---------------------


class FailoverProxy:
    """A TCP forwarder on 127.0.0.1: each new connection goes to the first replica that accepts
    it, as a load balancer with health checks would send it (the simplest such balancer)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections: dict[int, int] = dict.fromkeys(ports, 0)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        for port in self.ports:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            upstream.settimeout(None)
            self.connections[port] += 1
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            self._pump(client, upstream)
            return
        client.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:  # one side gone (a killed replica): drop both, the client resends
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


METRICS = 10
STEPS = 2000

SENDER = textwrap.dedent(
    f"""
    import time
    from neptune_scale import Run

    def main():
        with Run(run_id="failover", enable_console_log_capture=False,
                 source_tracking_config=None) as run:
            run.log_configs({{"cfg/steps": {STEPS}}})
            names = [f"metrics/m{{j}}" for j in range({METRICS})]
            for step in range({STEPS}):
                run.log_metrics({{n: step * 1000 + j for j, n in enumerate(names)}}, step=step)
                run.log_string_series({{"log/line": f"line {{step}}"}}, step=step)
                if step % 50 == 0:
                    time.sleep(0.05)

    if __name__ == "__main__":
        main()
    """
)


def _float_points(store_url: str, home: Path) -> int:
    store = Store.open(home, url=store_url)
    try:
        with store.read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(a.count), 0) FROM attributes a JOIN runs r "
                "ON r.id = a.run_id WHERE r.run_id = 'failover' AND a.type = 'float_series'"
            ).fetchone()
        return int(row[0])
    finally:
        store.close()


@pytest.mark.slow
def test_a_replica_killed_mid_ingest_loses_nothing_and_doubles_nothing(
    replicas: Replicas, tmp_path: Path
) -> None:
    a, b = replicas.a, replicas.b
    proxy = FailoverProxy([a.port, b.port])
    token, _ = replicas.mint(a)
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")}
    env.update(NEPTUNE_API_TOKEN=addressed_to(token, proxy.url), NEPTUNE_PROJECT=PROJECT)
    sender = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    probe = tmp_path / "probe"
    try:
        deadline = time.monotonic() + 60
        while _float_points(replicas.store_url, probe) == 0:
            assert time.monotonic() < deadline, "no points arrived"
            assert sender.poll() is None, sender.communicate()[0]
            time.sleep(0.05)
        a.kill()  # mid-ingest: the proxy sends the resends and what follows to B
        killed_at = _float_points(replicas.store_url, probe)
        deadline = time.monotonic() + 60
        while _float_points(replicas.store_url, probe) == killed_at:
            assert time.monotonic() < deadline, "nothing arrived through the other replica"
            assert sender.poll() is None, sender.communicate()[0]
            time.sleep(0.05)
        a.start()  # back: new connections go to A again
        output, _ = sender.communicate(timeout=240)
        assert sender.returncode == 0, output
    finally:
        if sender.poll() is None:
            sender.kill()
        proxy.close()
    assert 0 < killed_at < METRICS * STEPS, "the kill did not happen while sending"
    assert proxy.connections[b.port] > 0
    nq.set_api_token(addressed_to(token, b.url))
    metrics = nq_runs.fetch_metrics(
        project=PROJECT,
        runs=["failover"],
        attributes=[f"metrics/m{j}" for j in range(METRICS)],
    )
    assert len(metrics) == STEPS
    assert metrics.index.get_level_values("step").tolist() == list(map(float, range(STEPS)))
    for j in range(METRICS):
        assert metrics[f"metrics/m{j}"].tolist() == [s * 1000.0 + j for s in range(STEPS)]
    assert _float_points(replicas.store_url, probe) == METRICS * STEPS  # nothing doubled
    lines = nq_runs.fetch_series(project=PROJECT, runs=["failover"], attributes="log/line")
    assert lines["log/line"].tolist() == [f"line {s}" for s in range(STEPS)]
    assert lines.index.get_level_values("step").tolist() == list(map(float, range(STEPS)))


def test_a_replica_keeping_file_contents_on_its_own_disk_is_warned(
    postgres_url: str, tmp_path: Path
) -> None:
    (tmp_path / "lone").mkdir()
    lone = ServerProcess(
        tmp_path / "lone" / "home", extra_args=("--store", postgres_url, "--no-sign-in-link")
    )
    lone.start()
    try:
        assert "give every replica the same --blobs" in lone.log()
    finally:
        lone.stop()
