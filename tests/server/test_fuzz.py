"""Malformed bodies on the ingest and retrieval endpoints never produce a 5xx (in-process app)."""

from __future__ import annotations

import collections
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neptune_api.proto.neptune_pb.api.v1.model.requests_pb2 import (
    ProtoCustomExpression,
    ProtoGetTimeseriesBucketsRequest,
    ProtoView,
)
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from serving import hold_store_writes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette prefers httpx2 over httpx; both work
    from starlette.testclient import TestClient

from despina.server.app import create_app
from despina.server.auth import mint_api_token
from despina.store import Store

PROJECT = "ws/fuzz"
RUN = f"{PROJECT}/FUZZ-1"
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_ROUTES = [
    ("/api/leaderboard/v1/proto/leaderboard/entries/search/", {"projectIdentifier": PROJECT}),
    ("/api/leaderboard/v1/proto/leaderboard/entries/global/search/", {}),
    ("/api/leaderboard/v1/leaderboard/attributes/definitions/query", {}),
    ("/api/leaderboard/v1/proto/leaderboard/attributes/query", {"projectIdentifier": PROJECT}),
    ("/api/leaderboard/v1/proto/attributes/series/float", {}),
    ("/api/leaderboard/v1/proto/attributes/series", {}),
    ("/api/storagebridge/v1/signedUrl", {}),
    ("/api/storagebridge/v1/s3/completeMultipartUpload", {}),
    ("/api/backend/v1/projects", {}),
]


@pytest.fixture(scope="module")
def client(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    store = Store.open(tmp_path_factory.mktemp("fuzz") / "home")
    store.create_project(PROJECT, key="FUZZ")
    token, _ = mint_api_token(store, url="http://testserver", workspace="ws")
    app = create_app(store)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        bearer = test_client.get(
            "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token}
        ).json()["accessToken"]
        headers = {"Authorization": f"Bearer {bearer}"}
        seed = [
            RunOperation(
                project=PROJECT, run_id="seed", create=c.Run(run_id="seed", experiment_id="e")
            ),
            RunOperation(
                project=PROJECT,
                run_id="seed",
                update_batch=c.UpdateRunSnapshots(
                    snapshots=[
                        c.UpdateRunSnapshot(
                            step=c.Step(whole=s),
                            timestamp=Timestamp(seconds=1_700_000_000 + s),
                            append={"m": c.Value(float64=s / 3), "s": c.Value(string=str(s))},
                        )
                        for s in range(1, 50)
                    ]
                ),
            ),
        ]
        for op in seed:
            assert (
                test_client.post(
                    "/api/client/v1/ingest", content=op.SerializeToString(), headers=headers
                ).status_code
                == 200
            )
        yield test_client, headers
    store.close()


STATUSES: collections.Counter[int] = collections.Counter()


def _ok(response: Any) -> None:
    STATUSES[response.status_code] += 1
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        body = response.json()
        assert body["code"] == response.status_code and isinstance(body["message"], str)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)

identifier = st.sampled_from(
    [
        RUN,
        f"CUSTOM/{PROJECT}/seed",
        "x",
        "",
        "CUSTOM/",
        f"{PROJECT}/",
        "ws/other/A-1",
        f"{PROJECT}/FUZZ-x",
        f"CUSTOM/{PROJECT}/a/b",
    ]
)
anything = json_values | identifier


