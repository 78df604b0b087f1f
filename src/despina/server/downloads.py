"""How stored files are sent to a browser: inert on the server's origin (issue #12, finding 2).

An uploaded file is chosen by whoever could write to a project. Sent inline with the type its
uploader declared, an HTML page or an SVG would run script on the server's origin with the
session of whoever opens the link. So every download is an attachment (RFC 6266, its name
RFC 5987-encoded), never sniffed (``nosniff``), sandboxed with no source allowed (CSP), and typed
from :data:`SAFE_DOWNLOAD_TYPES` only: anything else goes out as ``application/octet-stream``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

from starlette.responses import FileResponse, Response, StreamingResponse

from despina.store.blobs import BlobStore

__all__ = [
    "CONTROL_CHARACTERS",
    "SAFE_DOWNLOAD_TYPES",
    "blob_response",
    "download_headers",
    "served_type",
]

_READ_BLOCK = 1024 * 1024

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
"""C0 control characters and DEL: never in a storage key or a header value."""

SAFE_DOWNLOAD_TYPES = frozenset(
    {
        "application/gzip",
        "application/json",
        "application/octet-stream",
        "application/pdf",
        "application/x-tar",
        "application/zip",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "image/avif",
        "image/bmp",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/csv",
        "text/plain",
        "video/mp4",
        "video/webm",
    }
)
"""Content types a download is served with as uploaded; anything else (HTML, SVG, XML,
scripts…) is served as ``application/octet-stream``."""


def served_type(mime_type: str) -> str:
    """The Content-Type a download is sent with: the stored type if it is on
    :data:`SAFE_DOWNLOAD_TYPES` (parameters dropped), else ``application/octet-stream``."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return base if base in SAFE_DOWNLOAD_TYPES else "application/octet-stream"


def download_headers(filename: str) -> dict[str, str]:
    """Headers that make a download inert on the server's origin: an attachment (RFC 6266, the
    name RFC 5987-encoded), never sniffed, sandboxed and without a script or a referrer."""
    name = CONTROL_CHARACTERS.sub("", filename.rsplit("/", 1)[-1]).strip() or "download"
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    encoded = quote(name, safe="", encoding="utf-8", errors="replace")
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, no-cache",
    }


def blob_response(
    blobs: BlobStore, sha256: str, size: int, mime_type: str, filename: str
) -> Response:
    """A download of the blob ``sha256`` (``size`` bytes): the file itself when the blob store
    is a local directory (sendfile, ranges), else its content streamed a block at a time.

    Raises:
        BlobNotFound: the content is not in the blob store (a directory store says so here,
            others when the body is read; call from a worker thread).
    """
    headers = download_headers(filename)
    local = blobs.local_path(sha256)
    if local is not None:
        return FileResponse(local, media_type=served_type(mime_type), headers=headers)
    stream = blobs.open(sha256)

    def blocks() -> Iterator[bytes]:  # iterated on worker threads by Starlette
        try:
            while block := stream.read(_READ_BLOCK):
                yield block
        finally:
            stream.close()

    headers["Content-Length"] = str(size)
    return StreamingResponse(blocks(), media_type=served_type(mime_type), headers=headers)
