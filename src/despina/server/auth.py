"""API tokens, JWT access tokens and who may reach which project (wire-protocol.md §1–§2).

* An **API token** is base64 of ``{"api_address", "api_url", "api_key"}``; ``api_key`` is
  ``<key id>.<secret>``. The store keeps the key id, the SHA-256 of the secret, the owning user
  and the scope: one project (``ws/proj``) or a whole workspace (``ws/*``, which may also create
  projects).
* The token exchange answers a **JWT access token** (HS256 with the server's secret, header
  ``kid`` = key id, 1 h) and an opaque **refresh token** (30 days, rotated on every use).
* Every authenticated request carries ``Authorization: Bearer <jwt>``; the signature and ``exp``
  are checked, and the key must still be valid (revocation takes effect at once).

The server secret lives in the store (``server_secrets``, shared by every replica; see
:func:`load_server_key`); keys derived from it sign access tokens, blob URLs and UI forms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from despina.config import parse_project
from despina.errors import AuthError, ConfigError
from despina.store import Store
from despina.store.access import (
    ApiKey,
    add_api_key,
    consume_refresh_token,
    find_api_key,
    find_refresh_token,
    save_refresh_token,
    sha256_hex,
)

__all__ = [
    "CLIENT_ID",
    "KEY_FILE",
    "SERVER_SECRET",
    "Authenticator",
    "Principal",
    "TokenPair",
    "decode_api_token",
    "load_server_key",
    "mint_api_token",
    "realm_url",
]

KEY_FILE = "server.key"
"""Where an embedded store kept the server secret before the store held it (adopted once)."""
SERVER_SECRET = "server_key"
"""The name of the server secret in the store's ``server_secrets``."""
CLIENT_ID = "neptune-client"
REALM_PATH = "/auth/realms/neptune"
JWT_LEEWAY_SECONDS = 60
MAX_REFRESH_TOKEN_CHARS = 256
"""Refresh tokens despina issues have 43 characters; a longer one is refused unread."""


logger = logging.getLogger("despina.server")


def realm_url(base: str) -> str:
    """The OpenID issuer for a base URL: ``<base>/auth/realms/neptune``."""
    return base.rstrip("/") + REALM_PATH


def load_server_key(store: Store) -> bytes:
    """The server secret of ``store``: the same bytes in every process and replica over it.

    The secret is kept in the store (:meth:`Store.server_secret` ``"server_key"``): the first
    process to ask creates it (32 random bytes), every other one reads it, so an access token,
    a signed URL or a UI cookie issued by one replica is valid on all of them.

    An embedded store that a version before the shared secret served kept it in
    ``<home>/server.key``: that key is adopted into the store on first use, so the tokens and
    URLs it signed stay valid; from then on the store's copy is used and the file is not read
    for anything else (deleting it changes nothing). A damaged or unreadable file is reported in
    the log and left out (the store's key, or a new one, is used: as if the file were deleted).

    Raises:
        StoreError: the store cannot be read or written.
    """
    adopted = _key_file(store.home) if store.dialect == "sqlite" else None
    key = store.server_secret(SERVER_SECRET, make=adopted or secrets.token_bytes(32))
    if len(key) < 16:  # never written so by despina: a hand-edited row
        raise ConfigError(
            f"the server secret {SERVER_SECRET!r} in {store.display!r} is {len(key)} bytes long; "
            "delete that row of server_secrets to create a new one (every access token and "
            "signed URL issued so far becomes invalid)"
        )
    return key


def _key_file(home: Path) -> bytes | None:
    """The key of ``<home>/server.key`` (the embedded store's place before the store kept it);
    ``None`` when there is no such file, or it is damaged or unreadable (logged)."""
    path = home / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("the old server key %s is unreadable (%s); left out", path, exc.strerror)
        return None
    try:
        key = bytes.fromhex(data.decode().strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < 16:
        logger.warning("the old server key %s is damaged; left out", path)
        return None
    return key


def derive_key(server_key: bytes, purpose: str) -> bytes:
    """A sub-key of the server secret for one purpose (``jwt``, ``blob-url``)."""
    return hmac.new(server_key, purpose.encode(), hashlib.sha256).digest()


def mint_api_token(
    store: Store,
    *,
    url: str,
    workspace: str,
    project: str | None = None,
    username: str = "despina",
    name: str = "",
    expires_ms: int | None = None,
) -> tuple[str, ApiKey]:
    """Create an API key and return ``(token, stored key)``; the token is shown only once.

    ``project`` is the project name inside ``workspace`` (None: the whole workspace).

    Raises:
        ConfigError: a bad workspace or project name, or a URL that is not http(s).
    """
    parse_project(f"{workspace}/{project or 'x'}")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"server URL {url!r} must start with http:// or https://")
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    key = ApiKey(
        key_id=key_id,
        secret_sha256=sha256_hex(secret),
        name=name,
        username=username,
        workspace=workspace,
        project=project,
        created_ms=int(time.time() * 1000),
        expires_ms=expires_ms,
        revoked_ms=None,
    )
    add_api_key(store, key)
    payload = {"api_address": url, "api_url": url, "api_key": f"{key_id}.{secret}"}
    return base64.b64encode(json.dumps(payload).encode()).decode(), key