@st.composite
def shaped_json(draw: st.DrawFn) -> Any:
    """Objects with the field names the endpoints read, holding values of any type."""
    series = {
        "holder": draw(
            st.dictionaries(st.sampled_from(["identifier", "type"]), anything) | anything
        ),
        "attribute": draw(st.sampled_from(["m", "s", "", "nope"]) | anything),
        "lineage": draw(st.sampled_from(["FULL", "NONE", "x"]) | anything),
        "lineageEntityType": draw(st.sampled_from(["EXPERIMENT", "RUN", 5]) | anything),
        "includePreview": draw(anything),
    }
    request = {
        "requestId": draw(st.text(max_size=5) | anything),
        "series": series if draw(st.booleans()) else draw(anything),
        "afterStep": draw(st.floats() | anything),
        "searchAfter": draw(
            st.dictionaries(st.sampled_from(["finished", "token"]), anything) | anything
        ),
    }
    keys = {
        "requests": st.lists(st.just(request), max_size=3) | anything,
        "stepRange": st.dictionaries(st.sampled_from(["from", "to"]), st.floats() | anything)
        | anything,
        "order": st.sampled_from(["ascending", "descending", "up"]) | anything,
        "perSeriesPointsLimit": st.integers(-5, 10**7) | st.floats() | anything,
        "projectIdentifiers": st.lists(st.sampled_from([PROJECT, "ws/none", "bad"]), max_size=3)
        | anything,
        "experimentIdsFilter": st.lists(identifier, max_size=3) | anything,
        "attributeNamesFilter": st.lists(st.sampled_from(["m", "s", "sys/id"]), max_size=3)
        | anything,
        "attributeNameFilter": st.fixed_dictionaries(
            {
                "mustMatchAny": st.lists(
                    st.fixed_dictionaries(
                        {
                            "mustMatchRegexes": st.lists(
                                st.sampled_from(["^m$", "(", "[", ".*", "^(a|b)$"]), max_size=2
                            )
                        }
                    ),
                    max_size=2,
                )
                | anything
            }
        )
        | anything,
        "attributeFilter": st.lists(
            st.fixed_dictionaries(
                {"attributeType": st.sampled_from(["floatSeries", "string", "bogus"]) | anything}
            ),
            max_size=2,
        )
        | anything,
        "nextPage": st.fixed_dictionaries(
            {
                "limit": st.integers(-3, 20000) | anything,
                "nextPageToken": st.sampled_from(["", "MQ", "!!", "LTE"]) | anything,
            }
        )
        | anything,
        "pagination": st.fixed_dictionaries(
            {"limit": st.integers(-3, 20000) | anything, "offset": st.integers(-3, 10) | anything}
        )
        | anything,
        "sorting": st.fixed_dictionaries(
            {
                "dir": st.sampled_from(["ascending", "descending", "x"]) | anything,
                "sortBy": st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(["sys/id", "m", "s"]) | anything,
                        "type": st.sampled_from(["string", "floatSeries", "int", "?"]) | anything,
                    }
                ),
                "aggregationMode": st.sampled_from(["last", "max", "variance", "z"]) | anything,
            }
        )
        | anything,
        "query": st.fixed_dictionaries(
            {
                "query": st.sampled_from(
                    ["`m`:floatSeries > 1", "((", '`sys/name`:string = "e"', "`m`:float > NaN", ""]
                )
                | anything
            }
        )
        | anything,
        "experimentLeader": anything,
        "attributeFilters": st.lists(st.fixed_dictionaries({"path": anything}), max_size=3)
        | anything,
        "files": st.lists(
            st.fixed_dictionaries(
                {
                    "path": st.sampled_from(["a/b", "../x", "", "/abs"]) | anything,
                    "permission": st.sampled_from(["read", "write", "exec"]) | anything,
                    "project_identifier": st.sampled_from([PROJECT, "ws/none"]) | anything,
                    "size": st.integers(-1, 2**40) | anything,
                }
            ),
            max_size=3,
        )
        | anything,
        "upload_id": st.sampled_from(["abc", "../x", ""]) | anything,
        "parts": st.lists(
            st.fixed_dictionaries({"part_number": anything, "etag": anything}), max_size=2
        )
        | anything,
        "organizationIdentifier": st.sampled_from(["ws", "other", ""]) | anything,
        "name": st.sampled_from(["p1", "bad name", ""]) | anything,
        "visibility": st.sampled_from(["priv", "pub", "x"]) | anything,
        "projectKey": st.sampled_from(["AB", "ab", ""]) | anything,
    }
    chosen = draw(st.lists(st.sampled_from(sorted(keys)), max_size=8, unique=True))
    return {key: draw(keys[key]) for key in chosen}


