"""Blobs in S3-compatible object storage, through boto3: ``s3://bucket/prefix``.

Layout under the prefix (mirroring the directory store's)::

    <prefix>/<sha[:2]>/<sha256>                   a blob
    <prefix>/uploads/<upload id>/<nnnnn>-<md5>    part n of a server multipart upload
    <prefix>/uploads/<upload id>/mime-type        the MIME type its file gets

The endpoint, keys and region come from the standard AWS environment variables
(``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``; the other variables and
files boto3 reads work too). Content being received is spooled (in memory up to
:data:`SPOOL_MEMORY_BYTES`, then in a temporary file) while it is hashed, because its key is its
hash; it is then uploaded in one request, or as an S3 multipart upload past
``multipart_threshold``. An S3 object appears whole or not at all, so a reader never sees part of
a blob; S3 multipart uploads an interrupted process left open are aborted by :meth:`sweep`.
Reads stream the object's body (ranges with ``Range: bytes=``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from despina.errors import StoreError
from despina.store.blobs.contract import (
    BlobNotFound,
    BlobStore,
    Incoming,
    check_key,
    check_upload_id,
    sha256_of,
)

__all__ = ["MULTIPART_THRESHOLD", "SPOOL_MEMORY_BYTES", "S3BlobStore"]

SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
MULTIPART_THRESHOLD = 64 * 1024 * 1024
"""Content past this size is uploaded as an S3 multipart upload, in parts of this size."""
_PART = re.compile(r"(\d{5})-([0-9a-f]{32})")
_BLOB = re.compile(r"([0-9a-f]{2})/([0-9a-f]{64})")
_MIME_NAME = "mime-type"
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchUpload"}


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Spool(Incoming):
    """Content being received for S3: hashed, kept in memory or a temporary file."""

    def __init__(self, spool_dir: str | None) -> None:
        super().__init__()
        self.file: Any = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by discard)
            max_size=SPOOL_MEMORY_BYTES, dir=spool_dir
        )

    def _write(self, data: bytes) -> None:
        self.file.write(data)

    def finish(self) -> None:
        self.file.flush()
        self.file.seek(0)

    def discard(self) -> None:
        self.file.close()


class S3BlobStore(BlobStore):
    """Blobs in bucket ``bucket`` under ``prefix`` (see the module docstring).

    Args:
        bucket: the bucket (it must exist: :meth:`check` says so otherwise).
        prefix: a key prefix without leading or trailing ``/`` (may be empty).
        endpoint_url: the S3 endpoint; by default ``AWS_ENDPOINT_URL_S3`` or
            ``AWS_ENDPOINT_URL``, else AWS's.
        region: by default ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, else ``us-east-1``.
        multipart_threshold: content past this many bytes goes up as an S3 multipart upload
            (at least 5 MiB, S3's smallest part).
        spool_dir: where received content past 8 MiB is spooled (the system's temporary
            directory by default).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        spool_dir: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or _endpoint()
        self.region = (
            region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        threshold = max(5 * 1024 * 1024, multipart_threshold)
        self.transfer = TransferConfig(
            multipart_threshold=threshold, multipart_chunksize=threshold, max_concurrency=4
        )
        self.spool_dir = spool_dir
        self._client: Any = None
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 S3 client (thread-safe; created on first use)."""
        with self._lock:
            if self._client is None:
                config = Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                    # a custom endpoint (MinIO, Ceph, an emulator) rarely resolves bucket hosts
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                )
                session = boto3.session.Session()
                self._client = session.client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
                )
            return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _blob_key(self, sha256: str) -> str:
        return self._key(f"{sha256[:2]}/{check_key(sha256)}")

    def _upload_prefix(self, upload_id: str) -> str:
        return self._key(f"uploads/{check_upload_id(upload_id)}/")

    @property
    def _where(self) -> str:
        return f"{self.url} (endpoint {self.endpoint_url or 'AWS'})"

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn boto3's errors into StoreError naming the blob store."""
        try:
            yield
        except (BlobNotFound, StoreError):
            raise
        except ClientError as exc:
            raise StoreError(f"{doing} in {self._where} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"{doing} in {self._where} failed: {exc}") from exc

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", ())

    def _head_size(self, key: str) -> int | None:
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise
        return int(answer["ContentLength"])

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # -- writing -------------------------------------------------------------------------------

    def incoming(self) -> Incoming:
        return _Spool(self.spool_dir)

    def commit(self, incoming: Incoming) -> None:
        if not isinstance(incoming, _Spool):
            raise TypeError(f"{self!r} commits content it received itself, not {incoming!r}")
        try:
            with self._errors(f"storing blob {incoming.sha256}"):
                key = self._blob_key(incoming.sha256)
                if self._head_size(key) != incoming.size:  # a sound copy is kept
                    incoming.file.seek(0)
                    self.client.upload_fileobj(
                        incoming.file, self.bucket, key, Config=self.transfer
                    )
        finally:
            incoming.discard()

    def put(self, source: Path | bytes | BinaryIO) -> tuple[str, int]:
        if not isinstance(source, Path):
            return super().put(source)
        # a file is hashed first, then sent from where it is: no spooled copy
        sha256, size = sha256_of(source)
        with self._errors(f"storing blob {sha256}"):
            key = self._blob_key(sha256)
            if self._head_size(key) != size:
                self.client.upload_file(str(source), self.bucket, key, Config=self.transfer)
        return sha256, size

    # -- reading -------------------------------------------------------------------------------

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> BinaryIO:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range {start}..{end}")
        key = self._blob_key(sha256)
        if end == start:
            return io.BytesIO(b"")
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with self._errors(f"reading blob {sha256}"):
            try:
                answer = self.client.get_object(**args)
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    raise BlobNotFound(f"no content {sha256} in {self._where}") from None
                if _code(exc) == "InvalidRange":  # the range starts past the end
                    return io.BytesIO(b"")
                raise
        body: BinaryIO = answer["Body"]
        return body

    def exists(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    def size(self, sha256: str) -> int | None:
        with self._errors(f"looking up blob {sha256}"):
            return self._head_size(self._blob_key(sha256))

    def delete(self, sha256: str) -> None:
        with self._errors(f"deleting blob {sha256}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._blob_key(sha256))

    def _blobs(self) -> Iterator[tuple[str, int]]:
        base = self._key("")
        with self._errors("listing blobs"):
            for item in self._list(base):
                match = _BLOB.fullmatch(item["Key"][len(base) :])
                if match is not None and match.group(2).startswith(match.group(1)):
                    yield match.group(2), int(item["Size"])

    def keys(self) -> Iterator[str]:
        for key, _ in self._blobs():
            yield key

    def total_bytes(self) -> int:
        return sum(size for _, size in self._blobs())

    # -- multipart uploads -----------------------------------------------------------------

    def put_part(self, upload_id: str, number: int, incoming: Incoming, mime_type: str) -> None:
        if number < 1:
            raise ValueError(f"part number {number} must be 1 or more")
        if not isinstance(incoming, _Spool):
            raise TypeError(f"{self!r} keeps parts it received itself, not {incoming!r}")
        folder = self._upload_prefix(upload_id)
        try:
            with self._errors(f"storing part {number} of upload {upload_id}"):
                if self._head_size(folder + _MIME_NAME) is None:
                    self.client.put_object(
                        Bucket=self.bucket, Key=folder + _MIME_NAME, Body=mime_type.encode()
                    )
                incoming.file.seek(0)
                self.client.upload_fileobj(
                    incoming.file,
                    self.bucket,
                    f"{folder}{number:05d}-{incoming.md5}",
                    Config=self.transfer,
                )
        finally:
            incoming.discard()

    def _part_keys(self, upload_id: str) -> dict[int, tuple[str, str]]:
        folder = self._upload_prefix(upload_id)
        found: dict[int, tuple[str, str]] = {}
        for item in self._list(folder):
            match = _PART.fullmatch(item["Key"][len(folder) :])
            if match is not None:
                found[int(match.group(1))] = (item["Key"], match.group(2))
        return found

    def parts(self, upload_id: str) -> dict[int, str]:
        with self._errors(f"listing the parts of upload {upload_id}"):
            return {n: md5 for n, (_, md5) in self._part_keys(upload_id).items()}

    def join_parts(self, upload_id: str, count: int) -> tuple[Incoming, str]:
        with self._errors(f"joining the parts of upload {upload_id}"):
            found = self._part_keys(upload_id)
            missing = [n for n in range(1, count + 1) if n not in found]
            if missing:
                raise BlobNotFound(f"upload {upload_id} has no part(s) {missing[:10]}")
            incoming = self.incoming()
            try:
                for number in range(1, count + 1):
                    body = self.client.get_object(Bucket=self.bucket, Key=found[number][0])["Body"]
                    with contextlib.closing(body):
                        incoming.copy_from(body)
                incoming.finish()
                try:
                    mime = self.client.get_object(
                        Bucket=self.bucket, Key=self._upload_prefix(upload_id) + _MIME_NAME
                    )["Body"].read()
                    mime_type = mime.decode() or "application/octet-stream"
                except ClientError as exc:
                    if _code(exc) not in _NOT_FOUND:
                        raise
                    mime_type = "application/octet-stream"
            except BaseException:
                incoming.discard()
                raise
        return incoming, mime_type

    def drop_upload(self, upload_id: str) -> None:
        with self._errors(f"deleting upload {upload_id}"):
            self._delete_keys([item["Key"] for item in self._list(self._upload_prefix(upload_id))])

    def sweep(self, horizon: float) -> int:
        uploads = self._key("uploads/")
        newest: dict[str, float] = {}
        keys: dict[str, list[str]] = {}
        with self._errors("sweeping abandoned uploads"):
            for item in self._list(uploads):
                upload_id = item["Key"][len(uploads) :].partition("/")[0]
                stamp = item["LastModified"].timestamp()
                newest[upload_id] = max(newest.get(upload_id, 0.0), stamp)
                keys.setdefault(upload_id, []).append(item["Key"])
            old = [upload_id for upload_id, stamp in newest.items() if stamp < horizon]
            for upload_id in old:
                self._delete_keys(keys[upload_id])
            # S3 multipart uploads of a process killed mid-upload keep their parts (and bill
            # them) until aborted
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("")):
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"].timestamp() < horizon:
                        with contextlib.suppress(ClientError):
                            self.client.abort_multipart_upload(
                                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                            )
        return len(old)

    # -- lifecycle -------------------------------------------------------------------------

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise StoreError(
                f"no credentials for the blob store {self._where}; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or another source boto3 reads)"
            ) from None
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND:
                raise StoreError(
                    f"the bucket {self.bucket!r} of the blob store {self._where} does not exist; "
                    f"create it (e.g. `aws s3 mb s3://{self.bucket}`) or set DESPINA_BLOBS "
                    "(--blobs) to an existing bucket"
                ) from None
            if code in {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId"}:
                raise StoreError(
                    f"the blob store {self._where} refused access to bucket {self.bucket!r} "
                    f"({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the "
                    "bucket's policy"
                ) from None
            raise StoreError(f"the blob store {self._where} answered: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(
                f"cannot reach the blob store {self._where}: {exc}; check AWS_ENDPOINT_URL "
                "(or AWS_ENDPOINT_URL_S3) and that the service is up"
            ) from None

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
