"""The storage bridge over an S3 blob store (moto's emulator on 127.0.0.1, tests/s3_emulator.py).

Uploads, multipart parts and downloads go through S3, never the replica's disk, so a multipart
upload whose parts went to one server replica completes on another; the official clients log
files through ``despina serve --blobs s3://...`` and download them back; a missing bucket stops
the server at start-up with the URL and the fix.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import PROJECT, ServerProcess, mint, run_logging_script
from starlette.testclient import TestClient

from despina.server.app import create_app
from despina.server.auth import mint_api_token
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.blobs import S3BlobStore
from s3_emulator import S3Emulator

SIGN = "/api/storagebridge/v1/signedUrl"
COMPLETE = "/api/storagebridge/v1/s3/completeMultipartUpload"


def _objects(s3_emulator: S3Emulator, url: str) -> dict[str, int]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    answer = s3_emulator.client().list_objects_v2(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
    return {item["Key"]: item["Size"] for item in answer.get("Contents", ())}


def _bearer(client: TestClient, token: str) -> dict[str, str]:
    answer = client.get(
        "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token}
    )
    return {"Authorization": f"Bearer {answer.json()['accessToken']}"}


@pytest.fixture()
def replicas(s3_blobs: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Store]]:
    """Two in-process servers over one store and one S3 blob store, with 10-byte single
    uploads and 4-byte parts."""
    # the server keeps its key file in its home (which a PostgreSQL store with S3 blobs never
    # creates by itself)
    (tmp_path / "home").mkdir()
    store_a = Store.open(tmp_path / "home", blobs=s3_blobs)
    store_a.create_project(PROJECT)
    store_b = Store.open(tmp_path / "home", blobs=s3_blobs)
    assert isinstance(store_a.blobs, S3BlobStore)
    token, _ = mint_api_token(store_a, url="http://testserver", workspace="ws")
    settings = ServerSettings(max_blob_bytes=10, multipart_part_bytes=4)
    with (
        TestClient(create_app(store_a, settings)) as a,
        TestClient(create_app(store_b, settings)) as b,
    ):
        a.headers.update(_bearer(a, token))
        b.headers.update(_bearer(b, token))
        yield a, b, store_a
    store_a.close()
    store_b.close()


def test_uploads_and_downloads_go_through_s3(
    replicas: tuple[TestClient, TestClient, Store], s3_blobs: str, s3_emulator: S3Emulator
) -> None:
    a, b, store = replicas
    entry = {"path": "small/file.txt", "permission": "write", "project_identifier": PROJECT}
    url = a.post(SIGN, json={"files": [{**entry, "size": 5}]}).json()["files"][0]["url"]
    put = a.put(url, content=b"hello", headers={"Content-Type": "text/plain"})
    assert (
        put.status_code == 200 and put.headers["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    )
    sha = hashlib.sha256(b"hello").hexdigest()
    assert _objects(s3_emulator, s3_blobs) == {f"blobs/{sha[:2]}/{sha}": 5}
    read = b.post(SIGN, json={"files": [{**entry, "permission": "read"}]}).json()["files"][0]["url"]
    got = b.get(read)
    assert got.status_code == 200 and got.content == b"hello"
    assert got.headers["content-length"] == "5"
    assert got.headers["content-type"].split(";")[0] == "text/plain"
    assert "attachment" in got.headers["content-disposition"]
    # the content vanished from the bucket: a 404 naming the key, not a 500
    store.blobs.delete(sha)
    missing = b.get(
        b.post(SIGN, json={"files": [{**entry, "permission": "read"}]}).json()["files"][0]["url"]
    )
    assert missing.status_code == 404 and "missing from the store" in missing.text
    assert not any(p.is_file() for p in (store.home / "blobs").rglob("*"))
    assert not (store.home / "uploads").exists()


def test_a_multipart_upload_completes_on_another_replica(
    replicas: tuple[TestClient, TestClient, Store], s3_blobs: str, s3_emulator: S3Emulator
) -> None:
    a, b, store = replicas
    data = b"0123456789abcdef!"
    entry = {
        "path": "big/file.bin",
        "permission": "write",
        "project_identifier": PROJECT,
        "size": len(data),
    }
    multipart = a.post(SIGN, json={"files": [entry]}).json()["files"][0]["multipart"]
    etags = []
    for number, url in enumerate(multipart["part_urls"], start=1):
        replica = a if number % 2 else b  # parts spread over both replicas
        answer = replica.put(url, content=data[(number - 1) * 4 : number * 4])
        assert answer.status_code == 200, answer.text
        etags.append({"part_number": number, "etag": answer.headers["ETag"].strip('"')})
    parts = [key for key in _objects(s3_emulator, s3_blobs) if "/uploads/" in key]
    assert len(parts) == 5 + 1  # five parts and the MIME type, in the bucket
    body = {
        "upload_id": multipart["upload_id"],
        "project_identifier": PROJECT,
        "path": "big/file.bin",
        "parts": etags,
    }
    wrong = [{**etags[0], "etag": "0" * 32}, *etags[1:]]
    assert b.post(COMPLETE, json={**body, "parts": wrong}).status_code == 400
    assert b.post(COMPLETE, json=body).status_code == 204
    assert b.post(COMPLETE, json=body).status_code == 204  # a retried completion
    sha = hashlib.sha256(data).hexdigest()
    assert _objects(s3_emulator, s3_blobs) == {f"blobs/{sha[:2]}/{sha}": len(data)}
    read = a.post(SIGN, json={"files": [{**entry, "permission": "read"}]}).json()["files"][0]
    assert a.get(read["url"]).content == data
    assert not (store.home / "uploads").exists()


def test_abandoned_parts_are_swept_from_the_bucket(
    replicas: tuple[TestClient, TestClient, Store], s3_blobs: str, s3_emulator: S3Emulator
) -> None:
    a, _, _ = replicas
    entry = {"path": "gone.bin", "permission": "write", "project_identifier": PROJECT, "size": 12}
    multipart = a.post(SIGN, json={"files": [entry]}).json()["files"][0]["multipart"]
    assert a.put(multipart["part_urls"][0], content=b"0123").status_code == 200
    storage = a.app.state.despina.storage  # type: ignore[attr-defined]
    assert storage.sweep_abandoned_uploads() == 0
    later = storage.settings.abandoned_upload_seconds + 3600
    assert storage.sweep_abandoned_uploads(now=time.time() + later) == 1
    assert _objects(s3_emulator, s3_blobs) == {}


@pytest.fixture()
def s3_server(s3_blobs: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """``despina serve --blobs s3://...`` over a fresh home with project ws/proj."""
    home = tmp_path / "server" / "home"
    home.mkdir(parents=True)  # the server's key and log live there, whatever the store
    store = Store.open(home, blobs=s3_blobs)
    store.create_project(PROJECT)
    store.close()
    server = ServerProcess(home, extra_args=("--blobs", s3_blobs))
    server.start()
    yield server
    server.stop()