@FUZZ
@given(
    route=st.sampled_from(JSON_ROUTES),
    body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_json_routes_random_bodies(client: Any, route: Any, body: bytes) -> None:
    test_client, headers = client
    path, params = route
    _ok(test_client.post(path, params=params, content=body, headers=headers))


@FUZZ
@given(route=st.sampled_from(JSON_ROUTES), body=shaped_json())
def test_json_routes_shaped_bodies(client: Any, route: Any, body: Any) -> None:
    test_client, headers = client
    path, params = route
    _ok(test_client.post(path, params=params, content=json.dumps(body).encode(), headers=headers))


floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, 1e308])
values = st.one_of(
    floats.map(lambda f: c.Value(float64=f)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: c.Value(int64=i)),
    st.booleans().map(lambda b: c.Value(bool=b)),
    st.text(max_size=20).map(lambda s: c.Value(string=s)),
    st.integers(-(2**40), 2**40).map(lambda s: c.Value(timestamp=Timestamp(seconds=s))),
    st.lists(st.text(max_size=5), max_size=3).map(
        lambda v: c.Value(string_set=c.StringSet(values=v))
    ),
    st.builds(
        lambda p, n: c.Value(file_ref=c.FileRef(path=p, size_bytes=n, mime_type="x/y")),
        st.text(max_size=10),
        st.integers(-5, 2**40),
    ),
    st.builds(
        lambda e, v: c.Value(
            histogram=c.Histogram(bin_edges=e, counts=c.Histogram.Counts(values=v))
        ),
        st.lists(floats, max_size=5),
        st.lists(st.integers(0, 2**64 - 1), max_size=5),
    ),
    st.just(c.Value()),
)
paths = st.sampled_from(["m", "s", "cfg/a", "", "sys/tags", "sys/id", "x" * 1100]) | st.text(
    max_size=8
)


@st.composite
def snapshots(draw: st.DrawFn) -> c.UpdateRunSnapshot:
    snap = c.UpdateRunSnapshot()
    if draw(st.booleans()):
        snap.step.CopyFrom(
            c.Step(whole=draw(st.integers(0, 2**64 - 1)), micro=draw(st.integers(0, 2**64 - 1)))
        )
    if draw(st.booleans()):
        snap.timestamp.CopyFrom(
            Timestamp(
                seconds=draw(st.integers(-(2**50), 2**50)), nanos=draw(st.integers(-(10**9), 10**9))
            )
        )
    if draw(st.booleans()):
        snap.preview.CopyFrom(
            c.Preview(is_preview=draw(st.booleans()), completion_ratio=draw(floats))
        )
    for name in ("assign", "append"):
        for path, value in draw(st.dictionaries(paths, values, max_size=4)).items():
            getattr(snap, name)[path].CopyFrom(value)
    for path, ops in draw(
        st.dictionaries(
            paths,
            st.dictionaries(st.text(max_size=4), st.sampled_from([0, 1, 2, 7]), max_size=3),
            max_size=2,
        )
    ).items():
        snap.modify_sets[path].string.values.update(ops)
    return snap


@st.composite
def operations(draw: st.DrawFn) -> bytes:
    op = RunOperation(
        project=draw(st.sampled_from([PROJECT, "ws/none", "bad", ""])),
        run_id=draw(st.sampled_from(["seed", "fresh", "", "a/b"]) | st.text(max_size=5)),
    )
    kind = draw(st.sampled_from(["create", "update", "update_batch", "none"]))
    if kind == "create":
        op.create.CopyFrom(
            c.Run(
                run_id=draw(st.text(max_size=5)),
                experiment_id=draw(st.text(max_size=5)),
                family=draw(st.text(max_size=3)),
                creation_time=Timestamp(seconds=draw(st.integers(-(2**40), 2**40))),
            )
        )
        if draw(st.booleans()):
            op.create.fork_point.CopyFrom(
                c.ForkPoint(
                    parent_project=PROJECT,
                    parent_run_id=draw(st.sampled_from(["seed", "", "x"])),
                    step=c.Step(whole=draw(st.integers(0, 2**64 - 1))),
                )
            )
    elif kind == "update":
        op.update.CopyFrom(draw(snapshots()))
    elif kind == "update_batch":
        op.update_batch.snapshots.extend(draw(st.lists(snapshots(), max_size=4)))
    data = op.SerializeToString()
    mutation = draw(st.sampled_from(["none", "truncate", "flip"]))
    if mutation == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mutation == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


