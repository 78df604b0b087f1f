"""A local S3 endpoint for the blob store tests: moto's server mode on 127.0.0.1, one per session.

No S3-compatible server can be installed here, so the S3 blob store is tested against moto's
emulator, started as a subprocess on a free loopback port. Fixtures:

* ``s3_emulator``: the running emulator (its endpoint URL), started at first use;
* ``s3_blobs``: a fresh bucket and the environment a process needs to use it
  (``AWS_ENDPOINT_URL``, test keys, region; instance metadata lookups disabled, so nothing but
  127.0.0.1 is ever contacted); yields its ``s3://bucket/prefix`` URL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["S3Emulator", "s3_blobs", "s3_emulator"]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Emulator:
    """moto's S3 emulator as a subprocess on 127.0.0.1."""

    endpoint: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """The variables that point boto3 (and despina) at the emulator."""
        return {**AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> object:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def s3_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Emulator]:
    pytest.importorskip("moto.server")
    port = _free_port()
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **AWS_ENV},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"moto's S3 emulator did not start on 127.0.0.1:{port}; see {log.name}"
                ) from None
            time.sleep(0.1)
    try:
        yield S3Emulator(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def s3_blobs(s3_emulator: S3Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh bucket on the emulator, this process's AWS variables pointing at it; the blob
    URL ``s3://<bucket>/blobs`` (not yet in ``DESPINA_BLOBS``)."""
    bucket = f"despina-{uuid.uuid4().hex[:16]}"
    s3_emulator.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    for name, value in s3_emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # no shared config or credentials of the machine's user
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return f"s3://{bucket}/blobs"
