"""The blob routes under attack and under faults (issue #12, findings 2, 4, 7 and 8).

Downloads are attachments with a safe type; signed URLs sign an unambiguous encoding, refuse
control characters in keys, cap their lifetime and die with the token that asked for them;
uploads stream to disk, are bound to their declared size, used once, never overwrite another
file and repair a damaged copy of the same content.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from server_helpers import OTHER_PROJECT, PROJECT, ServerProcess, Tokens, mint, run_logging_script
from starlette.testclient import TestClient

from despina.server.app import create_app
from despina.server.auth import load_server_key, mint_api_token
from despina.server.settings import ServerSettings
from despina.server.storage import BlobStorage
from despina.store import Store
from despina.store.access import revoke_api_key
from despina.store.blobs import blob_path, put_blob

SIGN = "/api/storagebridge/v1/signedUrl"
COMPLETE = "/api/storagebridge/v1/s3/completeMultipartUpload"
MIB = 1024 * 1024


def _bearer(server: ServerProcess, api_token: str) -> dict[str, str]:
    answer = httpx.get(
        server.url + "/api/backend/v1/authorization/oauth-token",
        headers={"X-Neptune-Api-Token": api_token},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['accessToken']}"}


def _sign(
    server: ServerProcess,
    headers: dict[str, str],
    path: str,
    permission: str = "write",
    size: int | None = None,
    project: str = PROJECT,
) -> httpx.Response:
    entry: dict[str, object] = {
        "path": path,
        "permission": permission,
        "project_identifier": project,
    }
    if size is not None:
        entry["size"] = size
    return httpx.post(server.url + SIGN, json={"files": [entry]}, headers=headers)


def _url(server: ServerProcess, headers: dict[str, str], path: str, **kwargs: object) -> str:
    answer = _sign(server, headers, path, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    return str(answer.json()["files"][0]["url"])


def _upload(
    server: ServerProcess, headers: dict[str, str], path: str, data: bytes, mime: str
) -> httpx.Response:
    url = _url(server, headers, path, size=len(data))
    return httpx.put(url, content=data, headers={"Content-Type": mime})


@pytest.fixture(scope="module")
def headers(server: ServerProcess, tokens: Tokens) -> dict[str, str]:
    return _bearer(server, tokens.project)


# -- finding 2: downloads --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "served"),
    [
        ("text/html", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/xhtml+xml", "application/octet-stream"),
        ("text/javascript", "application/octet-stream"),
        ("TEXT/HTML; charset=utf-8", "application/octet-stream"),
        ("image/png", "image/png"),
        ("text/plain; charset=utf-8", "text/plain"),
        ("application/json", "application/json"),
    ],
)
def test_downloads_are_attachments_with_a_safe_type(
    server: ServerProcess, headers: dict[str, str], mime: str, served: str
) -> None:
    key = f"run-1/files-{abs(hash(mime))}/none/evil page é.html"
    body = b"<script>fetch('/api/...')</script>"
    assert _upload(server, headers, key, body, mime).status_code == 200
    got = httpx.get(_url(server, headers, key, permission="read"))
    assert got.status_code == 200 and got.content == body
    assert got.headers["content-type"].split(";")[0].strip() == served
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''evil%20page%20%C3%A9.html" in disposition


# -- finding 4: signed URLs ------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f"])
def test_control_characters_in_keys_are_refused(
    server: ServerProcess, headers: dict[str, str], char: str
) -> None:
    key = f"a/b{char}c.txt"
    for permission in ("read", "write"):
        answer = _sign(server, headers, key, permission=permission)
        assert answer.status_code == 400, answer.text
        assert repr(key)[1:-1] in answer.json()["message"]


def test_a_newline_key_cannot_forge_a_url_dated_9999(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    """The attack of the report: shift fields through a newline in the key, keep the signature."""
    assert _upload(server, headers, "x", b"secret", "text/plain").status_code == 200
    crafted = "x\n99991231T000000Z\n3600\n"
    answer = _sign(server, headers, crafted, permission="read")
    assert answer.status_code == 400, answer.text  # before the fix: a signed URL
    if answer.status_code == 200:  # pragma: no cover - what the old server allowed
        signed = urlsplit(answer.json()["files"][0]["url"])
        query = {k: v[0] for k, v in parse_qs(signed.query).items()}
        forged = {
            "X-Amz-Date": "99991231T000000Z",
            "X-Amz-Expires": "3600",
            "partNumber": f"{query['X-Amz-Date']}\n3600\n\n",
            "X-Amz-Signature": query["X-Amz-Signature"],
        }
        url = f"{server.url}/api/storagebridge/v1/blob/{PROJECT}/x?{urlencode(forged)}"
        assert httpx.get(url).status_code != 200


def test_a_url_with_a_far_expiry_is_refused_even_when_validly_signed(
    server: ServerProcess, headers: dict[str, str], tokens: Tokens
) -> None:
    """Lifetime and date are capped at use: a URL signed for 9999 or for a year is refused."""
    assert _upload(server, headers, "far/x.txt", b"abc", "text/plain").status_code == 200
    url = _url(server, headers, "far/x.txt", permission="read")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    store = Store.open(server.home)
    try:
        storage = BlobStorage(store, load_server_key(store), ServerSettings())
        for date, expires in (("99991231T000000Z", "3600"), (query["X-Amz-Date"], "31536000")):
            forged = dict(query, **{"X-Amz-Date": date, "X-Amz-Expires": expires})
            forged["X-Amz-Signature"] = storage.signature_of("GET", PROJECT, "far/x.txt", forged)
            answer = httpx.get(url.split("?")[0] + "?" + urlencode(forged))
            assert answer.status_code == 400, (date, expires, answer.text)
            assert expires in answer.json()["message"] or date in answer.json()["message"]
    finally:
        store.close()
    tampered = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=3599")
    assert httpx.get(tampered).status_code == 403
    unbound = {k: v for k, v in query.items() if k != "X-Amz-Credential"}  # an older URL
    answer = httpx.get(url.split("?")[0] + "?" + urlencode(unbound))
    assert answer.status_code == 400 and "X-Amz-Credential" in answer.json()["message"]


def test_a_non_ascii_signature_is_refused(server: ServerProcess, headers: dict[str, str]) -> None:
    url = _url(server, headers, "far/x.txt", permission="read")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    query["X-Amz-Signature"] = "\x80é"
    answer = httpx.get(url.split("?")[0] + "?" + urlencode(query))
    assert answer.status_code == 403 and "signature" in answer.json()["message"]


def test_urls_stop_working_when_their_token_is_revoked(server: ServerProcess) -> None:
    api_token = mint(server.home, server.url, project="proj", workspace="ws")
    key_id = json.loads(base64.b64decode(api_token))["api_key"].split(".")[0]
    headers = _bearer(server, api_token)
    assert _upload(server, headers, "revoke/a.bin", b"data", "x/y").status_code == 200
    read = _url(server, headers, "revoke/a.bin", permission="read")
    write = _url(server, headers, "revoke/b.bin", size=4)
    assert httpx.get(read).status_code == 200
    store = Store.open(server.home)
    try:
        assert revoke_api_key(store, key_id)
    finally:
        store.close()
    refused = httpx.get(read)
    assert refused.status_code == 403, refused.text
    assert key_id in refused.json()["message"] and "revoked" in refused.json()["message"]
    assert httpx.put(write, content=b"data").status_code == 403


# -- finding 7: uploads ----------------------------------------------------------------------


def test_a_put_url_is_bound_to_its_declared_size(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    url = _url(server, headers, "size/a.bin", size=3)
    answer = httpx.put(url, content=b"abcd")
    assert answer.status_code == 400, answer.text
    assert "3" in answer.json()["message"] and "4" in answer.json()["message"]
    missing = httpx.get(_url(server, headers, "size/a.bin", permission="read"))
    assert missing.status_code == 404


def test_a_put_url_is_used_once(server: ServerProcess, headers: dict[str, str]) -> None:
    url = _url(server, headers, "once/a.bin", size=3)
    assert httpx.put(url, content=b"abc").status_code == 200
    again = httpx.put(url, content=b"abc")
    assert again.status_code == 409, again.text
    assert "already used" in again.json()["message"]


def test_a_put_url_cannot_be_replayed_in_parallel(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    url = _url(server, headers, "parallel/a.bin", size=8)
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"1234"
        release.wait(60)
        yield b"5678"

    def active_claims() -> int:
        store = Store.open(server.home)
        try:
            row = store.connection().execute(
                "SELECT count(*) FROM blob_url_uses WHERE state = 'active'"
            )
            return int(row.fetchone()[0])
        finally:
            store.close()

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            httpx.put, url, content=slow_body(), headers={"Content-Length": "8"}, timeout=60
        )
        deadline = time.monotonic() + 30
        while active_claims() == 0 and time.monotonic() < deadline:  # the first holds the URL
            time.sleep(0.05)
        second = httpx.put(url, content=b"abcdefgh")
        release.set()
        assert first.result().status_code == 200
    assert second.status_code == 409, second.text
    assert "in progress" in second.json()["message"]
    got = httpx.get(_url(server, headers, "parallel/a.bin", permission="read"))
    assert got.content == b"12345678"


def test_a_written_key_is_not_overwritten(server: ServerProcess, headers: dict[str, str]) -> None:
    key = "model/weights.bin"
    assert _upload(server, headers, key, b"original", "x/y").status_code == 200
    swapped = _upload(server, headers, key, b"swapped!", "x/y")
    assert swapped.status_code == 409, swapped.text
    assert key in swapped.json()["message"]
    retried = _upload(server, headers, key, b"original", "x/y")  # an idempotent retry
    assert retried.status_code == 200
    got = httpx.get(_url(server, headers, key, permission="read"))
    assert got.content == b"original"


def test_content_md5_is_checked(server: ServerProcess, headers: dict[str, str]) -> None:
    url = _url(server, headers, "md5/a.bin", size=3)
    wrong = base64.b64encode(hashlib.md5(b"xyz").digest()).decode()
    answer = httpx.put(url, content=b"abc", headers={"Content-MD5": wrong})
    assert answer.status_code == 400 and "Content-MD5" in answer.json()["message"]


@pytest.fixture()
def small_parts(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Store]]:
    """An in-process server with 10-byte single uploads and 4-byte parts, and a workspace token
    (it reaches ws/proj and ws/other)."""
    store = Store.open(tmp_path / "home")
    store.create_project(PROJECT)
    store.create_project(OTHER_PROJECT)
    token, _ = mint_api_token(store, url="http://testserver", workspace="ws")
    app = create_app(store, ServerSettings(max_blob_bytes=10, multipart_part_bytes=4))
    with TestClient(app) as client:
        bearer = client.get(
            "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token}
        ).json()["accessToken"]
        yield client, {"Authorization": f"Bearer {bearer}"}, store
    store.close()


def _start_multipart(
    client: TestClient, headers: dict[str, str], path: str, data: bytes
) -> tuple[dict[str, object], list[dict[str, object]]]:
    entry = {"path": path, "permission": "write", "project_identifier": PROJECT, "size": len(data)}
    multipart = client.post(SIGN, json={"files": [entry]}, headers=headers).json()["files"][0][
        "multipart"
    ]
    etags = []
    for number, url in enumerate(multipart["part_urls"], start=1):
        answer = client.put(url, content=data[(number - 1) * 4 : number * 4])
        assert answer.status_code == 200, answer.text
        etags.append({"part_number": number, "etag": answer.headers["ETag"].strip('"')})
    return multipart, etags


def test_multipart_completion_is_tied_to_its_project_and_key(
    small_parts: tuple[TestClient, dict[str, str], Store],
) -> None:
    client, headers, _ = small_parts
    data = b"0123456789abcdef!"
    multipart, etags = _start_multipart(client, headers, "big/file.bin", data)
    body = {
        "upload_id": multipart["upload_id"],
        "project_identifier": PROJECT,
        "path": "big/file.bin",
        "parts": etags,
    }
    elsewhere = client.post(
        COMPLETE, json={**body, "project_identifier": OTHER_PROJECT}, headers=headers
    )
    assert elsewhere.status_code in (400, 403, 404), elsewhere.text
    assert str(multipart["upload_id"]) in elsewhere.json()["message"]
    renamed = client.post(COMPLETE, json={**body, "path": "big/other.bin"}, headers=headers)
    assert renamed.status_code == 400 and "big/other.bin" in renamed.json()["message"]
    subset = client.post(COMPLETE, json={**body, "parts": etags[:-1]}, headers=headers)
    assert subset.status_code == 400, subset.text
    bad_etag = [*etags[:-1], {"part_number": len(etags), "etag": "0" * 32}]
    assert (
        client.post(COMPLETE, json={**body, "parts": bad_etag}, headers=headers).status_code == 400
    )
    assert client.post(COMPLETE, json=body, headers=headers).status_code == 204
    assert client.post(COMPLETE, json=body, headers=headers).status_code == 204  # a retry
    read = {"path": "big/file.bin", "permission": "read", "project_identifier": PROJECT}
    url = client.post(SIGN, json={"files": [read]}, headers=headers).json()["files"][0]["url"]
    assert client.get(url).content == data
    other = {**read, "project_identifier": OTHER_PROJECT}
    url = client.post(SIGN, json={"files": [other]}, headers=headers).json()["files"][0]["url"]
    assert client.get(url).status_code == 404


def test_multipart_parts_are_bound_to_their_size_and_used_once(
    small_parts: tuple[TestClient, dict[str, str], Store],
) -> None:
    client, headers, _ = small_parts
    entry = {"path": "p/f.bin", "permission": "write", "project_identifier": PROJECT, "size": 11}
    multipart = client.post(SIGN, json={"files": [entry]}, headers=headers).json()["files"][0][
        "multipart"
    ]
    urls = multipart["part_urls"]
    assert len(urls) == 3
    assert client.put(urls[0], content=b"12345").status_code == 400  # parts are 4 bytes
    assert client.put(urls[2], content=b"1234").status_code == 400  # the last one 3
    assert client.put(urls[2], content=b"123").status_code == 200
    assert client.put(urls[2], content=b"123").status_code == 409


# -- finding 8: durability and repair ----------------------------------------------------------


def test_a_damaged_blob_is_repaired_by_a_re_upload(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    data = os.urandom(4096)
    assert _upload(server, headers, "repair/a.bin", data, "x/y").status_code == 200
    stored = blob_path(server.home / "blobs", hashlib.sha256(data).hexdigest())
    damaged = bytearray(stored.read_bytes())
    damaged[100] ^= 0xFF
    stored.write_bytes(bytes(damaged))
    # The same content again, under the same key (a retry) and under another one (dedup).
    assert _upload(server, headers, "repair/a.bin", data, "x/y").status_code == 200
    assert stored.read_bytes() == data
    stored.write_bytes(data[:10])  # truncated
    assert _upload(server, headers, "repair/b.bin", data, "x/y").status_code == 200
    for key in ("repair/a.bin", "repair/b.bin"):
        assert httpx.get(_url(server, headers, key, permission="read")).content == data


# -- finding 7: memory -----------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.slow
def test_large_uploads_stream_to_disk(server: ServerProcess, headers: dict[str, str]) -> None:
    """A 64 MiB single upload and a 200 MiB multipart one (4 parts at a time) raise the
    server's peak RSS by far less than their size."""
    assert server.process is not None
    pid = server.process.pid
    _upload(server, headers, "warm/up.bin", b"warm-up", "x/y")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib(pid, "VmHWM")

    block = os.urandom(MIB)
    single = block * 64
    assert _upload(server, headers, "big/single.bin", single, "x/y").status_code == 200

    size = 200 * MIB
    signed = _sign(server, headers, "big/multi.bin", size=size).json()["files"][0]
    multipart = signed["multipart"]
    part_size = multipart["part_size"]

    def put_part(number: int, url: str) -> dict[str, object]:
        length = min(part_size, size - (number - 1) * part_size)
        content = (block * (part_size // MIB + 1))[:length]
        answer = httpx.put(url, content=content, timeout=120)
        assert answer.status_code == 200, answer.text
        return {"part_number": number, "etag": answer.headers["ETag"].strip('"')}

    with ThreadPoolExecutor(4) as pool:
        etags = list(
            pool.map(put_part, range(1, len(multipart["part_urls"]) + 1), multipart["part_urls"])
        )
    done = httpx.post(
        server.url + COMPLETE,
        json={
            "upload_id": multipart["upload_id"],
            "project_identifier": PROJECT,
            "path": "big/multi.bin",
            "parts": etags,
        },
        headers=headers,
        timeout=120,
    )
    assert done.status_code == 204, done.text
    grown_mib = (_status_kib(pid, "VmHWM") - before) / 1024
    assert grown_mib < 40, f"peak RSS grew by {grown_mib:.0f} MiB"

    digest = hashlib.sha256()
    received = 0
    with httpx.stream("GET", _url(server, headers, "big/multi.bin", permission="read")) as got:
        for chunk in got.iter_bytes():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    expected = hashlib.sha256()
    for number in range(1, len(multipart["part_urls"]) + 1):
        expected.update(
            (block * (part_size // MIB + 1))[: min(part_size, size - (number - 1) * part_size)]
        )
    assert digest.hexdigest() == expected.hexdigest()
    print(f"peak RSS growth over 64 MiB + 200 MiB uploads: {grown_mib:.1f} MiB")


# -- the official clients over the hardened routes ----------------------------------------------


@pytest.mark.slow
def test_official_clients_upload_and_download_a_multipart_file(
    server: ServerProcess, tokens: Tokens, tmp_path: Path
) -> None:
    """neptune-scale uploads a 70 MiB file in size-bound, single-use parts (a multipart upload
    above 64 MiB) and neptune-query downloads it, byte for byte."""
    nq = pytest.importorskip("neptune_query")
    nq_runs = pytest.importorskip("neptune_query.runs")
    source = tmp_path / "model.bin"
    block = os.urandom(MIB)
    with source.open("wb") as out:
        for _ in range(70):
            out.write(block)
    out_dir = tmp_path / "out"
    run_logging_script(
        f"""
        from neptune_scale import Run
        from neptune_scale.types import File
        with Run(run_id="multipart", enable_console_log_capture=False,
                 source_tracking_config=None) as run:
            run.assign_files({{"files/model": File({str(source)!r}, mime_type="text/html")}})
        """,
        tmp_path,
        tokens.project,
    )
    nq.set_api_token(tokens.project)
    table = nq_runs.fetch_runs_table(project=PROJECT, runs=["multipart"], attributes="files/model")
    downloaded = nq_runs.download_files(files=table, destination=out_dir)
    path = Path(downloaded.iloc[0, 0])
    assert (
        hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )


def test_blobs_are_fsynced_with_their_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored content, its fan-out directory and the blob directory reach stable storage before
    put_blob returns (the server's uploads go through the same commit_blob)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    blobs_dir = tmp_path / "blobs"
    sha, size = put_blob(blobs_dir, b"durable")
    stored = blob_path(blobs_dir, sha)
    assert size == 7 and stored.read_bytes() == b"durable"
    assert any(".incoming-" in path for path in synced)  # the content, before its rename
    assert str(stored.parent) in synced and str(blobs_dir) in synced


def test_stray_incoming_files_are_swept(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home")
    try:
        storage = BlobStorage(store, load_server_key(store), ServerSettings())
        stray = store.blobs_dir / ".incoming-crashed"
        stray.write_bytes(b"half")
        fresh = store.blobs_dir / ".incoming-receiving"
        fresh.write_bytes(b"half")
        old = time.time() - storage.settings.abandoned_upload_seconds - 60
        os.utime(stray, (old, old))
        storage.sweep_abandoned_uploads()
        assert not stray.exists() and fresh.exists()
    finally:
        store.close()