@FUZZ
@given(body=operations() | st.binary(max_size=300))
def test_ingest_bodies(client: Any, body: bytes) -> None:
    test_client, headers = client
    _ok(test_client.post("/api/client/v1/ingest", content=body, headers=headers))


@FUZZ
@given(body=st.binary(max_size=200), project=st.sampled_from([PROJECT, "", "bad", "ws/none"]))
def test_ingest_check_bodies(client: Any, body: bytes, project: str) -> None:
    test_client, headers = client
    _ok(
        test_client.post(
            "/api/client/v1/ingest/check",
            params={"projectIdentifier": project},
            content=body,
            headers=headers,
        )
    )


@st.composite
def bucket_requests(draw: st.DrawFn) -> bytes:
    request = ProtoGetTimeseriesBucketsRequest()
    for i in range(draw(st.integers(0, 3))):
        request.expressions.append(
            ProtoCustomExpression(
                requestId=str(i),
                runId=draw(identifier),
                customYFormula=draw(
                    st.sampled_from(["${m}", "${s}", "m", "${a\\}b}", "${", "$}{"])
                ),
                lineage=draw(st.sampled_from([0, 1, 7])),
                entityType=draw(st.sampled_from([0, 1, 9])),
                includePreview=draw(st.booleans()),
            )
        )
    view = ProtoView(maxBuckets=draw(st.integers(-5, 20000)), xScale=draw(st.sampled_from([0, 1])))
    if draw(st.booleans()):
        setattr(view, "from", draw(floats))
    if draw(st.booleans()):
        view.to = draw(floats)
    if draw(st.booleans()):
        view.xAxis.steps.SetInParent()
    if draw(st.booleans()):
        view.xAxis.epochMillis.SetInParent()
    request.view.CopyFrom(view)
    return request.SerializeToString()


@FUZZ
@given(body=bucket_requests() | st.binary(max_size=200))
def test_bucket_bodies(client: Any, body: bytes) -> None:
    test_client, headers = client
    _ok(
        test_client.post(
            "/api/leaderboard/v1/proto/attributes/timeseries/buckets", content=body, headers=headers
        )
    )


def test_one_bucket_over_a_range_is_a_clear_400(client: Any) -> None:
    """The bucket layout needs two edges: ``maxBuckets=1`` over a range once divided by zero."""
    test_client, headers = client

    def buckets(n: int) -> Any:
        request = ProtoGetTimeseriesBucketsRequest()
        request.expressions.append(
            ProtoCustomExpression(
                requestId="0", runId=f"CUSTOM/{PROJECT}/seed", customYFormula="${m}"
            )
        )
        request.view.CopyFrom(ProtoView(maxBuckets=n, to=40.0))
        setattr(request.view, "from", 1.0)
        return test_client.post(
            "/api/leaderboard/v1/proto/attributes/timeseries/buckets",
            content=request.SerializeToString(),
            headers=headers,
        )

    refused = buckets(1)
    assert refused.status_code == 400 and "maxBuckets" in refused.json()["message"]
    assert buckets(2).status_code == 200


def test_fuzzing_reached_both_outcomes() -> None:
    """The generators produce accepted requests as well as refused ones."""
    if not STATUSES:
        pytest.skip("run together with the fuzz tests")
    assert STATUSES[200] > 0 and sum(n for s, n in STATUSES.items() if 400 <= s < 500) > 0