def decode_api_token(token: str) -> tuple[str, str]:
    """``(key id, secret)`` of an API token (or of a bare ``api_key``).

    Raises:
        AuthError: the token is not a despina API token.
    """
    token = token.strip()
    api_key = token
    if "." not in token:
        try:
            data = json.loads(base64.b64decode(token.encode(), validate=False))
            api_key = str(data["api_key"])
        except (ValueError, binascii.Error, KeyError, TypeError, UnicodeDecodeError):
            raise AuthError(
                "the API token is not valid: expected base64 JSON with an "
                "'api_key' field, as printed by 'despina token create'"
            ) from None
    key_id, _, secret = api_key.partition(".")
    if not key_id or not secret:
        raise AuthError("the API token is not valid: its api_key is not '<key id>.<secret>'")
    return key_id, secret


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid access token."""

    key: ApiKey

    @property
    def username(self) -> str:
        return self.key.username

    def reaches(self, project: str) -> bool:
        """Whether the token may read and write ``workspace/project``."""
        workspace, _, name = project.partition("/")
        if workspace != self.key.workspace:
            return False
        return self.key.project is None or self.key.project == name

    def may_create_in(self, workspace: str) -> bool:
        """Whether the token may create projects in ``workspace`` (workspace tokens only)."""
        return self.key.project is None and self.key.workspace == workspace

    def require(self, project: str) -> None:
        """Refuse (403, ``ACCESS_DENIED``) a project outside the token's reach.

        Raises:
            AuthError: the project is outside the token's scope.
        """
        if not self.reaches(project):
            raise AuthError(
                f"this API token (key {self.key.key_id}, scope {self.key.scope}) may not access "
                f"project {project!r}; create a token for it with "
                f"'despina token create --project {project}'",
                403,
            )


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What an exchange or a refresh hands out."""

    access_token: str
    refresh_token: str
    username: str


class Authenticator:
    """Checks API keys and access tokens, and issues token pairs."""

    def __init__(
        self,
        store: Store,
        server_key: bytes,
        *,
        access_seconds: int = 3600,
        refresh_seconds: int = 30 * 24 * 3600,
    ) -> None:
        self.store = store
        self._jwt_key = derive_key(server_key, "jwt")
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds

    def _valid_key(self, key_id: str) -> ApiKey:
        key = find_api_key(self.store, key_id)
        if key is None:
            raise AuthError(f"unknown API key {key_id!r}; create one with 'despina token create'")
        if key.revoked_ms is not None:
            raise AuthError(f"API key {key_id!r} was revoked")
        if not key.is_valid():
            raise AuthError(f"API key {key_id!r} has expired")
        return key

    def exchange(self, api_token: str, base_url: str) -> TokenPair:
        """Exchange an API token for an access/refresh token pair.

        Raises:
            AuthError: the token is malformed, unknown, revoked or expired (401).
        """
        key_id, secret = decode_api_token(api_token)
        key = self._valid_key(key_id)
        if not hmac.compare_digest(key.secret_sha256, sha256_hex(secret)):
            raise AuthError(f"the secret of API key {key_id!r} does not match")
        return self._issue(key, base_url)

    def refresh(self, refresh_token: str, base_url: str) -> TokenPair:
        """Rotate a refresh token into a new pair.

        The endpoint needs no access token, so a token is checked with reads only: only a valid
        one (known, unexpired, its key valid) takes the store's write lock, to rotate it.

        Raises:
            AuthError: the refresh token is unknown, used or expired, or its key was revoked.
        """
        unknown = "unknown or expired refresh token; exchange the API token again"
        key_id = self._live_refresh_key(refresh_token)
        if key_id is None:
            raise AuthError(unknown)
        key = self._valid_key(key_id)
        if consume_refresh_token(self.store, refresh_token) != key_id:  # used meanwhile
            raise AuthError(unknown)
        return self._issue(key, base_url)

    def _live_refresh_key(self, refresh_token: str) -> str | None:
        """The key id of a stored, unexpired refresh token (a read: no write lock)."""
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_CHARS:
            return None
        found = find_refresh_token(self.store, refresh_token)
        if found is None or found[1] <= int(time.time() * 1000):
            return None
        return found[0]

    def _issue(self, key: ApiKey, base_url: str) -> TokenPair:
        now = int(time.time())
        claims = {
            "iat": now,
            "exp": now + self.access_seconds,
            "sub": key.username,
            "preferred_username": key.username,
            "azp": CLIENT_ID,
            "iss": realm_url(base_url),
        }
        access = jwt.encode(claims, self._jwt_key, algorithm="HS256", headers={"kid": key.key_id})
        refresh = secrets.token_urlsafe(32)
        save_refresh_token(self.store, refresh, key.key_id, (now + self.refresh_seconds) * 1000)
        return TokenPair(access, refresh, key.username)

    def principal(self, authorization: str | None) -> Principal:
        """The caller of a request from its ``Authorization`` header.

        Raises:
            AuthError: no bearer token, a bad signature, an expired token or a revoked key (401).
        """
        if not authorization:
            raise AuthError(
                "missing Authorization header: exchange an API token at "
                "/api/backend/v1/authorization/oauth-token first"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <access token>'")
        try:
            jwt.decode(
                token.strip(),
                self._jwt_key,
                algorithms=["HS256"],
                leeway=JWT_LEEWAY_SECONDS,
                options={"require": ["exp", "iat"], "verify_aud": False, "verify_iss": False},
            )
            header = jwt.get_unverified_header(token.strip())
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token has expired; refresh it") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the access token is not valid: {exc}") from None
        key_id = header.get("kid")
        if not isinstance(key_id, str):
            raise AuthError("the access token names no API key (no 'kid' header)")
        return Principal(self._valid_key(key_id))
