"""Every authenticated route refuses missing, forged, revoked and out-of-scope tokens."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import time

import httpx
import jwt
import pytest
from neptune_api.proto.neptune_pb.api.v1.model.requests_pb2 import (
    ProtoCustomExpression,
    ProtoGetTimeseriesBucketsRequest,
    ProtoView,
)
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2
from neptune_api.proto.neptune_pb.ingest.v1.pub.client_pb2 import RequestId, RequestIdList
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from server_helpers import PROJECT, ServerProcess, Tokens, mint

from despina.server.app import ROUTES

RUN = f"{PROJECT}/PROJ-1"


def _bucket_body() -> bytes:
    return ProtoGetTimeseriesBucketsRequest(
        expressions=[ProtoCustomExpression(requestId="a", runId=RUN, customYFormula="${m}")],
        view=ProtoView(maxBuckets=4),
    ).SerializeToString()


# (method, path, params, body, content type) touching PROJECT, for every authenticated route
def _framed(envelope: dict[str, str]) -> bytes:
    """A native batch body: a u32-framed JSON envelope, then the (here empty) batch."""
    data = json.dumps(envelope).encode()
    return struct.pack("<I", len(data)) + data


REQUESTS: list[tuple[str, str, dict[str, str], bytes, str]] = [
    (
        "POST",
        "/api/client/v1/ingest",
        {},
        RunOperation(
            project=PROJECT, run_id="r", create=common_pb2.Run(run_id="r")
        ).SerializeToString(),
        "application/x-protobuf",
    ),
    (
        "POST",
        "/api/client/v1/ingest/check",
        {"projectIdentifier": PROJECT},
        RequestIdList(ids=[RequestId(value="x")]).SerializeToString(),
        "application/x-protobuf",
    ),
    (
        "POST",
        "/api/storagebridge/v1/signedUrl",
        {},
        json.dumps(
            {"files": [{"path": "a/b.txt", "permission": "read", "project_identifier": PROJECT}]}
        ).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/storagebridge/v1/s3/completeMultipartUpload",
        {},
        json.dumps(
            {
                "upload_id": "abc",
                "project_identifier": PROJECT,
                "path": "a/b.txt",
                "parts": [{"part_number": 1, "etag": "x"}],
            }
        ).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/leaderboard/v1/proto/leaderboard/entries/search/",
        {"projectIdentifier": PROJECT, "type": "run"},
        b"{}",
        "application/json",
    ),
    (
        "POST",
        "/api/leaderboard/v1/leaderboard/attributes/definitions/query",
        {},
        json.dumps({"projectIdentifiers": [PROJECT]}).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/leaderboard/v1/proto/leaderboard/attributes/query",
        {"projectIdentifier": PROJECT},
        json.dumps({"experimentIdsFilter": [RUN]}).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/leaderboard/v1/proto/attributes/series/float",
        {},
        json.dumps(
            {
                "requests": [
                    {
                        "requestId": "0",
                        "series": {
                            "holder": {"identifier": RUN, "type": "experiment"},
                            "attribute": "m",
                        },
                    }
                ],
                "perSeriesPointsLimit": 10,
            }
        ).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/leaderboard/v1/proto/attributes/series",
        {"useDeprecatedStringFields": "false"},
        json.dumps(
            {
                "requests": [
                    {
                        "requestId": "0",
                        "series": {
                            "holder": {"identifier": RUN, "type": "experiment"},
                            "attribute": "m",
                        },
                    }
                ]
            }
        ).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/leaderboard/v1/proto/attributes/timeseries/buckets",
        {},
        _bucket_body(),
        "application/x-protobuf",
    ),
    (
        "POST",
        "/api/backend/v1/projects",
        {},
        json.dumps(
            {"organizationIdentifier": "ws", "name": "created", "visibility": "priv"}
        ).encode(),
        "application/json",
    ),
    ("GET", "/api/backend/v1/projects/get", {"projectIdentifier": PROJECT}, b"", ""),
    (
        "POST",
        "/api/despina/v1/projects/table",
        {},
        json.dumps({"project": PROJECT, "kind": "run"}).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/despina/v1/projects/trash",
        {},
        json.dumps({"project": PROJECT, "action": "trash", "ids": ["r"]}).encode(),
        "application/json",
    ),
    (
        "POST",
        "/api/despina/v1/projects/description",
        {},
        json.dumps({"project": PROJECT, "run": "r", "description": "d"}).encode(),
        "application/json",
    ),
    *(
        ("POST", f"/api/despina/v1/{name}", {}, json.dumps(body).encode(), "application/json")
        for name, body in [
            ("runs/create", {"project": PROJECT, "run_id": "r"}),
            ("runs/close", {"project": PROJECT, "run_id": "r"}),
            ("runs/ping", {"project": PROJECT, "run_id": "r"}),
            ("models/create", {"project": PROJECT, "key": "M"}),
            ("model-versions/create", {"project": PROJECT, "model": "X-M"}),
            ("objects/open", {"project": PROJECT, "sys_id": "X-M"}),
            ("model-versions/stage", {"project": PROJECT, "sys_id": "X-M-1", "stage": "staging"}),
        ]
    ),
    (
        "POST",
        "/api/despina/v1/runs/batch",
        {},
        _framed({"project": PROJECT, "run_id": "r"}),
        "application/octet-stream",
    ),
    ("POST", "/api/despina/v1/files", {"project": PROJECT, "sha256": "0" * 64}, b"x", ""),
    *(
        ("POST", f"/api/despina/v1/query/{name}", {}, json.dumps(body).encode(), "application/json")
        for name, body in [
            ("attribute-types", {"project": PROJECT, "names": ["m"]}),
            ("search", {"project": PROJECT, "kind": "run", "direction": "desc"}),
            ("definitions", {"project": PROJECT, "kind": "run", "selector": [], "search": True}),
            ("table", {"project": PROJECT, "pks": [], "selector": []}),
            ("metrics", {"project": PROJECT, "kind": "run", "selector": [], "mode": "full"}),
            ("series", {"project": PROJECT, "kind": "run", "selector": [], "mode": "own"}),
            ("buckets", {"project": PROJECT, "selector": [], "limit": 3, "mode": "full"}),
            ("file", {"project": PROJECT, "key": "k"}),
        ]
    ),
]
"""Requests that name PROJECT; global search and project listing are checked separately."""

UNSCOPED: list[tuple[str, str, dict[str, str], bytes, str]] = [
    (
        "POST",
        "/api/leaderboard/v1/proto/leaderboard/entries/global/search/",
        {},
        b"{}",
        "application/json",
    ),
    (
        "GET",
        "/api/backend/v1/projects",
        {"userRelation": "viewerOrHigher", "sortBy": "lastViewed"},
        b"",
        "",
    ),
    ("POST", "/api/despina/v1/query/projects", {}, b"{}", "application/json"),
]

PUBLIC = {
    "/api/backend/v1/clients/config",
    "/auth/realms/neptune/.well-known/openid-configuration",
    "/api/backend/v1/authorization/oauth-token",
    "/auth/realms/neptune/protocol/openid-connect/token",
}


def test_every_route_is_covered() -> None:
    covered = {path for _, path, *_ in REQUESTS + UNSCOPED} | PUBLIC
    for method, path, _ in ROUTES:
        if "/blob/" in path:
            continue  # signed URLs: test_signed_urls
        if not path.startswith(("/api/", "/auth/")):
            continue  # the web UI (cookie sessions) has its own tests
        assert path in covered, f"{method} {path} has no auth test"


def exchange(server: ServerProcess, api_token: str) -> httpx.Response:
    return httpx.get(
        server.url + "/api/backend/v1/authorization/oauth-token",
        headers={"X-Neptune-Api-Token": api_token},
    )


def access_token(server: ServerProcess, api_token: str) -> str:
    response = exchange(server, api_token)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"accessToken", "refreshToken", "username"}
    return str(data["accessToken"])


def call(
    server: ServerProcess,
    request: tuple[str, str, dict[str, str], bytes, str],
    bearer: str | None,
) -> httpx.Response:
    method, path, params, body, content_type = request
    headers = {"Content-Type": content_type} if content_type else {}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return httpx.request(method, server.url + path, params=params, content=body, headers=headers)


def _error(response: httpx.Response) -> dict[str, object]:
    data = response.json()
    assert isinstance(data, dict) and data["code"] == response.status_code
    assert isinstance(data["message"], str) and data["message"]
    return data


@pytest.mark.parametrize("request_", REQUESTS + UNSCOPED, ids=lambda r: r[1])
def test_missing_and_malformed_tokens(server: ServerProcess, request_: tuple) -> None:  # type: ignore[type-arg]
    for bearer in (None, "not-a-jwt", "a.b.c"):
        response = call(server, request_, bearer)
        assert response.status_code == 401, (bearer, response.text)
        _error(response)


@pytest.mark.parametrize("request_", REQUESTS + UNSCOPED, ids=lambda r: r[1])
def test_forged_tokens(server: ServerProcess, tokens: Tokens, request_: tuple) -> None:  # type: ignore[type-arg]
    real = access_token(server, tokens.project)
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    forged = jwt.encode(
        claims, "not the server key" * 4, algorithm="HS256", headers={"kid": header["kid"]}
    )
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]})
    expired = jwt.encode({**claims, "exp": int(time.time()) - 3600}, "x" * 40, algorithm="HS256")
    for bearer in (forged, unsigned, expired):
        response = call(server, request_, bearer)
        assert response.status_code == 401, response.text


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r[1])
def test_other_project_token(server: ServerProcess, tokens: Tokens, request_: tuple) -> None:  # type: ignore[type-arg]
    for api_token in (tokens.other_project, tokens.foreign):
        response = call(server, request_, access_token(server, api_token))
        assert response.status_code == 403, response.text
        assert _error(response)["errorType"] == "ACCESS_DENIED"


def test_unscoped_routes_show_only_reachable_projects(
    server: ServerProcess, tokens: Tokens
) -> None:
    bearer = access_token(server, tokens.other_project)
    listed = call(server, UNSCOPED[1], bearer)
    assert listed.status_code == 200
    assert [(e["organizationName"], e["name"]) for e in listed.json()["entries"]] == [
        ("ws", "other")
    ]
    searched = call(server, UNSCOPED[0], bearer)
    assert searched.status_code == 200


def test_revoked_token(server: ServerProcess) -> None:
    api_token = mint(server.home, server.url, project="proj", workspace="ws")
    bearer = access_token(server, api_token)
    refresh = exchange(server, api_token).json()["refreshToken"]
    key_id = json.loads(base64.b64decode(api_token))["api_key"].split(".")[0]
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from despina.cli import main; main()",
            "token",
            "revoke",
            key_id,
            "--home",
            str(server.home),
        ],
        check=True,
        capture_output=True,
    )
    for request_ in REQUESTS + UNSCOPED:
        response = call(server, request_, bearer)
        assert response.status_code == 401, (request_[1], response.text)
    assert exchange(server, api_token).status_code == 401
    refreshed = httpx.post(
        server.url + "/auth/realms/neptune/protocol/openid-connect/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "x"},
    )
    assert refreshed.status_code in (400, 401)


def test_exchange_refuses_bad_api_tokens(server: ServerProcess, tokens: Tokens) -> None:
    payload = json.loads(base64.b64decode(tokens.project))
    key_id = payload["api_key"].split(".")[0]
    wrong_secret = base64.b64encode(
        json.dumps({**payload, "api_key": f"{key_id}.wrong"}).encode()
    ).decode()
    unknown = base64.b64encode(
        json.dumps({**payload, "api_key": "0000000000000000.secret"}).encode()
    ).decode()
    for api_token in (wrong_secret, unknown, "garbage", base64.b64encode(b"{}").decode()):
        assert exchange(server, api_token).status_code == 401
    missing = httpx.get(server.url + "/api/backend/v1/authorization/oauth-token")
    assert missing.status_code == 401


def test_refresh_rotates(server: ServerProcess, tokens: Tokens) -> None:
    first = exchange(server, tokens.project).json()
    url = server.url + "/auth/realms/neptune/protocol/openid-connect/token"
    form = {
        "grant_type": "refresh_token",
        "refresh_token": first["refreshToken"],
        "client_id": "neptune-client",
        "expires_in": "-5",
    }
    answer = httpx.post(url, data=form)
    assert answer.status_code == 200
    body = answer.json()
    assert body["access_token"] and body["refresh_token"] != first["refreshToken"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["azp"] == "neptune-client" and claims["iss"].endswith("/auth/realms/neptune")
    assert claims["exp"] - time.time() > 3000
    assert httpx.post(url, data=form).status_code in (400, 401)  # used up


def test_signed_urls(server: ServerProcess, tokens: Tokens) -> None:
    bearer = access_token(server, tokens.project)
    headers = {"Authorization": f"Bearer {bearer}"}
    files = [{"path": "x/y.txt", "permission": "write", "project_identifier": PROJECT, "size": 3}]
    signed = httpx.post(
        server.url + "/api/storagebridge/v1/signedUrl", json={"files": files}, headers=headers
    ).json()["files"][0]
    assert signed["provider"] == "aws" and signed["path"] == "x/y.txt"
    put = httpx.put(signed["url"], content=b"abc", headers={"Content-Type": "text/plain"})
    assert put.status_code == 200 and put.headers["ETag"].startswith('"')
    read = httpx.post(
        server.url + "/api/storagebridge/v1/signedUrl",
        json={"files": [{**files[0], "permission": "read"}]},
        headers=headers,
    ).json()["files"][0]["url"]
    got = httpx.get(read)
    assert got.status_code == 200 and got.content == b"abc"
    assert got.headers["content-type"].startswith("text/plain")
    assert httpx.get(read.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
    assert httpx.get(signed["url"]).status_code == 403  # a write URL does not read
    assert httpx.get(read.replace("X-Amz-Date=", "X-Amz-Date=1")).status_code == 400
    expired = read.replace("X-Amz-Date=2", "X-Amz-Date=1")  # a date a millennium ago
    assert httpx.get(expired).status_code == 400
    missing = httpx.post(
        server.url + "/api/storagebridge/v1/signedUrl",
        json={"files": [{**files[0], "path": "nope", "permission": "read"}]},
        headers=headers,
    ).json()["files"][0]["url"]
    assert httpx.get(missing).status_code == 404
    for bad in ("../etc/passwd", "/abs", "a/../b", ""):
        response = httpx.post(
            server.url + "/api/storagebridge/v1/signedUrl",
            json={"files": [{**files[0], "path": bad}]},
            headers=headers,
        )
        assert response.status_code == 400, bad


def test_workspace_token_creates_projects(server: ServerProcess, tokens: Tokens) -> None:
    bearer = access_token(server, tokens.workspace)
    body = {
        "organizationIdentifier": "ws",
        "name": "made-by-api",
        "visibility": "priv",
        "description": None,
        "projectKey": None,
    }
    url = server.url + "/api/backend/v1/projects"
    headers = {"Authorization": f"Bearer {bearer}"}
    assert httpx.post(url, json=body, headers=headers).status_code == 200
    assert httpx.post(url, json=body, headers=headers).status_code == 409
    got = httpx.get(url + "/get", params={"projectIdentifier": "ws/made-by-api"}, headers=headers)
    assert got.status_code == 200 and got.json()["projectKey"] == "MADEBYAPI"
    missing = httpx.get(url + "/get", params={"projectIdentifier": "ws/nope"}, headers=headers)
    assert missing.status_code == 404
    other_ws = {**body, "organizationIdentifier": "elsewhere"}
    assert httpx.post(url, json=other_ws, headers=headers).status_code == 403
