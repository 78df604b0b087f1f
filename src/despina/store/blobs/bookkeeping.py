"""Bookkeeping of file contents in the database (the contents are in the blob store).

The ``blobs`` table maps a project's storage key (the path a client chose, see
logging-api.md §6.3) to the content hash, so identical files are stored once; a storage key,
once written, keeps its content: :func:`register_blob_key` never replaces a mapping (a retry of
the same content is accepted).

The server's upload bookkeeping also lives here: signed write URLs already used (each is good
for one upload) and the multipart uploads it offered (tied to one project and storage key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from despina.store.contract import Store

__all__ = [
    "MultipartUpload",
    "add_multipart_upload",
    "claim_signed_url",
    "find_multipart_upload",
    "finish_signed_url",
    "mark_multipart_completed",
    "prune_upload_records",
    "register_blob_key",
    "release_signed_url",
]


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