def test_multipart_upload(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Uploads above the single-part limit go in parts and are joined on completion."""
    from despina.server.settings import ServerSettings

    store = Store.open(tmp_path_factory.mktemp("multipart") / "home")
    store.create_project(PROJECT)
    token, _ = mint_api_token(store, url="http://testserver", workspace="ws")
    app = create_app(store, ServerSettings(max_blob_bytes=10, multipart_part_bytes=4))
    with TestClient(app) as test_client:
        bearer = test_client.get(
            "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token}
        ).json()["accessToken"]
        headers = {"Authorization": f"Bearer {bearer}"}
        data = b"0123456789abcdef!"
        entry = {
            "path": "big/file.bin",
            "permission": "write",
            "project_identifier": PROJECT,
            "size": len(data),
        }
        signed = test_client.post(
            "/api/storagebridge/v1/signedUrl", json={"files": [entry]}, headers=headers
        ).json()["files"][0]
        multipart = signed["multipart"]
        assert multipart["part_size"] == 4 and len(multipart["part_urls"]) == 5
        etags = []
        for number, url in enumerate(multipart["part_urls"], start=1):
            part = data[(number - 1) * 4 : number * 4]
            answer = test_client.put(url, content=part, headers={"Content-Type": "x/y"})
            assert answer.status_code == 200 and answer.headers["ETag"]
            etags.append({"part_number": number, "etag": answer.headers["ETag"].strip('"')})
        incomplete = {
            "upload_id": multipart["upload_id"],
            "project_identifier": PROJECT,
            "path": "big/file.bin",
            "parts": [*etags, {"part_number": 6, "etag": "x"}],
        }
        assert (
            test_client.post(
                "/api/storagebridge/v1/s3/completeMultipartUpload", json=incomplete, headers=headers
            ).status_code
            == 400
        )
        done = test_client.post(
            "/api/storagebridge/v1/s3/completeMultipartUpload",
            json={**incomplete, "parts": etags},
            headers=headers,
        )
        assert done.status_code == 204
        read = test_client.post(
            "/api/storagebridge/v1/signedUrl",
            json={"files": [{**entry, "permission": "read"}]},
            headers=headers,
        ).json()["files"][0]["url"]
        got = test_client.get(read)
        assert got.content == data
        assert got.headers["content-type"] == "application/octet-stream"  # x/y is not safe

        # Two uploads that never complete: one idle past the limit is swept, a recent one stays.
        storage = app.state.despina.storage
        folders = []
        for name in ("old.bin", "new.bin"):
            started = test_client.post(
                "/api/storagebridge/v1/signedUrl",
                json={"files": [{**entry, "path": name}]},
                headers=headers,
            ).json()["files"][0]["multipart"]
            first = test_client.put(started["part_urls"][0], content=b"0123")
            assert first.status_code == 200
            folders.append(storage.uploads_dir / started["upload_id"])
        idle = time.time() - storage.settings.abandoned_upload_seconds - 60
        os.utime(folders[0], (idle, idle))
        assert storage.sweep_abandoned_uploads() == 1
        assert not folders[0].exists() and folders[1].is_dir()
    store.close()


def test_a_locked_store_is_answered_with_429_and_retry_after(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Writers kept out past the busy timeout get the spec's throttle, not a 5xx, and the same
    request succeeds once the lock is released."""
    store = Store.open(tmp_path_factory.mktemp("busy") / "home", busy_timeout_ms=200)
    token, _ = mint_api_token(store, url="http://testserver", workspace="ws")
    body = {"organizationIdentifier": "ws", "name": "created", "visibility": "priv"}
    with TestClient(create_app(store)) as test_client:
        bearer = test_client.get(
            "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token}
        ).json()["accessToken"]
        headers = {"Authorization": f"Bearer {bearer}"}
        with hold_store_writes(store.home):
            busy = test_client.post("/api/backend/v1/projects", json=body, headers=headers)
        assert busy.status_code == 429, busy.text
        assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["message"]
        done = test_client.post("/api/backend/v1/projects", json=body, headers=headers)
        assert done.status_code == 200, done.text
    store.close()
