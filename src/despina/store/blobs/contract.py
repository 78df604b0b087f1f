"""The blob store contract: where the contents of logged files live, addressed by SHA-256.

A store's file contents are kept apart from its database, in a :class:`BlobStore`: a local
directory (:class:`~despina.store.blobs.directory.DirectoryBlobStore`, the default, beside the
embedded store) or S3-compatible object storage
(:class:`~despina.store.blobs.s3.S3BlobStore`). Every blob is named by the SHA-256 of its
content (64 lower-case hex digits, its *key*), so identical files are stored once and a key,
once written, always holds the same bytes. Which project's storage key maps to which content
is bookkeeping in the database (:mod:`despina.store.blobs.bookkeeping`), not the blob store's.

Content arrives in two steps, so that nothing half-received is ever visible under a key:
:meth:`BlobStore.incoming` gives an :class:`Incoming` that hashes what is written to it, and
:meth:`BlobStore.commit` puts it under its key once complete. :meth:`BlobStore.put` does both
for a file, bytes or a stream.

The server's multipart uploads keep their parts in the blob store too (not on a replica's disk),
so that any replica of a server may receive a part or complete the upload:
:meth:`BlobStore.put_part`, :meth:`BlobStore.parts`, :meth:`BlobStore.join_parts`,
:meth:`BlobStore.drop_upload` and :meth:`BlobStore.sweep`.

Implementations are safe to share between threads. Their methods block on I/O (the server
calls them from worker threads).
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from despina.errors import StoreError

__all__ = ["COPY_CHUNK", "BlobNotFound", "BlobStore", "Incoming", "check_key", "sha256_of"]

COPY_CHUNK = 1024 * 1024
_KEY = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID = re.compile(r"[0-9A-Za-z]{1,64}")


class BlobNotFound(StoreError, LookupError):
    """No content is stored under the key asked for."""

    status = 404


def check_key(sha256: str) -> str:
    """``sha256`` if it is a blob key (64 lower-case hex digits).

    Raises:
        ValueError: it is not.
    """
    if not isinstance(sha256, str) or not _KEY.fullmatch(sha256):
        raise ValueError(f"blob key {sha256!r:.80} is not a SHA-256 in lower-case hex")
    return sha256


def check_upload_id(upload_id: str) -> str:
    """``upload_id`` if it is an upload id (1-64 ASCII letters and digits).

    Raises:
        ValueError: it is not.
    """
    if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"upload id {upload_id!r:.80} must be 1-64 letters and digits")
    return upload_id


def sha256_of(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of the file at ``path``.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while block := source.read(COPY_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class Incoming(abc.ABC):
    """Content being received: hashed (SHA-256 and MD5) as it is written, stored nowhere a
    reader can see until :meth:`BlobStore.commit` (or :meth:`BlobStore.put_part`) takes it.

    Attributes:
        size: bytes written so far.
    """

    size: int

    def __init__(self) -> None:
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> None:
        """Append ``data``.

        Raises:
            OSError: the bytes cannot be kept (disk full, ...).
        """
        self._sha256.update(data)  # hashlib releases the GIL on large buffers
        self._md5.update(data)
        self._write(data)
        self.size += len(data)

    def copy_from(self, source: BinaryIO) -> None:
        """Append everything left in ``source``, a block at a time."""
        while block := source.read(COPY_CHUNK):
            self.write(block)

    @property
    def sha256(self) -> str:
        """The SHA-256 (hex) of what was written: the blob's key once committed."""
        return self._sha256.hexdigest()

    @property
    def md5(self) -> str:
        """The MD5 (hex) of what was written (the ETag an S3-style upload answers)."""
        return self._md5.hexdigest()

    @abc.abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def finish(self) -> None:
        """Everything was written: make it durable where it is kept (a local file is fsynced).

        Raises:
            OSError: it cannot be made durable.
        """

    @abc.abstractmethod
    def discard(self) -> None:
        """Drop what was received (idempotent; a no-op after a commit)."""