def test_official_clients_log_and_download_files_through_s3(
    s3_server: ServerProcess, s3_blobs: str, s3_emulator: S3Emulator, tmp_path: Path
) -> None:
    nq = pytest.importorskip("neptune_query")
    nq_runs = pytest.importorskip("neptune_query.runs")
    token = mint(s3_server.home, s3_server.url, workspace="ws", project="proj")
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(300_000))
    run_logging_script(
        f"""
        from neptune_scale import Run
        from neptune_scale.types import File
        with Run(run_id="s3", enable_console_log_capture=False,
                 source_tracking_config=None) as run:
            run.assign_files({{"files/model": File({str(source)!r}, mime_type="x/y")}})
            run.log_files({{"files/sample": File(b"sample one", mime_type="text/plain")}}, step=1)
        """,
        tmp_path,
        token,
    )
    stored = _objects(s3_emulator, s3_blobs)
    assert hashlib.sha256(source.read_bytes()).hexdigest() in {k.rsplit("/", 1)[-1] for k in stored}
    assert not any(p.is_file() for p in (s3_server.home / "blobs").rglob("*"))

    nq.set_api_token(token)
    table = nq_runs.fetch_runs_table(project=PROJECT, runs=["s3"], attributes="files/model")
    downloaded = nq_runs.download_files(files=table, destination=tmp_path / "out")
    assert Path(downloaded.iloc[0, 0]).read_bytes() == source.read_bytes()
    series = nq_runs.fetch_series(project=PROJECT, runs=["s3"], attributes="files/sample")
    downloaded = nq_runs.download_files(files=series, destination=tmp_path / "series")
    assert Path(downloaded.iloc[0, 0]).read_bytes() == b"sample one"


def test_serve_refuses_a_missing_bucket_at_start_up(s3_blobs: str, tmp_path: Path) -> None:
    missing = f"s3://missing-{uuid.uuid4().hex[:12]}/blobs"
    home = tmp_path / "home"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from despina.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--home",
            str(home),
            "--blobs",
            missing,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert missing.removeprefix("s3://").split("/")[0] in done.stderr + done.stdout
    assert "does not exist" in done.stderr + done.stdout
    assert not home.exists()  # nothing written
