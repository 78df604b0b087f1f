"""End to end with file contents in S3 (moto's emulator on 127.0.0.1): ``despina.Run`` logs files
with ``DESPINA_BLOBS=s3://...`` and ``despina.query`` downloads them, byte for byte; nothing of
the contents lands in the local store directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import despina
import despina.query.runs as nq_runs
from despina.store import Store
from despina.types import File
from s3_emulator import S3Emulator

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def _objects(s3_emulator: S3Emulator, url: str) -> dict[str, int]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    answer = s3_emulator.client().list_objects_v2(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
    return {item["Key"]: item["Size"] for item in answer.get("Contents", ())}


def test_run_files_go_to_s3_and_download_from_it(
    s3_blobs: str,
    s3_emulator: S3Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DESPINA_BLOBS", s3_blobs)
    home = Path(os.environ["DESPINA_HOME"])
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    with despina.Run(project="ws/proj", run_id="s3-run", **QUIET) as run:
        run.assign_files({"model/weights": big, "notes": File(b"hello s3", mime_type="text/plain")})
        run.log_files({"samples": b"step one"}, step=1)
        run.log_files({"samples": b"step two"}, step=2)

    expected = {
        hashlib.sha256(data).hexdigest()
        for data in (big.read_bytes(), b"hello s3", b"step one", b"step two")
    }
    stored = _objects(s3_emulator, s3_blobs)
    assert {key.rsplit("/", 1)[-1] for key in stored} == expected
    assert all(key.startswith("blobs/") for key in stored)
    store = Store.open(home)
    assert set(store.blobs.keys()) == expected
    store.close()
    assert not any(p.is_file() for p in (home / "blobs").rglob("*"))  # nothing on local disk

    table = nq_runs.fetch_runs_table(
        project="ws/proj", runs=["s3-run"], attributes=["model/weights", "notes"]
    )
    out = nq_runs.download_files(files=table, destination=tmp_path / "out")
    got = sorted(Path(p).read_bytes() for p in out.to_numpy().ravel() if isinstance(p, str))
    assert got == sorted([big.read_bytes(), b"hello s3"])

    series = nq_runs.fetch_series(project="ws/proj", runs=["s3-run"], attributes="samples")
    out = nq_runs.download_files(files=series, destination=tmp_path / "series")
    got = sorted(Path(p).read_bytes() for p in out.to_numpy().ravel() if isinstance(p, str))
    assert got == [b"step one", b"step two"]
