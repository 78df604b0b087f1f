"""One blob store contract suite, run over both implementations: a directory and S3 (moto's
emulator on 127.0.0.1, tests/s3_emulator.py)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from despina.errors import ConfigError, StoreError
from despina.store import Store
from despina.store.blobs import BlobNotFound, BlobStore, DirectoryBlobStore, open_blob_store
from despina.store.blobs.opening import parse_blobs_url
from despina.store.blobs.s3 import S3BlobStore

MIB = 1024 * 1024


@pytest.fixture(params=["directory", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "directory":
        yield DirectoryBlobStore(tmp_path / "blobs")
        return
    url = request.getfixturevalue("s3_blobs")
    store = open_blob_store(url, default=tmp_path / "unused")
    assert isinstance(store, S3BlobStore)
    store.transfer.multipart_threshold = store.transfer.multipart_chunksize = 5 * MIB
    yield store
    store.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_from_bytes_file_and_stream(blobs: BlobStore, tmp_path: Path) -> None:
    file = tmp_path / "source.bin"
    file.write_bytes(b"from a file")
    assert blobs.put(b"from bytes") == (_sha(b"from bytes"), 10)
    assert blobs.put(file) == (_sha(b"from a file"), 11)
    assert blobs.put(io.BytesIO(b"from a stream")) == (_sha(b"from a stream"), 13)
    assert blobs.put(b"") == (_sha(b""), 0)
    for data in (b"from bytes", b"from a file", b"from a stream", b""):
        assert blobs.read(_sha(data)) == data
        assert blobs.exists(_sha(data)) and blobs.size(_sha(data)) == len(data)
    assert sorted(blobs.keys()) == sorted(
        _sha(d) for d in (b"from bytes", b"from a file", b"from a stream", b"")
    )
    assert blobs.total_bytes() == 10 + 11 + 13


def test_the_same_content_is_stored_once(blobs: BlobStore) -> None:
    first = blobs.put(b"twice")
    assert blobs.put(io.BytesIO(b"twice")) == first
    assert list(blobs.keys()) == [first[0]]


def test_ranges_and_streaming_reads(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 40
    sha, _ = blobs.put(data)
    assert blobs.read(sha, 10, 20) == data[10:30]
    assert blobs.read(sha, len(data) - 5) == data[-5:]
    assert blobs.read(sha, len(data) - 5, 100) == data[-5:]  # the blob ends first
    assert blobs.read(sha, len(data) + 10) == b""
    assert blobs.read(sha, 3, 0) == b""
    with blobs.open(sha, 100, 1100) as stream:
        got = b""
        while block := stream.read(300):
            got += block
    assert got == data[100:1100]
    with pytest.raises(ValueError):
        blobs.open(sha, -1)


def test_missing_blobs(blobs: BlobStore) -> None:
    absent = _sha(b"never stored")
    assert not blobs.exists(absent)
    assert blobs.size(absent) is None
    with pytest.raises(BlobNotFound):
        blobs.open(absent)
    with pytest.raises(BlobNotFound):
        blobs.read(absent)
    blobs.delete(absent)  # not an error
    with pytest.raises(ValueError, match="not a SHA-256"):
        blobs.exists("../../etc/passwd")


def test_delete(blobs: BlobStore) -> None:
    keep, _ = blobs.put(b"keep")
    drop, _ = blobs.put(b"drop")
    blobs.delete(drop)
    assert not blobs.exists(drop) and blobs.exists(keep)
    assert list(blobs.keys()) == [keep]


def test_incoming_content_is_invisible_until_committed(blobs: BlobStore) -> None:
    incoming = blobs.incoming()
    incoming.write(b"half")
    incoming.write(b" and half")
    incoming.finish()
    assert incoming.sha256 == _sha(b"half and half") and incoming.size == 13
    assert incoming.md5 == hashlib.md5(b"half and half").hexdigest()
    assert not blobs.exists(incoming.sha256) and list(blobs.keys()) == []
    blobs.commit(incoming)
    assert blobs.read(incoming.sha256) == b"half and half"
    dropped = blobs.incoming()
    dropped.write(b"never")
    dropped.discard()
    assert not blobs.exists(_sha(b"never"))


def test_a_big_file_streams_in_and_out(blobs: BlobStore, tmp_path: Path) -> None:
    """12 MiB: past the S3 store's (lowered) multipart threshold, so it goes up in parts."""
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * MIB))
    data = source.read_bytes()
    sha, size = blobs.put(source)
    assert (sha, size) == (_sha(data), len(data))
    assert blobs.put(io.BytesIO(data)) == (sha, size)
    digest = hashlib.sha256()
    with blobs.open(sha) as stream:
        while block := stream.read(MIB):
            digest.update(block)
    assert digest.hexdigest() == sha
    assert blobs.read(sha, 6 * MIB - 3, 6) == data[6 * MIB - 3 : 6 * MIB + 3]


