"""Ingestion over HTTP with hand-built RunOperations: statuses, codes, re-sends, limits."""

from __future__ import annotations

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from neptune_api.proto.google_rpc.code_pb2 import Code
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
from neptune_api.proto.neptune_pb.ingest.v1.ingest_pb2 import IngestCode
from neptune_api.proto.neptune_pb.ingest.v1.pub.client_pb2 import (
    BulkRequestStatus,
    RequestId,
    RequestIdList,
    SubmitResponse,
)
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from server_helpers import PROJECT, ServerProcess, Tokens

from despina.store import Store


class Client:
    def __init__(self, server: ServerProcess, api_token: str) -> None:
        self.server = server
        answer = httpx.get(
            server.url + "/api/backend/v1/authorization/oauth-token",
            headers={"X-Neptune-Api-Token": api_token},
        )
        self.headers = {"Authorization": f"Bearer {answer.json()['accessToken']}"}

    def post(self, op: RunOperation | bytes) -> httpx.Response:
        body = op if isinstance(op, bytes) else op.SerializeToString()
        return httpx.post(
            self.server.url + "/api/client/v1/ingest",
            content=body,
            headers=self.headers,
            timeout=60,
        )

    def submit(self, op: RunOperation | bytes) -> str:
        response = self.post(op)
        assert response.status_code == 200, response.text
        answer = SubmitResponse.FromString(response.content)
        assert list(answer.request_ids) == [answer.request_id]
        return answer.request_id

    def check(self, ids: list[str], project: str = PROJECT) -> list[dict[str, tuple[int, int]]]:
        """Per id: {detail name: (code, count)} ('OK' for the OK entry)."""
        response = httpx.post(
            self.server.url + "/api/client/v1/ingest/check",
            params={"projectIdentifier": project},
            content=RequestIdList(ids=[RequestId(value=i) for i in ids]).SerializeToString(),
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        statuses = BulkRequestStatus.FromString(response.content).statuses
        assert len(statuses) == len(ids)
        out = []
        for status in statuses:
            entries = {}
            for entry in status.code_by_count:
                name = "OK" if entry.code == Code.OK else IngestCode.Name(entry.detail)
                entries[name] = (entry.code, entry.count)
            out.append(entries)
        return out

    def status(self, op: RunOperation | bytes) -> dict[str, tuple[int, int]]:
        return self.check([self.submit(op)])[0]


def create(run_id: str, **kwargs: object) -> RunOperation:
    return RunOperation(project=PROJECT, run_id=run_id, create=c.Run(run_id=run_id, **kwargs))


def update(run_id: str, *snapshots: c.UpdateRunSnapshot, project: str = PROJECT) -> RunOperation:
    return RunOperation(
        project=project,
        run_id=run_id,
        update_batch=c.UpdateRunSnapshots(snapshots=list(snapshots)),
    )


def snap(
    step: int | None = None, ts: int = 1_700_000_000, **maps: dict[str, c.Value]
) -> c.UpdateRunSnapshot:
    out = c.UpdateRunSnapshot(timestamp=Timestamp(seconds=ts))
    if step is not None:
        out.step.CopyFrom(c.Step(whole=step))
    for name, values in maps.items():
        for path, value in values.items():
            getattr(out, name)[path].CopyFrom(value)
    return out


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> Client:
    return Client(server, tokens.project)


def test_create_and_resend(client: Client) -> None:
    op = create("ing-1", experiment_id="exp-ing")
    first = client.submit(op)
    assert client.check([first]) == [{"OK": (Code.OK, 1)}]
    assert client.submit(op) == first  # identical bytes: the original answer
    again = client.status(create("ing-1", experiment_id="exp-ing", family="ing-1"))
    assert again["RUN_DUPLICATE"] == (Code.ALREADY_EXISTS, 1)
    conflict = client.status(create("ing-1", experiment_id="other-exp"))
    assert conflict["RUN_CONFLICTING"] == (Code.FAILED_PRECONDITION, 1)
    bad = client.status(create("a/b"))
    assert bad["RUN_INVALID_CREATION_PARAMETERS"][0] == Code.INVALID_ARGUMENT
    orphan = client.status(
        create(
            "ing-orphan",
            fork_point=c.ForkPoint(
                parent_project=PROJECT, parent_run_id="nope", step=c.Step(whole=3)
            ),
        )
    )
    assert orphan["RUN_FORK_PARENT_NOT_FOUND"][0] == Code.NOT_FOUND


def test_project_and_run_errors(client: Client) -> None:
    missing_run = client.status(update("never-created", snap(1, append={"m": c.Value(float64=1)})))
    assert missing_run["RUN_NOT_FOUND"][0] == Code.NOT_FOUND
    op = RunOperation(project="ws/missing", run_id="r", create=c.Run(run_id="r"))
    response = client.post(op)
    assert response.status_code == 403  # outside the project token's reach
    invalid = RunOperation(project="no slash", run_id="r", create=c.Run(run_id="r"))
    request_id = client.submit(invalid)
    assert client.check([request_id], project="no slash")[0]["PROJECT_INVALID_NAME"][0] == (
        Code.INVALID_ARGUMENT
    )


def test_missing_project_for_workspace_token(server: ServerProcess, tokens: Tokens) -> None:
    workspace = Client(server, tokens.workspace)
    op = RunOperation(project="ws/not-there", run_id="r", create=c.Run(run_id="r"))
    request_id = workspace.submit(op)
    status = workspace.check([request_id], project="ws/not-there")[0]
    assert status["PROJECT_NOT_FOUND"][0] == Code.NOT_FOUND


def test_item_rules(client: Client, server: ServerProcess) -> None:
    client.submit(create("ing-2"))
    status = client.status(
        update(
            "ing-2",
            snap(
                assign={
                    "cfg/x": c.Value(float64=1.0),
                    "cfg/s": c.Value(string="a"),
                    "sys/name": c.Value(string="hack"),
                }
            ),
            snap(1, append={"m": c.Value(float64=1.0), "bad": c.Value(int64=3)}),
            snap(2, append={"m": c.Value(float64=2.0), "cfg/x": c.Value(float64=5.0)}),
            snap(
                3,
                append={
                    "h": c.Value(
                        histogram=c.Histogram(
                            bin_edges=[1, 0], counts=c.Histogram.Counts(values=[1])
                        )
                    )
                },
            ),
        )
    )
    assert status["OK"] == (Code.OK, 4)
    assert status["FIELD_PATH_NON_WRITABLE"] == (Code.INVALID_ARGUMENT, 1)
    assert status["FIELD_TYPE_UNSUPPORTED"] == (Code.INVALID_ARGUMENT, 1)
    assert status["FIELD_TYPE_CONFLICTING"] == (Code.INVALID_ARGUMENT, 1)
    assert status["HISTOGRAM_BIN_EDGES_NOT_INCREASING"] == (Code.INVALID_ARGUMENT, 1)
    # a re-sent point is a duplicate (warning), a different value at an old step an error
    status = client.status(
        update(
            "ing-2",
            snap(2, ts=1_700_000_001, append={"m": c.Value(float64=2.0)}),
            snap(1, ts=1_700_000_002, append={"m": c.Value(float64=9.0)}),
        )
    )
    assert status["SERIES_POINT_DUPLICATE"] == (Code.ALREADY_EXISTS, 1)
    assert status["SERIES_STEP_NON_INCREASING"] == (Code.INVALID_ARGUMENT, 1)
    store = Store.open(server.home)
    try:
        rows = (
            store.connection()
            .execute(
                "SELECT a.path, a.count FROM attributes a JOIN runs r ON r.id = a.run_id "
                "WHERE r.run_id = 'ing-2' AND a.path = 'm'"
            )
            .fetchall()
        )
    finally:
        store.close()
    assert rows == [("m", 2)]


def test_status_check(client: Client) -> None:
    ids = [client.submit(create(f"ing-s{i}")) for i in range(3)]
    statuses = client.check([ids[2], "unknown-id", ids[0], ids[2]])
    assert statuses[0] == statuses[2] == statuses[3] == {"OK": (Code.OK, 1)}
    assert statuses[1] == {"INTERNAL": (Code.NOT_FOUND, 1)}
    too_many = httpx.post(
        client.server.url + "/api/client/v1/ingest/check",
        params={"projectIdentifier": PROJECT},
        content=RequestIdList(ids=[RequestId(value="x")] * 1001).SerializeToString(),
        headers=client.headers,
    )
    assert too_many.status_code == 400


def test_bad_bodies(client: Client) -> None:
    for body in (b"\xff\xff\xff", b"\x0a\x05ab", b"garbage" * 10):
        response = client.post(body)
        assert response.status_code == 400, body
        assert response.json()["code"] == 400
    empty = client.post(RunOperation(project=PROJECT, run_id="x"))
    assert empty.status_code == 400
    huge = client.post(b"\x00" * (33 * 1024 * 1024))
    assert huge.status_code == 413


def test_large_batch_is_applied(client: Client, server: ServerProcess) -> None:
    client.submit(create("ing-big"))
    names = [f"metrics/m{i}" for i in range(50)]
    snapshots = [
        snap(
            s, ts=1_700_000_000 + s, append={n: c.Value(float64=s + i) for i, n in enumerate(names)}
        )
        for s in range(2000)
    ]
    snapshots.insert(1000, snap(assign={"cfg/mid": c.Value(int64=7)}))
    status = client.status(update("ing-big", *snapshots))
    assert status == {"OK": (Code.OK, 100_001)}
    store = Store.open(server.home)
    try:
        counts = (
            store.connection()
            .execute(
                "SELECT COUNT(*), MIN(a.count), MAX(a.count), MAX(a.num) FROM attributes a "
                "JOIN runs r ON r.id = a.run_id "
                "WHERE r.run_id = 'ing-big' AND a.type = 'float_series'"
            )
            .fetchone()
        )
    finally:
        store.close()
    assert counts == (50, 2000, 2000, 1999 + 49)
