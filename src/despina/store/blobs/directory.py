"""Blobs in a local directory: ``<root>/<sha[:2]>/<sha256>`` (the embedded store's layout).

Durability and integrity (issue #12):

* content is received into a temporary file (``.incoming-*``) in the blob directory, hashed on
  the way, fsynced, renamed into place, and the directory fsynced, before anyone is told it is
  stored;
* when content whose address already exists arrives again, the existing file is checked (its
  size, and its hash up to :data:`VERIFY_EXISTING_MAX_BYTES`) and replaced when damaged, so a
  re-upload repairs a blob instead of being de-duplicated onto a broken copy.

Parts of the server's multipart uploads live in ``<uploads>/<upload id>/<nnnnn>-<md5>`` with the
file's MIME type in ``<uploads>/<upload id>/mime-type``. A directory blob store serves one
machine (or a directory every replica mounts).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from despina.errors import StoreError
from despina.store.blobs.contract import (
    COPY_CHUNK,
    BlobNotFound,
    BlobStore,
    Incoming,
    check_key,
    check_upload_id,
)

__all__ = [
    "VERIFY_EXISTING_MAX_BYTES",
    "DirectoryBlobStore",
    "IncomingBlob",
    "blob_path",
    "commit_blob",
    "fsync_directory",
    "put_blob",
]

logger = logging.getLogger("despina.store.blobs")

VERIFY_EXISTING_MAX_BYTES = 256 * 1024 * 1024
"""An existing blob up to this size is re-hashed when the same content arrives again; a larger
one is checked by size only (re-reading it would cost as much as the upload)."""

_MIME_FILE = "mime-type"


def blob_path(blobs_dir: Path, sha256: str) -> Path:
    """Where the content with this hash lives."""
    return blobs_dir / sha256[:2] / sha256


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IncomingBlob(Incoming):
    """Content being received into a temporary file in ``directory`` (its :attr:`path`).
    :meth:`finish` fsyncs it; :meth:`discard` removes it."""

    def __init__(self, directory: Path, prefix: str = ".incoming-") -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")

    def _write(self, data: bytes) -> None:
        self._file.write(data)

    def finish(self) -> None:
        """Flush and fsync the content (the file stays where it is)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


def _is_sound(path: Path, sha256: str, size: int) -> bool:
    """Whether the file at ``path`` holds content of this hash (size always, hash when cheap)."""
    try:
        if path.stat().st_size != size:
            return False
        if size > VERIFY_EXISTING_MAX_BYTES:
            return True
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while block := source.read(COPY_CHUNK):
                digest.update(block)
        return digest.hexdigest() == sha256
    except OSError:
        return False


def commit_blob(blobs_dir: Path, source: Path, sha256: str, size: int) -> None:
    """Move ``source`` (fsynced, in ``blobs_dir``, holding ``size`` bytes hashing to ``sha256``)
    to its content address, durably; an existing sound copy is kept and ``source`` removed, a
    damaged one (wrong size or hash) is replaced.

    Raises:
        OSError: the store cannot be written.
    """
    target = blob_path(blobs_dir, sha256)
    if target.exists():
        if _is_sound(target, sha256, size):
            source.unlink(missing_ok=True)
            return
        logger.warning("blob %s was damaged on disk; replaced by the content just received", sha256)
    if not target.parent.is_dir():
        target.parent.mkdir(exist_ok=True)
        fsync_directory(blobs_dir)
    os.replace(source, target)
    fsync_directory(target.parent)


def put_blob(blobs_dir: Path, source: Path | bytes | BinaryIO) -> tuple[str, int]:
    """Store content (a file path, bytes or a readable stream) in the directory ``blobs_dir``
    and return ``(sha256, size)`` (see :meth:`DirectoryBlobStore.put`).

    Raises:
        OSError: the source cannot be read or the store cannot be written.
    """
    return DirectoryBlobStore(blobs_dir).put(source)


