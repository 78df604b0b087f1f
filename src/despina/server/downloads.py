"""How stored files are sent to a browser: inert on the server's origin (issue #12, finding 2).

An uploaded file is chosen by whoever could write to a project. Sent inline with the type its
uploader declared, an HTML page or an SVG would run script on the server's origin with the
session of whoever opens the link. So every download is an attachment (RFC 6266, its name
RFC 5987-encoded), never sniffed (``nosniff``), sandboxed with no source allowed (CSP), and typed
from :data:`SAFE_DOWNLOAD_TYPES` only: anything else goes out as ``application/octet-stream``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["CONTROL_CHARACTERS", "SAFE_DOWNLOAD_TYPES", "download_headers", "served_type"]

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
