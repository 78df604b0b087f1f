"""Settings of a despina server (``despina serve`` options and ``DESPINA_*`` variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from despina.errors import ConfigError

__all__ = ["ServerSettings"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How the server behaves; every field has a working default for a loopback server."""

    public_url: str | None = None
    """Base URL clients reach the server at (tokens, signed URLs, OpenID documents).

    ``None``: taken from each request (scheme, ``Host`` header and root path), which is right
    unless a proxy rewrites the host."""
    auto_create_projects: bool = False
    """Honour ``create_missing_project`` on ingest (workspace tokens only)."""
    max_ingest_bytes: int = 32 * MIB
    """Largest accepted ingest body (clients send at most 16 MiB)."""
    max_json_bytes: int = 8 * MIB
    """Largest accepted JSON or protobuf retrieval body (series requests: the next field)."""
    max_series_request_bytes: int = 32 * MIB
    """Largest accepted series retrieval body (float, string, histogram and file series).

    neptune-query sends up to 10,000 series in one request, each naming a path of up to 1,024
    UTF-8 bytes: about 12 MB of JSON with the longest ASCII paths; 32 MiB leaves room for paths
    whose characters JSON escapes. The answer stays bounded by its point count."""
    max_blob_bytes: int = 64 * MIB
    """Largest single-part upload; bigger files are offered a multipart upload."""
    multipart_part_bytes: int = 16 * MIB
    """Part size of multipart uploads."""
    access_token_seconds: int = 3600
    """Lifetime of JWT access tokens (well above the clients' 30 s refresh margin)."""
    refresh_token_seconds: int = 30 * 24 * 3600
    """Lifetime of refresh tokens."""
    signed_url_seconds: int = 3600
    """Lifetime of signed blob URLs."""
    abandoned_upload_seconds: int = 2 * 3600
    """Parts of a multipart upload untouched this long (twice the signed-URL lifetime by
    default: no part can arrive any more) are deleted."""
    status_retention_days: int = 7
    """How long ingest request statuses (and duplicate detection) are kept."""

    # -- limits (docs/security.md): every one answers fast instead of queueing without bound --
    max_connections: int = 1000
    """Open connections at most; a connection beyond it is closed at once (clients retry)."""
    max_read_requests: int = 64
    """Reads (query API, web UI, downloads) in progress at most; beyond it: 429 + Retry-After."""
    max_write_requests: int = 64
    """Ingest, uploads, tokens and projects in progress at most; beyond it: 429 + Retry-After."""
    read_threads: int = 8
    """Worker threads for reads (query API, web UI, downloads). Reads busy in Python code
    share the interpreter lock with ingest: with all of them busy, an ingest request takes up
    to about ``read_threads + 1`` times its own CPU time, so fewer favour ingest."""
    write_threads: int = 8
    """Worker threads for ingest, uploads, tokens and projects: reads never take these."""
    write_queue_seconds: float = 10.0
    """Longest wait of a write for a worker thread before it is answered 429 + Retry-After."""
    store_busy_seconds: float = 5.0
    """Longest wait for the store's write lock before a request is answered 429 + Retry-After
    (well under the clients' 30 s timeout, so they back off and resend)."""
    header_timeout_seconds: float = 10.0
    """A request's line and headers must arrive within this many seconds of its first byte
    (of the connection, for a new one); else the connection is closed (slowloris)."""
    body_timeout_seconds: float = 20.0
    """Grace time to send a request body, extended by one second per ``body_min_rate`` bytes
    received; a body that falls behind is answered 408 and its connection closed."""
    body_min_rate: int = 64 * 1024
    """Bytes per second a large body must keep up on average (see ``body_timeout_seconds``)."""
    keep_alive_seconds: float = 30.0
    """An idle connection between two requests is closed after this many seconds."""
    auth_rate: float = 10.0
    """Token requests (exchange, refresh) per second per client address, sustained."""
    auth_burst: int = 50
    """Token requests a client address may send at once before ``auth_rate`` applies."""

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        """Settings from ``DESPINA_PUBLIC_URL``, ``DESPINA_AUTO_CREATE_PROJECTS`` and overrides.

        Raises:
            ConfigError: a variable has an unusable value.
        """
        values: dict[str, object] = {}
        url = os.environ.get("DESPINA_PUBLIC_URL")
        if url:
            values["public_url"] = url
        flag = os.environ.get("DESPINA_AUTO_CREATE_PROJECTS")
        if flag:
            if flag.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ConfigError(
                    f"DESPINA_AUTO_CREATE_PROJECTS has value {flag!r}; expected true or false"
                )
            values["auto_create_projects"] = flag.lower() in ("1", "true", "yes")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check_limits()
        if settings.public_url is not None and not settings.public_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"public URL {settings.public_url!r} must start with http:// or https://"
            )
        return settings

    def check_limits(self) -> None:
        """Refuse limits that would make the server unusable.

        Raises:
            ConfigError: a limit is zero or negative.
        """
        for name in (
            "max_connections",
            "max_read_requests",
            "max_write_requests",
            "read_threads",
            "write_threads",
            "write_queue_seconds",
            "store_busy_seconds",
            "header_timeout_seconds",
            "body_timeout_seconds",
            "body_min_rate",
            "keep_alive_seconds",
            "auth_rate",
            "auth_burst",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"server setting {name} must be positive, got {value!r}")
