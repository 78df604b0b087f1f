"""File contents for a store copy: where a store's contents are read from and written to.

Each side is a blob store (:mod:`despina.store.blobs`: a directory or S3-compatible object
storage). Content is received whole before it is put under its address (the blob store's
``put``), so an interrupted copy leaves no partial content under an address, and content is
hashed on the way: damaged content in the source is not copied under its key.

The destination's contents go where ``--blobs`` says, else ``DESPINA_BLOBS``, else the
destination's own directory (the blob store it was opened with); the source's are read from
``--source-blobs``, else the source's own directory ``<home>/blobs`` (``DESPINA_BLOBS``
describes the destination).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO

from despina.store.blobs import BlobNotFound, BlobStore, DirectoryBlobStore, open_blob_store
from despina.store.contract import Store

__all__ = ["BlobSide", "blob_side"]


class BlobSide:
    """The contents of one side of a copy, by SHA-256."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.display = blobs.url

    def has(self, sha256: str, size: int) -> bool:
        """Whether content with this hash and size is there."""
        return self.blobs.size(sha256) == size

    @contextlib.contextmanager
    def open(self, sha256: str) -> Iterator[BinaryIO]:
        """The content as a stream.

        Raises:
            FileNotFoundError: it is not there.
        """
        try:
            stream = self.blobs.open(sha256)
        except BlobNotFound as exc:
            raise FileNotFoundError(str(exc)) from exc
        with stream:
            yield stream

    def put(self, sha256: str, stream: BinaryIO) -> None:
        """Store the content read from ``stream``, which must hash to ``sha256``.

        Raises:
            FileNotFoundError: it hashed to something else (the source's copy is damaged); it
                is not stored under ``sha256``.
        """
        stored, _ = self.blobs.put(stream)
        if stored != sha256:
            # what was read is kept under its own hash, unreferenced (a sweep may drop it)
            raise FileNotFoundError(f"the source's content {sha256} is damaged")


def blob_side(
    store: Store, url: str | os.PathLike[str] | None, *, destination: bool = False
) -> BlobSide:
    """Where ``store``'s file contents are: the blob store at ``url`` (a directory or
    ``s3://bucket/prefix``) when given; for the ``destination``, else the blob store it was
    opened with (``DESPINA_BLOBS``, else its directory); for the source, else its directory
    ``<home>/blobs``.

    Raises:
        ConfigError: ``url`` is malformed.
        StoreError: the blob store cannot be reached.
    """
    if url is not None:
        return BlobSide(open_blob_store(url, default=store.blobs_dir))
    if destination:
        return BlobSide(store.blobs)
    return BlobSide(DirectoryBlobStore(store.blobs_dir))
