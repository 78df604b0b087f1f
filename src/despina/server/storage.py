"""The storage bridge: signed URLs that point back at this server, and the blobs behind them.

``POST /api/storagebridge/v1/signedUrl`` answers S3-style URLs (``provider: "aws"``) on the
server's own base URL::

    <base>/api/storagebridge/v1/blob/<workspace>/<project>/<storage key>
        ?X-Amz-Date=20250101T120000Z&X-Amz-Expires=3600&X-Amz-Signature=<hmac>

The signature is an HMAC-SHA256 (a sub-key of the server secret) over the method, project,
storage key, date and expiry (and, for multipart parts, the upload id and part number), so the
URL needs no auth header. Contents are stored content-addressed in ``<home>/blobs`` and the
project's storage key is mapped to them in the ``blobs`` table; runs refer to files by storage key.

Answers (wire-protocol.md §7.2): PUT → 200 with an ``ETag`` (MD5 hex in quotes); GET → the bytes,
404 when nothing was uploaded, 400 when the URL expired or its date/expiry are malformed, 403 for
a bad signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from despina.server.auth import Principal, derive_key
from despina.server.errors import ApiError, access_denied, bad_request
from despina.server.settings import ServerSettings
from despina.store.access import blob_record, find_project, register_blob
from despina.store.blobs import blob_path, put_blob
from despina.store.sqlite import Store

__all__ = ["BLOB_ROUTE", "BlobStorage", "SignedTarget", "check_storage_key"]

logger = logging.getLogger("despina.server.storage")

BLOB_ROUTE = "/api/storagebridge/v1/blob"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_KEY_BYTES = 1024
MAX_EXPIRES_SECONDS = 7 * 24 * 3600
MAX_FILES_PER_REQUEST = 10_000
MAX_PARTS = 10_000


def check_storage_key(path: object) -> str:
    """The storage key if it is acceptable.

    Raises:
        ApiError: empty, absolute, with a ``..`` segment, a NUL or over 1024 UTF-8 bytes (400).
    """
    if not isinstance(path, str) or not path:
        raise bad_request(f"file path must be a non-empty string, got {path!r}")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise bad_request(f"file path {path[:200]!r} must be relative, without '\\' or NUL")
    if any(part in ("..", ".") for part in path.split("/")):
        raise bad_request(f"file path {path[:200]!r} must not contain '.' or '..' segments")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise bad_request(f"file path {path[:60]!r}… is over {MAX_KEY_BYTES} UTF-8 bytes")
    return path


@dataclass(frozen=True, slots=True)
class SignedTarget:
    """What a verified signed URL gives access to."""

    method: str
    project: str
    path: str
    upload_id: str
    part_number: int


def _md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class BlobStorage:
    """Signs URLs and serves the blobs they name."""

    def __init__(self, store: Store, server_key: bytes, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        self._key = derive_key(server_key, "blob-url")
        self.uploads_dir = store.home / "uploads"
        self._last_sweep = 0.0

    # -- signing -----------------------------------------------------------------------------

    def _signature(
        self, method: str, project: str, path: str, date: str, expires: str, upload: str, part: str
    ) -> str:
        message = "\n".join((method, project, path, date, expires, upload, part)).encode(
            "utf-8", "surrogatepass"
        )
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(
        self,
        base_url: str,
        method: str,
        project: str,
        path: str,
        *,
        upload_id: str = "",
        part_number: int = 0,
    ) -> str:
        """An absolute URL that lets anyone ``method`` the blob for one hour."""
        date = time.strftime(DATE_FORMAT, time.gmtime())
        expires = str(self.settings.signed_url_seconds)
        part = str(part_number) if part_number else ""
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": date,
            "X-Amz-Expires": expires,
        }
        if upload_id:
            query["uploadId"] = upload_id
            query["partNumber"] = part
        query["X-Amz-Signature"] = self._signature(
            method, project, path, date, expires, upload_id, part
        )
        url_path = f"{BLOB_ROUTE}/{quote(project, safe='/')}/{quote(path, safe='/')}"
        return f"{base_url.rstrip('/')}{url_path}?{urlencode(query)}"

    def verify(self, method: str, project: str, path: str, query: dict[str, str]) -> SignedTarget:
        """The target of a signed URL.

        Raises:
            ApiError: a malformed or expired URL (400), a bad signature (403).
        """
        date = query.get("X-Amz-Date", "")
        expires = query.get("X-Amz-Expires", "")
        signature = query.get("X-Amz-Signature", "")
        try:
            issued = dt.datetime.strptime(date, DATE_FORMAT).replace(tzinfo=dt.UTC)
            lifetime = int(expires)
        except ValueError:
            raise bad_request(
                f"malformed signed URL: X-Amz-Date {date[:40]!r} must look like 20250101T120000Z "
                f"and X-Amz-Expires {expires[:40]!r} must be an integer number of seconds; "
                "ask for a new URL"
            ) from None
        if not 0 < lifetime <= MAX_EXPIRES_SECONDS:
            raise bad_request(f"X-Amz-Expires {lifetime} must be in 1..{MAX_EXPIRES_SECONDS}")
        if issued.timestamp() + lifetime < time.time():
            raise bad_request(
                f"the signed URL expired at {issued.timestamp() + lifetime:.0f}; ask for a new URL"
            )
        upload = query.get("uploadId", "")
        part = query.get("partNumber", "")
        expected = self._signature(method, project, path, date, expires, upload, part)
        if not hmac.compare_digest(expected, signature):
            raise access_denied("the signature of this URL does not match; ask for a new URL")
        part_number = int(part) if part.isdigit() else 0
        return SignedTarget(method, project, path, upload, part_number)

    # -- the signedUrl endpoint --------------------------------------------------------------

    def signed_urls(self, principal: Principal, body: Any, base_url: str) -> dict[str, Any]:
        """The ``CreateSignedUrlsResponse`` for a ``CreateSignedUrlsRequest`` JSON body.

        Raises:
            ApiError: a malformed request (400).
            AuthError: a project outside the token's reach (403).
        """
        if not isinstance(body, dict) or not isinstance(body.get("files"), list):
            raise bad_request(
                'expected a JSON object {"files": [{"path", "permission", "project_identifier"}]}'
            )
        files = body["files"]
        if len(files) > MAX_FILES_PER_REQUEST:
            raise bad_request(f"{len(files)} files in one request; at most {MAX_FILES_PER_REQUEST}")
        out = []
        for entry in files:
            if not isinstance(entry, dict):
                raise bad_request(f"each file must be a JSON object, got {entry!r:.100}")
            path = check_storage_key(entry.get("path"))
            permission = entry.get("permission")
            if permission not in ("read", "write"):
                raise bad_request(f"permission must be 'read' or 'write', got {permission!r:.60}")
            project = entry.get("project_identifier")
            if not isinstance(project, str):
                raise bad_request(f"project_identifier must be a string, got {project!r:.60}")
            principal.require(project)
            if find_project(self.store, project) is None:
                raise access_denied(f"project {project!r} does not exist", 404)
            size = entry.get("size")
            if size is not None and (not isinstance(size, int) or size < 0):
                raise bad_request(f"size of {path!r} must be a non-negative integer, got {size!r}")
            signed: dict[str, Any] = {
                "path": path,
                "project_identifier": project,
                "provider": "aws",
            }
            if permission == "read":
                signed["url"] = self.sign(base_url, "GET", project, path)
            elif size is not None and size > self.settings.max_blob_bytes:
                part_size = self.settings.multipart_part_bytes
                parts = max(1, math.ceil(size / part_size))
                if parts > MAX_PARTS:
                    raise bad_request(f"file {path!r} of {size} bytes is too large")
                upload_id = uuid.uuid4().hex
                signed["url"] = self.sign(base_url, "PUT", project, path)
                signed["multipart"] = {
                    "upload_id": upload_id,
                    "part_size": part_size,
                    "part_urls": [
                        self.sign(
                            base_url, "PUT", project, path, upload_id=upload_id, part_number=n
                        )
                        for n in range(1, parts + 1)
                    ],
                }
            else:
                signed["url"] = self.sign(base_url, "PUT", project, path)
            out.append(signed)
        return {"files": out}

    # -- blobs -------------------------------------------------------------------------------

    def _project_id(self, project: str) -> int:
        info = find_project(self.store, project)
        if info is None:
            raise ApiError(404, f"project {project!r} does not exist")
        return info.id

    def sweep_abandoned_uploads(self, *, now: float | None = None) -> int:
        """Delete multipart uploads whose parts stopped arriving more than
        ``abandoned_upload_seconds`` ago and were never completed; returns how many."""
        now = time.time() if now is None else now
        self._last_sweep = now
        horizon = now - self.settings.abandoned_upload_seconds
        removed = 0
        try:
            folders = list(self.uploads_dir.iterdir())
        except FileNotFoundError:
            return 0
        for folder in folders:
            try:
                # A part written into the folder (a rename) updates the folder's mtime.
                if not folder.is_dir() or folder.stat().st_mtime >= horizon:
                    continue
            except FileNotFoundError:  # completed meanwhile
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        if removed:
            logger.info("deleted %d abandoned multipart upload(s)", removed)
        return removed

    def _maybe_sweep(self) -> None:
        """Sweep at most every ten minutes, on the upload path: no timer thread to manage."""
        if time.time() - self._last_sweep >= 600:
            self.sweep_abandoned_uploads()

    def put(self, target: SignedTarget, data: bytes, mime_type: str) -> str:
        """Store an upload (or one part of a multipart upload); returns the ETag."""
        project_id = self._project_id(target.project)
        etag = _md5_etag(data)
        self._maybe_sweep()
        if target.upload_id:
            if not target.upload_id.isalnum() or not 1 <= target.part_number <= MAX_PARTS:
                raise bad_request("malformed multipart upload id or part number")
            folder = self.uploads_dir / target.upload_id
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "mime-type").write_text(mime_type[:200])
            part = folder / f"{target.part_number:05d}"
            tmp = folder / f".{target.part_number:05d}.{uuid.uuid4().hex}"
            tmp.write_bytes(data)
            tmp.replace(part)
            return etag
        sha, size = put_blob(self.store.blobs_dir, data)
        register_blob(self.store, project_id, target.path, sha, size, mime_type)
        return etag

    def complete_multipart(self, principal: Principal, body: Any) -> None:
        """Join the parts of a multipart upload into the blob.

        Raises:
            ApiError: a malformed request, an unknown upload or a missing part (400).
        """
        if not isinstance(body, dict):
            raise bad_request("expected a JSON CompleteMultipartUploadRequest object")
        upload_id = body.get("upload_id")
        project = body.get("project_identifier")
        path = check_storage_key(body.get("path"))
        parts = body.get("parts")
        if not isinstance(upload_id, str) or not upload_id.isalnum():
            raise bad_request(f"upload_id must be the id from signedUrl, got {upload_id!r:.60}")
        if not isinstance(project, str):
            raise bad_request(f"project_identifier must be a string, got {project!r:.60}")
        principal.require(project)
        project_id = self._project_id(project)
        if not isinstance(parts, list) or not parts:
            raise bad_request("parts must be a non-empty list of {part_number, etag}")
        numbers = []
        for part in parts:
            number = part.get("part_number") if isinstance(part, dict) else None
            if not isinstance(number, int) or not 1 <= number <= MAX_PARTS:
                raise bad_request(f"bad part entry {part!r:.100}")
            numbers.append(number)
        folder = self.uploads_dir / upload_id
        files = [folder / f"{n:05d}" for n in sorted(set(numbers))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise bad_request(f"upload {upload_id} has no part(s) {', '.join(missing[:10])}")
        joined = folder / f".joined-{uuid.uuid4().hex}"
        with joined.open("wb") as out:
            for f in files:
                with f.open("rb") as source:
                    shutil.copyfileobj(source, out, 1024 * 1024)
        sha, size = put_blob(self.store.blobs_dir, joined)
        mime_file = folder / "mime-type"
        mime_type = mime_file.read_text() if mime_file.is_file() else "application/octet-stream"
        register_blob(self.store, project_id, path, sha, size, mime_type)
        shutil.rmtree(folder, ignore_errors=True)

    def locate(self, target: SignedTarget) -> tuple[Path, str]:
        """The file and MIME type behind a read URL.

        Raises:
            ApiError: nothing was uploaded under the key (404).
        """
        project_id = self._project_id(target.project)
        record = blob_record(self.store, project_id, target.path)
        if record is None:
            raise ApiError(404, f"no file was uploaded under {target.path!r}")
        file = blob_path(self.store.blobs_dir, record.sha256)
        if not file.is_file():
            raise ApiError(404, f"the content of {target.path!r} is missing from the store")
        return file, record.mime_type
