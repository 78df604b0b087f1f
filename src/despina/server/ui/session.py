"""Sign-in and sessions of the web UI.

People sign in with an API token (the one ``despina token create`` prints, or the one-time link
the server prints when it starts on a home without any token). The session is a cookie holding
the key ids signed with a key derived from the server secret (HMAC-SHA256); it never holds a
secret. Every request re-reads the keys, so revoking a key (``despina token revoke``) ends the
sessions that use it at once. Signing in with a second token (another workspace) adds its key to
the session; a page is readable when any of the session's keys reaches its project, exactly as
the Neptune endpoints check a bearer token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from despina.errors import AuthError
from despina.server.auth import Principal, decode_api_token, derive_key
from despina.store.access import ApiKey, find_api_key, sha256_hex
from despina.store.sqlite import Store

__all__ = [
    "COOKIE",
    "MAX_KEYS",
    "SESSION_SECONDS",
    "Sessions",
    "SignInCodes",
    "Viewer",
]

COOKIE = "despina_session"
SESSION_SECONDS = 14 * 24 * 3600
"""How long a session lasts after sign-in."""
MAX_KEYS = 16
"""The most keys (tokens signed in with) one session holds."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a session: one principal per valid key signed in with."""

    principals: tuple[Principal, ...]

    @property
    def username(self) -> str:
        return self.principals[0].username if self.principals else ""

    @property
    def key_ids(self) -> list[str]:
        return [p.key.key_id for p in self.principals]

    def reaches(self, project: str) -> bool:
        """Whether some key of the session reaches ``workspace/project``."""
        return any(p.reaches(project) for p in self.principals)

    def require(self, project: str) -> None:
        """Refuse (403) a project no key of the session reaches.

        Raises:
            AuthError: no key reaches the project (status 403).
        """
        if not self.reaches(project):
            scopes = ", ".join(p.key.scope for p in self.principals) or "none"
            raise AuthError(
                f"your session (tokens for {scopes}) may not access project {project!r}; sign "
                f"in with a token that reaches it ('despina token create --project {project}')",
                403,
            )


class Sessions:
    """Signs and checks session cookies, and checks API tokens at sign-in."""

    def __init__(self, store: Store, server_key: bytes) -> None:
        self.store = store
        self._key = derive_key(server_key, "ui-session")

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def encode(self, key_ids: Sequence[str], now: float | None = None) -> str:
        """A cookie value for a session of ``key_ids`` starting now."""
        issued = int(time.time() if now is None else now)
        payload = json.dumps(
            {"k": list(key_ids)[:MAX_KEYS], "iat": issued, "exp": issued + SESSION_SECONDS},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def key_ids(self, cookie: str | None) -> list[str]:
        """The key ids of a cookie value; empty when absent, forged or expired."""
        if not cookie or "." not in cookie or len(cookie) > 4096:
            return []
        body, _, signature = cookie.partition(".")
        try:
            payload = _unb64(body)
        except (binascii.Error, ValueError):
            return []
        if not hmac.compare_digest(self._sign(payload), signature):
            return []
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return []
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
            return []
        if data["exp"] < time.time():
            return []
        keys = data.get("k")
        if not isinstance(keys, list):
            return []
        return [k for k in keys if isinstance(k, str)][:MAX_KEYS]

    def viewer(self, cookie: str | None) -> Viewer | None:
        """The viewer of a cookie: its keys that are still valid; ``None`` without any."""
        principals = []
        for key_id in self.key_ids(cookie):
            key = find_api_key(self.store, key_id)
            if key is not None and key.is_valid():
                principals.append(Principal(key))
        return Viewer(tuple(principals)) if principals else None

    def check_token(self, token: str) -> ApiKey:
        """The key of a pasted API token.

        Raises:
            AuthError: the token is malformed, unknown, revoked, expired or its secret is wrong.
        """
        key_id, secret = decode_api_token(token)
        key = find_api_key(self.store, key_id)
        if key is None:
            raise AuthError(
                f"unknown API key {key_id!r}; create a token with 'despina token create'"
            )
        if key.revoked_ms is not None:
            raise AuthError(f"API key {key_id!r} was revoked; create a new token")
        if not key.is_valid():
            raise AuthError(f"API key {key_id!r} has expired; create a new token")
        if not hmac.compare_digest(key.secret_sha256, sha256_hex(secret)):
            raise AuthError(f"the secret of API key {key_id!r} does not match")
        return key


class SignInCodes:
    """One-time sign-in codes (printed as links at start-up); each works once, for an hour."""

    LIFETIME_S = 3600

    def __init__(self) -> None:
        self._codes: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def issue(self, key_ids: Sequence[str]) -> str:
        """A new code signing in with ``key_ids``."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[hashlib.sha256(code.encode()).hexdigest()] = (
                time.time() + self.LIFETIME_S,
                list(key_ids),
            )
        return code

    def redeem(self, code: str) -> list[str] | None:
        """The key ids of a code, which stops working; ``None`` when unknown, used or expired."""
        digest = hashlib.sha256(code.encode()).hexdigest()
        with self._lock:
            found = self._codes.pop(digest, None)
        if found is None or found[0] < time.time():
            return None
        return found[1]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
