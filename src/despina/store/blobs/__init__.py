"""File contents: the blob store contract, its directory and S3 implementations, and the
database's bookkeeping of which storage key holds which content.

* :mod:`despina.store.blobs.contract`: :class:`BlobStore`, the contract;
* :mod:`despina.store.blobs.directory`: :class:`DirectoryBlobStore` (``<home>/blobs``);
* :mod:`despina.store.blobs.s3`: :class:`S3BlobStore` (``s3://bucket/prefix``, boto3; imported
  on first use);
* :mod:`despina.store.blobs.opening`: :func:`open_blob_store` from ``DESPINA_BLOBS`` / a URL;
* :mod:`despina.store.blobs.bookkeeping`: storage keys, signed-URL uses, multipart uploads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from despina.store.blobs.bookkeeping import (
    MultipartUpload,
    add_multipart_upload,
    claim_signed_url,
    find_multipart_upload,
    finish_signed_url,
    mark_multipart_completed,
    prune_upload_records,
    register_blob_key,
    release_signed_url,
)
from despina.store.blobs.contract import BlobNotFound, BlobStore, Incoming
from despina.store.blobs.directory import (
    VERIFY_EXISTING_MAX_BYTES,
    DirectoryBlobStore,
    IncomingBlob,
    blob_path,
    commit_blob,
    fsync_directory,
    put_blob,
)
from despina.store.blobs.opening import BLOBS_ENV, open_blob_store

if TYPE_CHECKING:
    from despina.store.blobs.s3 import S3BlobStore

__all__ = [
    "BLOBS_ENV",
    "VERIFY_EXISTING_MAX_BYTES",
    "BlobNotFound",
    "BlobStore",
    "DirectoryBlobStore",
    "Incoming",
    "IncomingBlob",
    "MultipartUpload",
    "S3BlobStore",
    "add_multipart_upload",
    "blob_path",
    "claim_signed_url",
    "commit_blob",
    "find_multipart_upload",
    "finish_signed_url",
    "fsync_directory",
    "mark_multipart_completed",
    "open_blob_store",
    "prune_upload_records",
    "put_blob",
    "register_blob_key",
    "release_signed_url",
]


def __getattr__(name: str) -> Any:
    if name == "S3BlobStore":  # boto3 is imported only by those who use S3
        from despina.store.blobs.s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(name)