def test_multipart_upload_parts(blobs: BlobStore) -> None:
    chunks = [b"part one|", b"part two|", b"three"]
    for number in (2, 1, 3):  # any order
        incoming = blobs.incoming()
        incoming.write(chunks[number - 1])
        incoming.finish()
        blobs.put_part("abc123", number, incoming, "text/plain" if number == 2 else "x/y")
    assert blobs.parts("abc123") == {
        n: hashlib.md5(c).hexdigest() for n, c in enumerate(chunks, start=1)
    }
    assert blobs.parts("other") == {}
    with pytest.raises(BlobNotFound):
        blobs.join_parts("abc123", 4)
    joined, mime_type = blobs.join_parts("abc123", 3)
    assert mime_type == "text/plain"  # the first part to arrive chose it
    assert joined.size == sum(map(len, chunks)) and not blobs.exists(joined.sha256)
    blobs.commit(joined)
    assert blobs.read(joined.sha256) == b"".join(chunks)
    assert list(blobs.keys()) == [joined.sha256]  # parts are not blobs
    blobs.drop_upload("abc123")
    assert blobs.parts("abc123") == {}
    with pytest.raises(ValueError):
        blobs.parts("../x")


def test_sweep_removes_abandoned_uploads_only(blobs: BlobStore) -> None:
    for upload_id in ("old", "new"):
        incoming = blobs.incoming()
        incoming.write(b"x")
        incoming.finish()
        blobs.put_part(upload_id, 1, incoming, "x/y")
    assert blobs.sweep(time.time() - 3600) == 0
    assert blobs.sweep(time.time() + 3600) == 2
    assert blobs.parts("old") == {} and blobs.parts("new") == {}


# -- opening ------------------------------------------------------------------------------------


def test_blob_urls() -> None:
    assert parse_blobs_url("s3://my-bucket/a//b/").url == "s3://my-bucket/a/b"
    assert parse_blobs_url("s3://my-bucket").prefix == ""
    assert parse_blobs_url("/srv/blobs").kind == "directory"
    with pytest.raises(ConfigError, match="gs://b"):
        parse_blobs_url("gs://b/x")
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        parse_blobs_url("s3://Bad_Bucket/x")


def test_store_open_picks_the_blob_store(
    s3_blobs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "home")
    assert isinstance(store.blobs, DirectoryBlobStore)
    store.close()
    store = Store.open(tmp_path / "home", blobs=s3_blobs)
    assert isinstance(store.blobs, S3BlobStore) and store.blobs.url == s3_blobs
    store.close()
    monkeypatch.setenv("DESPINA_BLOBS", str(tmp_path / "elsewhere"))
    store = Store.open(tmp_path / "home")
    assert store.blobs.url == str(tmp_path / "elsewhere")
    store.close()


def test_a_missing_bucket_is_a_clear_error_and_nothing_is_written(
    s3_blobs: str, tmp_path: Path
) -> None:
    missing = "s3://no-such-bucket-here/blobs"
    with pytest.raises(StoreError, match=r"no-such-bucket-here.*does not exist.*create it"):
        Store.open(tmp_path / "home", blobs=missing)
    assert not (tmp_path / "home").exists()


def test_an_unreachable_endpoint_is_a_clear_error(
    s3_blobs: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from serving import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(StoreError, match=f"cannot reach the blob store.*{endpoint}.*AWS_ENDPOINT"):
        Store.open(tmp_path / "home", blobs=s3_blobs)


def test_missing_credentials_are_a_clear_error(
    s3_blobs: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreError, match=r"no credentials.*AWS_ACCESS_KEY_ID"):
        Store.open(tmp_path / "home", blobs=s3_blobs)
