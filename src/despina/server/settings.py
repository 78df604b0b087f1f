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
    """Largest accepted JSON or protobuf retrieval body."""
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
        if settings.public_url is not None and not settings.public_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"public URL {settings.public_url!r} must start with http:// or https://"
            )
        return settings
