"""The storage bridge: signed URLs that point back at this server, and the blobs behind them.

``POST /api/storagebridge/v1/signedUrl`` answers S3-style URLs (``provider: "aws"``) on the
server's own base URL::

    <base>/api/storagebridge/v1/blob/<workspace>/<project>/<storage key>
        ?X-Amz-Algorithm=...&X-Amz-Credential=<key id>&X-Amz-Date=20250101T120000Z
        &X-Amz-Expires=3600[&X-Despina-Size=<bytes>&X-Despina-Nonce=<hex>]
        [&uploadId=<id>&partNumber=<n>]&X-Amz-Signature=<hmac>

The signature is an HMAC-SHA256 (a sub-key of the server secret) over a JSON array of the
method, project, storage key and every parameter above, so no field can spill into another.
A URL is refused once its API key is revoked or expired, lives at most an hour
(:data:`MAX_EXPIRES_SECONDS`), and a write URL carries the size the client declared and is good
for one upload. Storage keys hold no control characters.

Uploads stream into the store's blob store (``store.blobs``: a directory, or S3-compatible object
storage) while being hashed, and appear under their content hash only once complete
(store/blobs/); a storage key, once written, keeps its content. The parts of a multipart upload
are kept in the blob store too, so any server replica may receive a part or complete the upload.
Downloads
are attachments with ``nosniff``, a sandboxing CSP and a Content-Type from a short safe list
(server/downloads.py), so an uploaded page or SVG never runs on the server's origin.

Answers (wire-protocol.md §7.2): PUT → 200 with an ``ETag`` (MD5 hex in quotes); GET → the bytes,
404 when nothing was uploaded, 400 when the URL expired or its date/expiry are malformed, 403 for
a bad signature or a revoked key; 409 for a used write URL or a storage key that already holds
other content.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from despina.errors import StoreError
from despina.server.auth import Principal, derive_key
from despina.server.downloads import CONTROL_CHARACTERS, blob_response
from despina.server.errors import ApiError, access_denied, bad_request
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import BlobRecord, blob_record, find_api_key, find_project
from despina.store.blobs import (
    BlobNotFound,
    Incoming,
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

__all__ = [
    "BLOB_ROUTE",
    "MAX_EXPIRES_SECONDS",
    "BlobStorage",
    "SignedTarget",
    "WriteRunner",
    "check_storage_key",
]

logger = logging.getLogger("despina.server.storage")

BLOB_ROUTE = "/api/storagebridge/v1/blob"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_KEY_BYTES = 1024
MAX_EXPIRES_SECONDS = 3600
"""Longest lifetime of a signed URL (the clients are given one hour, wire-protocol.md §7.2)."""
CLOCK_SKEW_SECONDS = 300
"""How far in the future an ``X-Amz-Date`` may lie (servers sharing a home, clock steps)."""
MAX_FILES_PER_REQUEST = 10_000
MAX_PARTS = 10_000
SIGNATURE_VERSION = "despina-blob-url-2"
_WRITE_BUFFER = 1024 * 1024

WriteRunner = Callable[..., Awaitable[Any]]
"""Runs a blocking function on a worker thread (``ServerLimits.run_write`` in the server)."""

_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


def check_storage_key(path: object) -> str:
    """The storage key if it is acceptable.

    Raises:
        ApiError: empty, absolute, with a ``..`` segment, a control character, a lone
            surrogate or over 1024 UTF-8 bytes (400, naming the key).
    """
    if not isinstance(path, str) or not path:
        raise bad_request(f"file path must be a non-empty string, got {path!r:.200}")
    if CONTROL_CHARACTERS.search(path):
        raise bad_request(
            f"file path {path[:200]!r} holds a control character (code below 0x20, or 0x7f); "
            "storage keys are printable text"
        )
    if path.startswith("/") or "\\" in path:
        raise bad_request(f"file path {path[:200]!r} must be relative, without '\\'")
    if any(part in ("..", ".") for part in path.split("/")):
        raise bad_request(f"file path {path[:200]!r} must not contain '.' or '..' segments")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"file path {path[:200]!r} is not valid Unicode text") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise bad_request(f"file path {path[:60]!r}… is over {MAX_KEY_BYTES} UTF-8 bytes")
    return path


def _clean_mime(header: str | None) -> str:
    """The upload's MIME type as stored: a well-formed ``type/subtype``, else octet-stream."""
    base = (header or "").split(";", 1)[0].strip()
    return (
        base.lower() if len(base) <= 200 and _MIME.fullmatch(base) else "application/octet-stream"
    )


