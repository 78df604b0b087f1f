"""File contents for a store copy: where a store's contents are read from and written to.

A side is a blob store (:mod:`despina.store.blobs`: a directory or S3-compatible object
storage) or, before that contract, a directory of content-addressed files
(``<dir>/<sha[:2]>/<sha256>``, the layout of ``store.blobs_dir``). Content is written to a
temporary file (or object) and put under its address once complete, so an interrupted copy
leaves no partial content under an address.

The destination's contents go where ``--blobs`` says, else ``DESPINA_BLOBS``, else the
destination's own directory; the source's are read from ``--source-blobs``, else the source's
own directory (``DESPINA_BLOBS`` describes the destination).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from despina.store.contract import Store

__all__ = ["BlobSide", "DirectoryBlobs", "StoreBlobs", "blob_side"]

_BLOCK = 1024 * 1024


class BlobSide(Protocol):
    """Content-addressed file contents of one store."""

    display: str

    def has(self, sha256: str, size: int) -> bool:
        """Whether content with this hash (and size) is there."""

    def open(self, sha256: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """The content, as a stream. Raises FileNotFoundError when it is not there."""

    def put(self, sha256: str, size: int, stream: BinaryIO) -> None:
        """Store ``size`` bytes of content hashing to ``sha256`` read from ``stream``."""


class DirectoryBlobs:
    """Contents as files in a directory: ``<dir>/<sha[:2]>/<sha256>``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.display = str(directory)

    def _path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256

    def has(self, sha256: str, size: int) -> bool:
        try:
            return self._path(sha256).stat().st_size == size
        except OSError:
            return False

    @contextlib.contextmanager
    def open(self, sha256: str) -> Iterator[BinaryIO]:
        with self._path(sha256).open("rb") as stream:
            yield stream

    def put(self, sha256: str, size: int, stream: BinaryIO) -> None:
        target = self._path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(_BLOCK):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class StoreBlobs:
    """A blob store (:class:`despina.store.blobs.BlobStore`) seen through the side's methods."""

    def __init__(self, blobs: Any) -> None:
        self.blobs = blobs
        self.display = str(blobs.url)

    def has(self, sha256: str, size: int) -> bool:
        return bool(self.blobs.size(sha256) == size)

    @contextlib.contextmanager
    def open(self, sha256: str) -> Iterator[BinaryIO]:
        from despina.store.blobs import BlobNotFound

        try:
            stream: BinaryIO = self.blobs.open(sha256)
        except BlobNotFound as exc:
            raise FileNotFoundError(str(exc)) from exc
        with stream:
            yield stream

    def put(self, sha256: str, size: int, stream: BinaryIO) -> None:
        stored, _ = self.blobs.put(stream)
        if stored != sha256:
            # the source held damaged content under this key: what was read is kept under
            # its own hash (unreferenced), and the key stays missing in the destination
            raise FileNotFoundError(f"the source's content {sha256} is damaged")


def blob_side(
    store: Store, url: str | os.PathLike[str] | None, *, environment: bool = False
) -> BlobSide:
    """Where ``store``'s file contents are: the blob store at ``url`` when given (a directory
    or ``s3://bucket/prefix``), else ``DESPINA_BLOBS`` when ``environment`` is set, else the
    store's own blob directory."""
    try:
        from despina.store.blobs import DirectoryBlobStore, open_blob_store
    except ImportError:  # before the blob store contract
        return DirectoryBlobs(Path(url).expanduser() if url else store.blobs_dir)
    if url is None and not environment:
        return StoreBlobs(DirectoryBlobStore(store.blobs_dir))
    return StoreBlobs(open_blob_store(url, default=store.blobs_dir))