class _Range:
    """A read-only window ``[start, end)`` of an open file."""

    def __init__(self, file: BinaryIO, remaining: int | None) -> None:
        self._file = file
        self._remaining = remaining

    def read(self, size: int = -1) -> bytes:
        if self._remaining is not None:
            size = self._remaining if size < 0 else min(size, self._remaining)
        data = self._file.read(size)
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _Range:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DirectoryBlobStore(BlobStore):
    """Blobs as files under ``root`` (see the module docstring).

    Args:
        root: the blob directory (created, mode 0700, at the first write).
        uploads_dir: where multipart upload parts are kept; ``<root>/.uploads`` by default
            (the embedded store keeps them in ``<home>/uploads``).
    """

    def __init__(self, root: Path, *, uploads_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.uploads_dir = uploads_dir if uploads_dir is not None else self.root / ".uploads"

    # -- writing -------------------------------------------------------------------------------

    def incoming(self) -> IncomingBlob:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return IncomingBlob(self.root)

    def commit(self, incoming: Incoming) -> None:
        if not isinstance(incoming, IncomingBlob):
            raise TypeError(f"{self!r} commits content it received itself, not {incoming!r}")
        try:
            commit_blob(self.root, incoming.path, incoming.sha256, incoming.size)
        except BaseException:
            incoming.discard()
            raise

    # -- reading -------------------------------------------------------------------------------

    def local_path(self, sha256: str) -> Path | None:
        path = blob_path(self.root, check_key(sha256))
        return path if path.is_file() else None

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> BinaryIO:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range {start}..{end}")
        try:
            file = blob_path(self.root, check_key(sha256)).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"no content {sha256} in the blob directory {self.url}") from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {sha256} in {self.url}: {exc}") from exc
        if start:
            file.seek(start)
        if end is None:
            return file
        return _Range(file, end - start)  # type: ignore[return-value]

    def exists(self, sha256: str) -> bool:
        return blob_path(self.root, check_key(sha256)).is_file()

    def size(self, sha256: str) -> int | None:
        try:
            return blob_path(self.root, check_key(sha256)).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, sha256: str) -> None:
        blob_path(self.root, check_key(sha256)).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for fan in sorted(self.root.iterdir()):
            if len(fan.name) != 2 or not fan.is_dir():
                continue
            for file in fan.iterdir():
                if file.name.startswith(fan.name) and len(file.name) == 64:
                    yield file.name

    def total_bytes(self) -> int:
        total = 0
        for key in self.keys():
            total += self.size(key) or 0  # deleted meanwhile: 0
        return total

    # -- multipart uploads -----------------------------------------------------------------

    def _upload(self, upload_id: str) -> Path:
        return self.uploads_dir / check_upload_id(upload_id)

    def put_part(self, upload_id: str, number: int, incoming: Incoming, mime_type: str) -> None:
        if number < 1:
            raise ValueError(f"part number {number} must be 1 or more")
        if not isinstance(incoming, IncomingBlob):
            raise TypeError(f"{self!r} keeps parts it received itself, not {incoming!r}")
        folder = self._upload(upload_id)
        folder.mkdir(parents=True, exist_ok=True)
        mime_file = folder / _MIME_FILE
        if not mime_file.exists():
            mime_file.write_text(mime_type)
        # The part's MD5 is in its name: completion checks the client's ETags against it.
        target = folder / f"{number:05d}-{incoming.md5}"
        try:
            os.replace(incoming.path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(incoming.path, target)  # uploads on another file system
        fsync_directory(folder)

    def _part_files(self, upload_id: str) -> dict[int, Path]:
        folder = self._upload(upload_id)
        found: dict[int, Path] = {}
        for file in folder.glob("[0-9]*-*") if folder.is_dir() else ():
            digits, _, _ = file.name.partition("-")
            found[int(digits)] = file
        return found

    def parts(self, upload_id: str) -> dict[int, str]:
        return {n: f.name.partition("-")[2] for n, f in self._part_files(upload_id).items()}

    def join_parts(self, upload_id: str, count: int) -> tuple[Incoming, str]:
        found = self._part_files(upload_id)
        missing = [n for n in range(1, count + 1) if n not in found]
        if missing:
            raise BlobNotFound(f"upload {upload_id} has no part(s) {missing[:10]}")
        incoming = self.incoming()
        try:
            for number in range(1, count + 1):
                with found[number].open("rb") as source:
                    incoming.copy_from(source)
            incoming.finish()
        except BaseException:
            incoming.discard()
            raise
        mime_file = self._upload(upload_id) / _MIME_FILE
        mime_type = mime_file.read_text() if mime_file.is_file() else "application/octet-stream"
        return incoming, mime_type

    def drop_upload(self, upload_id: str) -> None:
        shutil.rmtree(self._upload(upload_id), ignore_errors=True)

    def sweep(self, horizon: float) -> int:
        for stray in self.root.glob(".incoming-*") if self.root.is_dir() else ():
            try:
                if stray.stat().st_mtime < horizon:
                    stray.unlink()
            except FileNotFoundError:  # finished or swept meanwhile
                continue
        removed = 0
        try:
            folders = list(self.uploads_dir.iterdir())
        except FileNotFoundError:
            return 0
        for folder in folders:
            try:
                # A part renamed into the folder updates the folder's mtime.
                if not folder.is_dir() or folder.stat().st_mtime >= horizon:
                    continue
            except FileNotFoundError:  # completed meanwhile
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        return removed

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(
                f"the blob store {self.url!r} is a file, not a directory; set DESPINA_BLOBS "
                "(--blobs) to a directory or s3://bucket/prefix"
            )