@dataclass(frozen=True, slots=True)
class SignedTarget:
    """What a verified signed URL gives access to."""

    method: str
    project: str
    path: str
    upload_id: str
    part_number: int
    size: int | None
    """The size a write URL was signed for (None: the client declared none)."""
    key_id: str
    signature: str
    expires_ms: int


def _etag(md5_hex: str) -> str:
    return f'"{md5_hex}"'


class BlobStorage:
    """Signs URLs and serves the blobs they name."""

    def __init__(self, store: Store, server_key: bytes, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        self._key = derive_key(server_key, "blob-url")
        self.lifetime = max(1, min(settings.signed_url_seconds, MAX_EXPIRES_SECONDS))
        # where a directory blob store keeps multipart parts (None for object storage)
        self.uploads_dir = getattr(store.blobs, "uploads_dir", None)

    # -- signing -----------------------------------------------------------------------------

    def signature_of(self, method: str, project: str, path: str, query: dict[str, str]) -> str:
        """The signature a URL with these query parameters must carry."""
        fields = [
            SIGNATURE_VERSION,
            method,
            project,
            path,
            *(
                query.get(name, "")
                for name in (
                    "X-Amz-Credential",
                    "X-Amz-Date",
                    "X-Amz-Expires",
                    "X-Despina-Size",
                    "X-Despina-Nonce",
                    "uploadId",
                    "partNumber",
                )
            ),
        ]
        message = json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(
        self,
        base_url: str,
        method: str,
        project: str,
        path: str,
        *,
        key_id: str,
        size: int | None = None,
        upload_id: str = "",
        part_number: int = 0,
    ) -> str:
        """An absolute URL that lets anyone ``method`` the blob for :attr:`lifetime` seconds,
        while the API key ``key_id`` stays valid; a PUT URL is good for one upload of ``size``
        bytes (any size up to the limit when None)."""
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": key_id,
            "X-Amz-Date": time.strftime(DATE_FORMAT, time.gmtime()),
            "X-Amz-Expires": str(self.lifetime),
        }
        if method == "PUT":
            if size is not None:
                query["X-Despina-Size"] = str(size)
            query["X-Despina-Nonce"] = secrets.token_hex(8)
        if upload_id:
            query["uploadId"] = upload_id
            query["partNumber"] = str(part_number)
        query["X-Amz-Signature"] = self.signature_of(method, project, path, query)
        url_path = f"{BLOB_ROUTE}/{quote(project, safe='/')}/{quote(path, safe='/')}"
        return f"{base_url.rstrip('/')}{url_path}?{urlencode(query)}"

    def verify(self, method: str, project: str, path: str, query: dict[str, str]) -> SignedTarget:
        """The target of a signed URL (reads the store: call from a worker thread).

        Raises:
            ApiError: a malformed, future-dated or expired URL (400), a bad signature or a
                revoked, expired or unknown API key (403).
        """
        check_storage_key(path)
        date = query.get("X-Amz-Date", "")
        expires = query.get("X-Amz-Expires", "")
        try:
            issued = dt.datetime.strptime(date, DATE_FORMAT).replace(tzinfo=dt.UTC).timestamp()
            lifetime = int(expires)
        except (ValueError, OverflowError):
            raise bad_request(
                f"malformed signed URL: X-Amz-Date {date[:40]!r} must look like 20250101T120000Z "
                f"and X-Amz-Expires {expires[:40]!r} must be an integer number of seconds; "
                "ask for a new URL"
            ) from None
        if not 0 < lifetime <= MAX_EXPIRES_SECONDS:
            raise bad_request(
                f"X-Amz-Expires {expires[:40]} is outside 1..{MAX_EXPIRES_SECONDS} seconds; "
                "ask for a new URL"
            )
        now = time.time()
        if issued > now + CLOCK_SKEW_SECONDS:
            raise bad_request(
                f"X-Amz-Date {date} lies in the future (the server's clock reads "
                f"{time.strftime(DATE_FORMAT, time.gmtime(now))}); ask for a new URL"
            )
        if issued + lifetime < now:
            raise bad_request(
                f"the signed URL dated {date} expired after {lifetime} s; ask for a new URL"
            )
        key_id = query.get("X-Amz-Credential", "")
        if not key_id:  # a URL from before URLs were bound to their API key
            raise bad_request("malformed signed URL: no X-Amz-Credential; ask for a new URL")
        expected = self.signature_of(method, project, path, query)
        given = query.get("X-Amz-Signature", "")
        # compare_digest takes ASCII strings only (TypeError otherwise)
        if not given.isascii() or not hmac.compare_digest(expected, given):
            raise access_denied("the signature of this URL does not match; ask for a new URL")
        key = find_api_key(self.store, key_id)
        if key is None or not key.is_valid() or not Principal(key).reaches(project):
            why = (
                "was revoked" if key is not None and key.revoked_ms is not None else "is not valid"
            )
            raise access_denied(
                f"the API key {key_id!r} that asked for this URL {why}; the URLs it obtained no "
                "longer work"
            )
        size_text = query.get("X-Despina-Size", "")
        part_text = query.get("partNumber", "")
        return SignedTarget(
            method=method,
            project=project,
            path=path,
            upload_id=query.get("uploadId", ""),
            part_number=int(part_text) if part_text.isdigit() else 0,
            size=int(size_text) if size_text.isdigit() else None,
            key_id=key_id,
            signature=expected,
            expires_ms=int((issued + lifetime) * 1000),
        )

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
        key_id = principal.key.key_id
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
            info = find_project(self.store, project)
            if info is None:
                raise access_denied(f"project {project!r} does not exist", 404)
            size = entry.get("size")
            if size is not None and (
                not isinstance(size, int) or isinstance(size, bool) or size < 0
            ):
                raise bad_request(f"size of {path!r} must be a non-negative integer, got {size!r}")
            signed: dict[str, Any] = {
                "path": path,
                "project_identifier": project,
                "provider": "aws",
            }
            if permission == "read":
                signed["url"] = self.sign(base_url, "GET", project, path, key_id=key_id)
            elif size is not None and size > self.settings.max_blob_bytes:
                part_size = self.settings.multipart_part_bytes
                # integer ceiling: a float division overflows on sizes past 1e308
                parts = max(1, -(-size // part_size))
                if parts > MAX_PARTS:
                    raise bad_request(
                        f"size of {path!r} is {size} bytes, too large: at most "
                        f"{MAX_PARTS * part_size} bytes"
                    )
                upload = MultipartUpload(
                    upload_id=uuid.uuid4().hex,
                    project_id=info.id,
                    path=path,
                    size=size,
                    part_size=part_size,
                    key_id=key_id,
                    created_ms=int(time.time() * 1000),
                    completed_sha256=None,
                )
                add_multipart_upload(self.store, upload)
                # The whole-file URL is part of the answer's shape; it refuses more than
                # max_blob_bytes, so the client has to use the parts.
                signed["url"] = self.sign(base_url, "PUT", project, path, key_id=key_id, size=size)
                signed["multipart"] = {
                    "upload_id": upload.upload_id,
                    "part_size": part_size,
                    "part_urls": [
                        self.sign(
                            base_url,
                            "PUT",
                            project,
                            path,
                            key_id=key_id,
                            size=upload.part_bytes(n),
                            upload_id=upload.upload_id,
                            part_number=n,
                        )
                        for n in range(1, parts + 1)
                    ],
                }
            else:
                signed["url"] = self.sign(base_url, "PUT", project, path, key_id=key_id, size=size)
            out.append(signed)
        return {"files": out}

    # -- the blob route ------------------------------------------------------------------------

    async def handle(
        self, request: Request, run_write: WriteRunner = run_in_threadpool
    ) -> Response:
        """``GET``/``PUT`` of a signed blob URL; an upload's store work runs through
        ``run_write`` (the server's write workers), its disk writes on the default workers."""
        params = request.path_params
        project = f"{params['workspace']}/{params['project']}"
        query = dict(request.query_params)
        if request.method != "PUT":
            target = await run_in_threadpool(self.verify, "GET", project, params["path"], query)
            return await run_in_threadpool(self._download, target)
        target = await run_write(self.verify, "PUT", project, params["path"], query)
        etag = await self._receive(request, target, run_write)
        return Response(status_code=200, headers={"ETag": etag})

    def _project_id(self, project: str) -> int:
        info = find_project(self.store, project)
        if info is None:
            raise ApiError(404, f"project {project!r} does not exist")
        return info.id

    def locate(self, target: SignedTarget) -> BlobRecord:
        """The stored content (hash, size, MIME type) behind a read URL.

        Raises:
            ApiError: nothing was uploaded under the key (404).
        """
        project_id = self._project_id(target.project)
        record = blob_record(self.store, project_id, target.path)
        if record is None:
            raise ApiError(404, f"no file was uploaded under {target.path!r}")
        return record

    def _download(self, target: SignedTarget) -> Response:
        record = self.locate(target)
        try:
            return blob_response(
                self.store.blobs, record.sha256, record.size, record.mime_type, target.path
            )
        except BlobNotFound:
            raise ApiError(
                404, f"the content of {target.path!r} is missing from the store"
            ) from None

    def _limit(self, target: SignedTarget) -> int:
        if target.upload_id:
            return self.settings.multipart_part_bytes
        return self.settings.max_blob_bytes

    def _check_declared(self, target: SignedTarget, request: Request) -> bytes | None:
        """Check the request's Content-Length against the URL before reading the body; return
        the Content-MD5 digest when the client sent one."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise bad_request(f"Content-Length {declared[:40]!r} is not a number of bytes")
            length = int(declared)
            if target.size is not None and length != target.size:
                raise bad_request(
                    f"this URL was signed for {target.size} bytes of {target.path!r}, the "
                    f"request carries {length}; ask for a URL with the file's current size"
                )
            if length > self._limit(target):
                raise ApiError(
                    413,
                    f"a body of {length} bytes is over the upload limit of {self._limit(target)} "
                    "bytes; declare the size when asking for the URL to get a multipart upload",
                )
        header = request.headers.get("content-md5")
        if header is None:
            return None
        try:
            digest = base64.b64decode(header, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 16:
            raise bad_request(f"Content-MD5 {header[:60]!r} is not the base64 of an MD5 digest")
        return digest

    def _claim(self, target: SignedTarget) -> None:
        if target.upload_id:
            upload = find_multipart_upload(self.store, target.upload_id)
            if upload is None or upload.path != target.path:
                raise ApiError(404, f"no multipart upload {target.upload_id} for {target.path!r}")
            if not 1 <= target.part_number <= upload.parts:
                raise bad_request(
                    f"part {target.part_number} of upload {target.upload_id} is outside "
                    f"1..{upload.parts}"
                )
            if upload.completed_sha256 is not None:
                raise ApiError(409, f"multipart upload {target.upload_id} is already complete")
        state = claim_signed_url(self.store, target.signature, target.expires_ms)
        if state == "done":
            raise ApiError(
                409,
                f"this upload URL for {target.path!r} was already used; a URL is good for one "
                "upload, ask for a new one",
            )
        if state is not None:
            raise ApiError(
                409,
                f"another upload through this URL for {target.path!r} is in progress; a URL is "
                "good for one upload at a time",
            )

    async def _receive(self, request: Request, target: SignedTarget, run_write: WriteRunner) -> str:
        """Stream a PUT body to disk (never more than ~1 MiB of it in memory), check it and
        store it; returns the ETag."""
        content_md5 = self._check_declared(target, request)
        mime_type = _clean_mime(request.headers.get("content-type"))
        cap = self._limit(target)
        limit = cap if target.size is None else min(target.size, cap)
        await run_write(self._claim, target)
        incoming: Incoming | None = None
        stored = False
        try:
            incoming = await run_in_threadpool(self.store.blobs.incoming)
            pending: list[bytes] = []
            buffered = received = 0
            try:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limit:
                        break
                    pending.append(chunk)
                    buffered += len(chunk)
                    if buffered >= _WRITE_BUFFER:
                        await run_in_threadpool(incoming.write, b"".join(pending))
                        pending.clear()
                        buffered = 0
            except ClientDisconnect:
                raise bad_request(f"the upload of {target.path!r} was interrupted") from None
            if received > limit and (target.size is None or target.size > cap):
                raise ApiError(413, f"the body is over the upload limit of {cap} bytes")
            if target.size is not None and received != target.size:
                shown = f"more than {limit}" if received > limit else str(received)
                raise bad_request(
                    f"this URL was signed for {target.size} bytes of {target.path!r}, the "
                    f"request carried {shown}; ask for a URL with the file's current size"
                )
            if pending:
                await run_in_threadpool(incoming.write, b"".join(pending))
            await run_in_threadpool(incoming.finish)
            if content_md5 is not None and content_md5.hex() != incoming.md5:
                raise bad_request(
                    f"Content-MD5 {base64.b64encode(content_md5).decode()} does not match the "
                    f"{received} bytes received for {target.path!r}"
                )
            await run_write(self._store, target, incoming, mime_type)
            stored = True
            return _etag(incoming.md5)
        finally:
            if not stored:
                if incoming is not None:
                    await run_in_threadpool(incoming.discard)
                await run_in_threadpool(self._release, target)

    def _release(self, target: SignedTarget) -> None:
        """Let the client retry a failed upload through the same URL; if the store cannot say
        so now, the URL stays claimed until it expires (the client asks for a new one)."""
        try:
            release_signed_url(self.store, target.signature)
        except StoreError as exc:
            logger.warning("could not release the upload URL of %r: %s", target.path, exc)

    def _store(self, target: SignedTarget, incoming: Incoming, mime_type: str) -> None:
        """Put received content in place: a part beside its upload's other parts (its MD5
        kept with it: completion checks the client's ETags against it), a whole file under its
        content address and storage key."""
        if target.upload_id:
            self.store.blobs.put_part(target.upload_id, target.part_number, incoming, mime_type)
        else:
            self._store_whole(target.project, target.path, incoming, mime_type)
        finish_signed_url(self.store, target.signature)

    def _store_whole(self, project: str, path: str, incoming: Incoming, mime_type: str) -> None:
        project_id = self._project_id(project)
        sha256, size = incoming.sha256, incoming.size
        existing = blob_record(self.store, project_id, path)
        if existing is not None and existing.sha256 != sha256:
            raise _key_taken(path)
        self.store.blobs.commit(incoming)
        if register_blob_key(self.store, project_id, path, sha256, size, mime_type) != sha256:
            raise _key_taken(path)

    # -- multipart completion ----------------------------------------------------------------

    def complete_multipart(self, principal: Principal, body: Any) -> None:
        """Join the parts of a multipart upload into the blob.

        Raises:
            ApiError: a malformed request, another storage key, a missing or damaged part
                (400), an upload unknown in the project (404), a key holding other content
                (409).
        """
        if not isinstance(body, dict):
            raise bad_request("expected a JSON CompleteMultipartUploadRequest object")
        upload_id = body.get("upload_id")
        project = body.get("project_identifier")
        path = check_storage_key(body.get("path"))
        parts = body.get("parts")
        if not isinstance(upload_id, str) or not upload_id.isalnum() or len(upload_id) > 64:
            raise bad_request(f"upload_id must be the id from signedUrl, got {upload_id!r:.60}")
        if not isinstance(project, str):
            raise bad_request(f"project_identifier must be a string, got {project!r:.60}")
        principal.require(project)
        project_id = self._project_id(project)
        upload = find_multipart_upload(self.store, upload_id)
        if upload is None or upload.project_id != project_id:
            raise ApiError(
                404,
                f"no multipart upload {upload_id} in project {project!r} (it may have been "
                "abandoned); upload the file again",
            )
        if upload.path != path:
            raise bad_request(
                f"multipart upload {upload_id} was started for {upload.path!r}, not {path!r}"
            )
        etags = self._check_parts(upload, parts)
        if upload.completed_sha256 is not None:  # a retried completion
            record = blob_record(self.store, project_id, path)
            if record is not None and record.sha256 == upload.completed_sha256:
                return
            raise ApiError(409, f"multipart upload {upload_id} was already completed")
        blobs = self.store.blobs
        found = blobs.parts(upload_id)
        missing = [n for n in range(1, upload.parts + 1) if n not in found]
        if missing:
            raise bad_request(
                f"upload {upload_id} has no part(s) {', '.join(map(str, missing[:10]))}"
            )
        for number, etag in enumerate(etags, start=1):
            if etag != found[number]:
                raise bad_request(
                    f"the ETag {etag!r} given for part {number} of upload {upload_id} is not "
                    f"the one answered for it ({found[number]!r})"
                )
        try:
            incoming, mime_type = blobs.join_parts(upload_id, upload.parts)
        except BlobNotFound as exc:  # swept or dropped since the listing
            raise bad_request(f"{exc}; upload the file again") from None
        sha256 = incoming.sha256
        try:
            if incoming.size != upload.size:  # parts are size-bound: only a damaged disk
                raise ApiError(
                    500,
                    f"the parts of upload {upload_id} hold {incoming.size} bytes, not "
                    f"{upload.size}; upload the file again",
                )
            self._store_whole(project, path, incoming, mime_type)
        except BaseException:
            incoming.discard()
            raise
        mark_multipart_completed(self.store, upload_id, sha256)
        blobs.drop_upload(upload_id)

    @staticmethod
    def _check_parts(upload: MultipartUpload, parts: object) -> list[str]:
        """The ETags (MD5 hex) of parts 1..n from a completion request listing exactly those."""
        if not isinstance(parts, list) or not parts:
            raise bad_request("parts must be a non-empty list of {part_number, etag}")
        etags: dict[int, str] = {}
        for part in parts:
            number = part.get("part_number") if isinstance(part, dict) else None
            etag = part.get("etag") if isinstance(part, dict) else None
            if (
                not isinstance(number, int)
                or not 1 <= number <= MAX_PARTS
                or not isinstance(etag, str)
            ):
                raise bad_request(f"bad part entry {part!r:.100}: expected {{part_number, etag}}")
            etags[number] = etag.strip().strip('"').lower()
        if sorted(etags) != list(range(1, upload.parts + 1)) or len(parts) != upload.parts:
            listed = sorted(etags)
            raise bad_request(
                f"upload {upload.upload_id} has parts 1..{upload.parts}; the request lists "
                f"{listed[:10]}{'…' if len(listed) > 10 else ''}"
            )
        return [etags[n] for n in range(1, upload.parts + 1)]

    # -- housekeeping --------------------------------------------------------------------------

    def sweep_abandoned_uploads(self, *, now: float | None = None) -> int:
        """Delete multipart uploads whose parts stopped arriving more than
        ``abandoned_upload_seconds`` ago and were never completed; returns how many.
        Records of expired write URLs and of old multipart uploads go too.

        A background job (:mod:`despina.server.jobs`): one replica at a time runs it."""
        now = time.time() if now is None else now
        horizon = now - self.settings.abandoned_upload_seconds
        prune_upload_records(
            self.store, now_ms=int(now * 1000), abandoned_before_ms=int(horizon * 1000)
        )
        # also content a crash left half-received
        removed = self.store.blobs.sweep(horizon)
        if removed:
            logger.info("deleted %d abandoned multipart upload(s)", removed)
        return removed


def _key_taken(path: str) -> ApiError:
    return ApiError(
        409,
        f"storage key {path!r} already holds other content; a file, once uploaded, is not "
        "replaced (upload under a new key)",
    )