class BlobStore(abc.ABC):
    """Content-addressed file contents (see the module docstring).

    Attributes:
        url: where the blobs are, fit for messages (a directory, or ``s3://bucket/prefix``).
    """

    url: str

    # -- writing -------------------------------------------------------------------------------

    @abc.abstractmethod
    def incoming(self) -> Incoming:
        """Start receiving content (see :class:`Incoming`).

        Raises:
            StoreError: the blob store cannot take content now.
        """

    @abc.abstractmethod
    def commit(self, incoming: Incoming) -> None:
        """Store finished ``incoming`` under its key (its SHA-256), durably, and release it.

        Content already stored under that key is kept when sound (same size; for a directory,
        the same hash up to a size limit) and replaced when damaged.

        Raises:
            StoreError, OSError: the content could not be stored; nothing is visible under the
                key that was not there before.
        """

    def put(self, source: Path | bytes | BinaryIO) -> tuple[str, int]:
        """Store a file (its path), bytes, or everything left in a readable binary stream.

        Returns:
            ``(sha256, size)``: the blob's key and its size in bytes.

        Raises:
            OSError: the source cannot be read.
            StoreError, OSError: the blob store cannot be written.
        """
        incoming = self.incoming()
        try:
            if isinstance(source, bytes):
                incoming.write(source)
            elif isinstance(source, Path):
                with source.open("rb") as stream:
                    incoming.copy_from(stream)
            else:
                incoming.copy_from(source)
            incoming.finish()
            self.commit(incoming)
            return incoming.sha256, incoming.size
        except BaseException:
            incoming.discard()
            raise

    # -- reading -------------------------------------------------------------------------------

    @abc.abstractmethod
    def open(self, sha256: str, start: int = 0, end: int | None = None) -> BinaryIO:
        """A readable binary stream of the blob's bytes ``start`` up to ``end`` (exclusive;
        the end of the blob when None). Read it in blocks: a big blob is never loaded whole.
        Close it when done.

        Raises:
            ValueError: ``sha256`` is not a blob key, or the range is negative.
            BlobNotFound: nothing is stored under the key.
            StoreError: the blob store cannot be read.
        """

    def read(self, sha256: str, start: int = 0, length: int | None = None) -> bytes:
        """The blob's bytes from ``start``, ``length`` of them (to the end when None); fewer
        when the blob ends first.

        Raises:
            as :meth:`open`.
        """
        end = None if length is None else start + length
        if end is not None and end <= start:
            return b""
        with self.open(sha256, start, end) as stream:
            return stream.read()

    def local_path(self, sha256: str) -> Path | None:
        """The blob's file when it is a file on this machine (a server may send it with
        ``sendfile``), else None."""
        return None

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether content is stored under the key.

        Raises:
            StoreError: the blob store cannot be read.
        """

    @abc.abstractmethod
    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes; None when nothing is stored under the key.

        Raises:
            StoreError: the blob store cannot be read.
        """

    @abc.abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob (a missing one is not an error).

        Raises:
            StoreError: the blob store cannot be written.
        """

    @abc.abstractmethod
    def keys(self) -> Iterator[str]:
        """Every blob key stored, in no particular order (upload parts are not blobs).

        Raises:
            StoreError: the blob store cannot be listed.
        """

    def total_bytes(self) -> int:
        """The bytes used by every blob together."""
        return sum(self.size(key) or 0 for key in self.keys())

    # -- multipart uploads -----------------------------------------------------------------

    @abc.abstractmethod
    def put_part(self, upload_id: str, number: int, incoming: Incoming, mime_type: str) -> None:
        """Keep finished ``incoming`` as part ``number`` (1-based) of upload ``upload_id``,
        with the MIME type the upload's file will get (the first part's to arrive wins).

        Raises:
            ValueError: a malformed upload id or a part number below 1.
            StoreError, OSError: the part could not be stored.
        """

    @abc.abstractmethod
    def parts(self, upload_id: str) -> dict[int, str]:
        """The parts of upload ``upload_id`` received so far: part number -> MD5 (hex)."""

    @abc.abstractmethod
    def join_parts(self, upload_id: str, count: int) -> tuple[Incoming, str]:
        """Parts 1..``count`` of the upload joined, in order, into finished content (not yet
        committed: give it to :meth:`commit`, or discard it), and the upload's MIME type.

        Raises:
            BlobNotFound: a part is missing.
            StoreError, OSError: the parts cannot be read or the content kept.
        """

    @abc.abstractmethod
    def drop_upload(self, upload_id: str) -> None:
        """Forget the upload's parts (idempotent)."""

    @abc.abstractmethod
    def sweep(self, horizon: float) -> int:
        """Remove leftovers older than ``horizon`` (a POSIX time): uploads whose last part
        arrived before it, and content an interrupted write left behind.

        Returns:
            How many uploads were removed.
        """

    # -- lifecycle -------------------------------------------------------------------------

    def check(self) -> None:
        """Make sure the blob store is usable (exists, can be reached); writes nothing.

        Raises:
            StoreError: it is not; the message names the URL and the fix.
        """
        return None

    def close(self) -> None:
        """Release connections (the object stays usable)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
