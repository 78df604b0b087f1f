"""File contents, kept content-addressed beside the database: ``blobs/<sha[:2]>/<sha256>``.

The ``blobs`` table maps a project's storage key (the path a client chose, see
logging-api.md §6.3) to the content hash, so identical files are stored once.

Durability and integrity (issue #12):

* content is received into a temporary file in the blob directory, hashed on the way, fsynced,
  renamed into place, and the directory fsynced, before anyone is told it is stored;
* a storage key, once written, keeps its content: :func:`register_blob_key` never replaces a
  mapping (a retry of the same content is accepted);
* when content whose address already exists arrives again, the existing file is checked (its
  size, and its hash up to :data:`VERIFY_EXISTING_MAX_BYTES`) and replaced when damaged, so a
  re-upload repairs a blob instead of being de-duplicated onto a broken copy.

The server's upload bookkeeping also lives here: signed write URLs already used (each is good
for one upload) and the multipart uploads it offered (tied to one project and storage key).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from despina.store import Store

__all__ = [
    "VERIFY_EXISTING_MAX_BYTES",
    "IncomingBlob",
    "MultipartUpload",
    "add_multipart_upload",
    "blob_path",
    "claim_signed_url",
    "commit_blob",
    "find_multipart_upload",
    "finish_signed_url",
    "fsync_directory",
    "mark_multipart_completed",
    "prune_upload_records",
    "put_blob",
    "register_blob_key",
    "release_signed_url",
]

logger = logging.getLogger("despina.store.blobs")

_COPY_CHUNK = 1024 * 1024
VERIFY_EXISTING_MAX_BYTES = 256 * 1024 * 1024
"""An existing blob up to this size is re-hashed when the same content arrives again; a larger
one is checked by size only (re-reading it would cost as much as the upload)."""


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


class IncomingBlob:
    """Content being received: a temporary file in ``directory``, hashed (SHA-256 and MD5) as it
    is written. :meth:`finish` fsyncs it; :meth:`discard` removes it.

    The methods block on disk I/O; the server calls them from worker threads.
    """

    def __init__(self, directory: Path, prefix: str = ".incoming-") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes) -> None:
        self._sha256.update(data)  # hashlib releases the GIL on large buffers
        self._md5.update(data)
        self._file.write(data)
        self.size += len(data)

    def copy_from(self, source: BinaryIO) -> None:
        while block := source.read(_COPY_CHUNK):
            self.write(block)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the content (the file stays where it is)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        """Drop what was received (idempotent)."""
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
            while block := source.read(_COPY_CHUNK):
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
    """Store content (a file path, bytes or a readable stream) and return ``(sha256, size)``.

    The content is written to a temporary file, fsynced and renamed into place, so a reader
    never sees a partial blob, a crash leaves at most a stray temporary file, and a damaged
    copy of the same content is repaired.

    Raises:
        OSError: the source cannot be read or the store cannot be written.
    """
    incoming = IncomingBlob(blobs_dir)
    try:
        if isinstance(source, bytes):
            incoming.write(source)
        elif isinstance(source, Path):
            with source.open("rb") as stream:
                incoming.copy_from(stream)
        else:
            incoming.copy_from(source)
        incoming.finish()
        commit_blob(blobs_dir, incoming.path, incoming.sha256, incoming.size)
        return incoming.sha256, incoming.size
    except BaseException:
        incoming.discard()
        raise


# -- storage keys ----------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def register_blob_key(
    store: Store, project_id: int, path: str, sha256: str, size: int, mime_type: str
) -> str:
    """Map a project's storage key to stored content unless the key already has content;
    returns the hash now stored under the key (``sha256`` unless another upload got there
    first: the caller refuses the write). The mapping is durable when this returns: the
    upload is acknowledged next."""
    with store.write(durable=True) as conn:
        conn.execute(
            "INSERT INTO blobs (project_id, path, sha256, size, mime_type, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, path) DO NOTHING",
            (project_id, path, sha256, size, mime_type, _now_ms()),
        )
        row = conn.execute(
            "SELECT sha256 FROM blobs WHERE project_id = ? AND path = ?", (project_id, path)
        ).fetchone()
    return str(row[0])


# -- signed write URLs: one upload each ------------------------------------------------------


def claim_signed_url(store: Store, signature: str, expires_ms: int) -> str | None:
    """Start an upload through the write URL with this signature; None when it may go ahead,
    else ``"active"`` (another upload through it is in progress) or ``"done"`` (used)."""
    with store.write() as conn:
        inserted = conn.execute(
            "INSERT INTO blob_url_uses (signature, expires_ms, state) VALUES (?, ?, 'active') "
            "ON CONFLICT (signature) DO NOTHING",
            (signature, expires_ms),
        ).rowcount
        if inserted:
            return None
        row = conn.execute(
            "SELECT state FROM blob_url_uses WHERE signature = ?", (signature,)
        ).fetchone()
    return str(row[0]) if row is not None else None


def finish_signed_url(store: Store, signature: str) -> None:
    """Record that the upload through this URL succeeded: the URL is used up."""
    with store.write() as conn:
        conn.execute("UPDATE blob_url_uses SET state = 'done' WHERE signature = ?", (signature,))


def release_signed_url(store: Store, signature: str) -> None:
    """Forget a failed upload through this URL, so that the client may try it again."""
    with store.write() as conn:
        conn.execute(
            "DELETE FROM blob_url_uses WHERE signature = ? AND state = 'active'", (signature,)
        )


# -- multipart uploads -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """A multipart upload the server offered: for one project's storage key, of a known size."""

    upload_id: str
    project_id: int
    path: str
    size: int
    part_size: int
    key_id: str
    created_ms: int
    completed_sha256: str | None

    @property
    def parts(self) -> int:
        return max(1, -(-self.size // self.part_size))

    def part_bytes(self, number: int) -> int:
        """The size of part ``number`` (1-based): ``part_size``, the last one the remainder."""
        return min(self.part_size, self.size - (number - 1) * self.part_size)


_UPLOAD_COLUMNS = (
    "upload_id, project_id, path, size, part_size, key_id, created_ms, completed_sha256"
)


def add_multipart_upload(store: Store, upload: MultipartUpload) -> None:
    """Remember an offered multipart upload."""
    with store.write() as conn:
        conn.execute(
            f"INSERT INTO blob_uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                upload.upload_id,
                upload.project_id,
                upload.path,
                upload.size,
                upload.part_size,
                upload.key_id,
                upload.created_ms,
                upload.completed_sha256,
            ),
        )


def find_multipart_upload(store: Store, upload_id: str) -> MultipartUpload | None:
    """The multipart upload with this id; None when unknown (or swept)."""
    row = (
        store.connection()
        .execute(f"SELECT {_UPLOAD_COLUMNS} FROM blob_uploads WHERE upload_id = ?", (upload_id,))
        .fetchone()
    )
    return None if row is None else MultipartUpload(*row)


def mark_multipart_completed(store: Store, upload_id: str, sha256: str) -> None:
    """Record the content a multipart upload was joined into (a repeated completion is a no-op)."""
    with store.write() as conn:
        conn.execute(
            "UPDATE blob_uploads SET completed_sha256 = ? WHERE upload_id = ?", (sha256, upload_id)
        )


def prune_upload_records(store: Store, *, now_ms: int, abandoned_before_ms: int) -> None:
    """Forget write URLs past their expiry and multipart uploads started before
    ``abandoned_before_ms`` (their URLs have expired: no part or retry can arrive)."""
    with store.write() as conn:
        conn.execute("DELETE FROM blob_url_uses WHERE expires_ms < ?", (now_ms,))
        conn.execute("DELETE FROM blob_uploads WHERE created_ms < ?", (abandoned_before_ms,))
