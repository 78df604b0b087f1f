"""Sign-in, sessions and CSRF tokens of the web UI.

People sign in with an API token (the one ``despina token create`` prints), or with the one-time
link ``despina serve`` prints at every start. The link signs in as the server's **operator**: a
stored key of scope ``*/*`` (every workspace, also those created later) whose secret is never
shown, so it works for the web UI only (no Neptune client can use it), is listed by ``despina
token list`` and ends every operator session when revoked (the next start makes a new one).

Scripts read the ``.json`` twins without a session: ``Authorization: Bearer <token>`` with either
the JWT access token of the Neptune API or the API token itself (what ``despina token create``
prints, or its bare ``api_key``), checked exactly as the API checks them.

A session is a row of the store (``despina.store.sessions``) named by a random id that only the
browser's cookie holds (the store keeps its hash). Signing out revokes the row, so a copied cookie
stops working; every request re-reads the session's keys, so revoking a key (``despina token
revoke``) ends the sessions that use it at once. Signing in with a second token (another workspace)
adds its key to the session under a new id; a page is readable when any of the session's keys
reaches its project, exactly as the Neptune endpoints check a bearer token.

Forms that change state (sign-in, sign-out) carry a CSRF token: an HMAC, under a key derived
from the server secret, of a random value kept in a second cookie (``despina_csrf``). Another
site can neither read the cookie nor compute the token, so it cannot sign a visitor in with
its own token (login CSRF) nor sign them out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from despina.errors import AuthError
from despina.server.auth import Authenticator, Principal, decode_api_token, derive_key
from despina.store import Store
from despina.store.access import ApiKey, add_api_key, find_api_key, list_api_keys, sha256_hex
from despina.store.sessions import (
    create_session,
    find_session,
    issue_sign_in_code,
    redeem_sign_in_code,
    revoke_session,
)

__all__ = [
    "COOKIE",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "MAX_KEYS",
    "OPERATOR_WORKSPACE",
    "SESSION_SECONDS",
    "Sessions",
    "SignInCodes",
    "Viewer",
    "key_reaches",
    "new_csrf_binding",
    "operator_key",
    "valid_csrf_binding",
]

COOKIE = "despina_session"
CSRF_COOKIE = "despina_csrf"
"""The cookie holding the random value that form CSRF tokens are bound to."""
CSRF_FIELD = "csrf"
"""The form field carrying the CSRF token."""
SESSION_SECONDS = 14 * 24 * 3600
"""How long a session lasts after sign-in."""
MAX_KEYS = 16
"""The most keys (tokens signed in with) one session holds."""
OPERATOR_WORKSPACE = "*"
"""The workspace of the operator's key: every workspace, for the web UI only (no workspace can
be named ``*``, and the Neptune API's checks never match it)."""
OPERATOR_KEY_NAME = "web UI operator (sign-in links of despina serve)"


def key_reaches(key: ApiKey, project: str) -> bool:
    """Whether ``key`` reaches ``workspace/project`` in the web UI: as the API decides, or any
    project for the operator's key."""
    return key.workspace == OPERATOR_WORKSPACE or Principal(key).reaches(project)


def operator_key(store: Store, username: str) -> ApiKey:
    """The operator's valid key, created (with a secret nobody is shown) when there is none."""
    for key in list_api_keys(store):
        if key.workspace == OPERATOR_WORKSPACE and key.is_valid():
            return key
    key = ApiKey(
        key_id=secrets.token_hex(8),
        secret_sha256=sha256_hex(secrets.token_urlsafe(32)),  # the secret is thrown away
        name=OPERATOR_KEY_NAME,
        username=username,
        workspace=OPERATOR_WORKSPACE,
        project=None,
        created_ms=int(time.time() * 1000),
        expires_ms=None,
        revoked_ms=None,
    )
    add_api_key(store, key)
    return key


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
        return any(key_reaches(p.key, project) for p in self.principals)

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
    """Starts, checks and ends sessions (stored), checks API tokens at sign-in, and makes and
    checks CSRF tokens."""

    def __init__(self, store: Store, server_key: bytes) -> None:
        self.store = store
        self._csrf_key = derive_key(server_key, "ui-csrf")

    def start(self, key_ids: Sequence[str], replaces: str | None = None) -> str:
        """A new session of ``key_ids``; returns its id (the cookie's value).

        ``replaces`` (the browser's current session id, if any) is revoked: the id changes
        whenever the session's reach does.
        """
        keys = list(dict.fromkeys(key_ids))[:MAX_KEYS]
        first = find_api_key(self.store, keys[0]) if keys else None
        username = first.username if first is not None else ""
        return create_session(
            self.store, keys, username, SESSION_SECONDS, replaces=replaces or None
        )

    def key_ids(self, cookie: str | None) -> list[str]:
        """The key ids of a live session; empty when absent, unknown, revoked or expired."""
        if not cookie:
            return []
        found = find_session(self.store, cookie)
        if found is None or not found.is_live():
            return []
        return list(found.key_ids[:MAX_KEYS])

    def viewer(self, cookie: str | None) -> Viewer | None:
        """The viewer of a cookie: its keys that are still valid; ``None`` without any."""
        principals = []
        for key_id in self.key_ids(cookie):
            key = find_api_key(self.store, key_id)
            if key is not None and key.is_valid():
                principals.append(Principal(key))
        return Viewer(tuple(principals)) if principals else None

    def end(self, cookie: str | None) -> bool:
        """Sign out: revoke the session (server-side); False when it was not live."""
        return bool(cookie) and revoke_session(self.store, cookie or "")

    def csrf_token(self, binding: str) -> str:
        """The CSRF token of forms shown to the browser whose CSRF cookie is ``binding``."""
        return hmac.new(self._csrf_key, binding.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        """Whether a posted form's token matches the browser's CSRF cookie."""
        if not binding or not token:
            return False
        return hmac.compare_digest(self.csrf_token(binding), token)

    def bearer(self, authorization: str, auth: Authenticator) -> Viewer:
        """The viewer of an ``Authorization: Bearer`` header: a JWT access token (three dotted
        parts), else an API token or bare ``api_key``.

        Raises:
            AuthError: not a bearer header, or a token the API would refuse (401).
        """
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                "the Authorization header must be 'Bearer <token>': an API token from "
                "'despina token create' or a JWT access token of the API"
            )
        if token.count(".") == 2:
            return Viewer((auth.principal(f"Bearer {token}"),))
        return Viewer((Principal(self.check_token(token)),))

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


def new_csrf_binding() -> str:
    """A fresh random value for the CSRF cookie."""
    return secrets.token_urlsafe(32)


def valid_csrf_binding(value: str | None) -> str | None:
    """The CSRF cookie's value when it looks like one this server set; otherwise None."""
    if value is None or not 32 <= len(value) <= 128:
        return None
    return value


class SignInCodes:
    """One-time sign-in codes (printed as links at start-up); each works once, for an hour, on
    every server replica over the store (the store keeps them), until a newer one is issued."""

    LIFETIME_S = 3600

    def __init__(self, store: Store) -> None:
        self.store = store

    def issue(self, key_ids: Sequence[str]) -> str:
        """A new code signing in with ``key_ids``."""
        return issue_sign_in_code(self.store, key_ids, self.LIFETIME_S)

    def redeem(self, code: str) -> list[str] | None:
        """The key ids of a code, which stops working; ``None`` when unknown, used or expired."""
        return redeem_sign_in_code(self.store, code)
