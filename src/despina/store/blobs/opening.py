"""Where file contents go: ``DESPINA_BLOBS`` / ``--blobs`` / ``Store.open(blobs=)``.

A blob URL is a directory path, or ``s3://bucket/prefix`` for S3-compatible object storage
(endpoint, keys and region from the standard AWS environment variables: ``AWS_ENDPOINT_URL_S3``
or ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``). Without one, a store keeps its contents in ``<home>/blobs``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from despina.errors import ConfigError
from despina.store.blobs.contract import BlobStore
from despina.store.blobs.directory import DirectoryBlobStore

__all__ = ["BLOBS_ENV", "BlobLocation", "open_blob_store", "parse_blobs_url"]

BLOBS_ENV = "DESPINA_BLOBS"
ACCEPTED = "a directory or s3://bucket/prefix"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class BlobLocation:
    """A parsed blob URL: a directory (``path``) or an S3 bucket and key prefix."""

    kind: str  # "directory" or "s3"
    path: Path | None = None
    bucket: str = ""
    prefix: str = ""

    @property
    def url(self) -> str:
        if self.kind == "directory":
            return str(self.path)
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_blobs_url(value: str | os.PathLike[str]) -> BlobLocation:
    """Parse a blob URL (see the module docstring).

    Raises:
        ConfigError: an unknown scheme or a malformed bucket name, naming the value and the fix.
    """
    text = os.fspath(value)
    if not text:
        raise ConfigError(f"the blob store URL is empty; give {ACCEPTED}")
    scheme = _SCHEME.match(text)
    if scheme is None:
        return BlobLocation("directory", path=Path(os.path.abspath(os.path.expanduser(text))))
    name = scheme.group(1).lower()
    rest = text[scheme.end() :]
    if name == "file":
        return BlobLocation("directory", path=Path(os.path.abspath(rest)))
    if name != "s3":
        raise ConfigError(
            f"blob store URL {text!r} has the scheme {name!r}; give {ACCEPTED} (any "
            "S3-compatible service: set AWS_ENDPOINT_URL for one that is not AWS)"
        )
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(
            f"blob store URL {text!r} names the bucket {bucket!r}, which is not a valid S3 "
            "bucket name (3-63 lower-case letters, digits, '.' and '-'); write s3://bucket/prefix"
        )
    prefix = "/".join(part for part in prefix.split("/") if part)
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ConfigError(f"blob store URL {text!r}: the prefix must not hold '.' or '..' parts")
    return BlobLocation("s3", bucket=bucket, prefix=prefix)


def open_blob_store(
    url: str | os.PathLike[str] | None,
    *,
    default: Path,
    uploads_dir: Path | None = None,
    check: bool = True,
) -> BlobStore:
    """The blob store at ``url``, else ``DESPINA_BLOBS``, else the directory ``default``.

    Args:
        url: a blob URL (see the module docstring), or None.
        default: the directory used when no URL is given (a store's ``<home>/blobs``).
        uploads_dir: where the default directory keeps multipart upload parts.
        check: make sure the blob store can be reached before returning (writes nothing).

    Raises:
        ConfigError: the URL is malformed.
        StoreError: the blob store cannot be reached (a missing bucket, an unreachable
            endpoint, refused keys); the message names the URL and the fix.
    """
    chosen = url if url not in (None, "") else os.environ.get(BLOBS_ENV) or None
    store: BlobStore
    if chosen is None:
        store = DirectoryBlobStore(default, uploads_dir=uploads_dir)
    else:
        location = parse_blobs_url(chosen)
        if location.kind == "directory":
            assert location.path is not None
            same = location.path == Path(os.path.abspath(default))
            store = DirectoryBlobStore(location.path, uploads_dir=uploads_dir if same else None)
        else:
            from despina.store.blobs.s3 import S3BlobStore

            store = S3BlobStore(location.bucket, location.prefix)
    if check:
        store.check()
    return store
