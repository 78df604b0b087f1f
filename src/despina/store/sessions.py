"""Web UI sessions, kept in the store so that the server can end them.

A session is created at sign-in and named by a random id that only the browser's cookie holds;
the store keeps its SHA-256, so a copy of the database signs nobody in. Signing out revokes the
row, so a copied cookie stops working at once; a session also stops when it expires, and
(checked by the UI on every request) when every API key it was signed in with is revoked or
expired. Expired rows are deleted whenever a session is created.

One-time sign-in codes (the links ``despina serve`` prints) are rows too, so that a link printed
by one server replica signs in through any other; redeeming deletes the row.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from despina.store import Store
from despina.store.access import sha256_hex

__all__ = [
    "MAX_SESSION_ID_LENGTH",
    "UiSession",
    "create_session",
    "find_session",
    "issue_sign_in_code",
    "redeem_sign_in_code",
    "revoke_session",
]

MAX_SESSION_ID_LENGTH = 128
"""Longer cookie values are not looked up at all (ids are 43 characters)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class UiSession:
    """A stored session: the API keys it was signed in with, and its lifetime."""

    key_ids: tuple[str, ...]
    username: str
    created_ms: int
    expires_ms: int
    revoked_ms: int | None

    def is_live(self, now_ms: int | None = None) -> bool:
        """Not revoked (signed out) and not expired."""
        now = _now_ms() if now_ms is None else now_ms
        return self.revoked_ms is None and self.expires_ms > now


def create_session(
    store: Store,
    key_ids: Sequence[str],
    username: str,
    lifetime_s: int,
    *,
    replaces: str | None = None,
) -> str:
    """Store a new session of ``key_ids`` and return its id (the cookie's value).

    ``replaces`` names the browser's current session, revoked in the same transaction: a
    session id changes whenever what it reaches changes. Expired sessions are deleted.
    """
    session_id = secrets.token_urlsafe(32)
    now = _now_ms()
    with store.write() as conn:
        conn.execute("DELETE FROM ui_sessions WHERE expires_ms <= ?", (now,))
        if replaces:
            conn.execute(
                "UPDATE ui_sessions SET revoked_ms = COALESCE(revoked_ms, ?) "
                "WHERE session_sha256 = ?",
                (now, sha256_hex(replaces)),
            )
        conn.execute(
            "INSERT INTO ui_sessions (session_sha256, key_ids, username, created_ms, expires_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                sha256_hex(session_id),
                json.dumps(list(key_ids)),
                username,
                now,
                now + lifetime_s * 1000,
            ),
        )
    return session_id


def find_session(store: Store, session_id: str) -> UiSession | None:
    """The session with this id, live or not; None when unknown."""
    if not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
        return None
    row = (
        store.connection()
        .execute(
            "SELECT key_ids, username, created_ms, expires_ms, revoked_ms FROM ui_sessions "
            "WHERE session_sha256 = ?",
            (sha256_hex(session_id),),
        )
        .fetchone()
    )
    if row is None:
        return None
    keys = json.loads(row[0])
    return UiSession(
        tuple(k for k in keys if isinstance(k, str)) if isinstance(keys, list) else (),
        str(row[1]),
        int(row[2]),
        int(row[3]),
        None if row[4] is None else int(row[4]),
    )


def revoke_session(store: Store, session_id: str) -> bool:
    """End a session (sign-out); False when no live session has this id."""
    found = find_session(store, session_id)
    if found is None or found.revoked_ms is not None:
        return False  # no write transaction for unknown ids
    with store.write() as conn:
        cursor = conn.execute(
            "UPDATE ui_sessions SET revoked_ms = ? WHERE session_sha256 = ? AND revoked_ms IS NULL",
            (_now_ms(), sha256_hex(session_id)),
        )
        return cursor.rowcount > 0


# -- one-time sign-in codes -------------------------------------------------------------------


def issue_sign_in_code(store: Store, key_ids: Sequence[str], lifetime_s: int) -> str:
    """Store a new one-time code signing in with ``key_ids`` for ``lifetime_s`` and return it.

    The store keeps the code's SHA-256 only. Only the newest code works: issuing one deletes
    the others (a server's start prints a new link; the links printed before, by this or any
    other replica, stop working). A code issued by one replica is redeemed by any other.
    """
    code = secrets.token_urlsafe(24)
    now = _now_ms()
    with store.write() as conn:
        conn.execute("DELETE FROM sign_in_codes")
        conn.execute(
            "INSERT INTO sign_in_codes (code_sha256, key_ids, expires_ms) VALUES (?, ?, ?)",
            (sha256_hex(code), json.dumps(list(key_ids)), now + lifetime_s * 1000),
        )
    return code


def redeem_sign_in_code(store: Store, code: str) -> list[str] | None:
    """The key ids of a live code, which stops working (on every replica at once); ``None``
    when the code is unknown, used or expired."""
    if not code or len(code) > MAX_SESSION_ID_LENGTH:
        return None
    digest = sha256_hex(code)
    if (
        store.connection()
        .execute(  # no write transaction for unknown codes
            "SELECT 1 FROM sign_in_codes WHERE code_sha256 = ?", (digest,)
        )
        .fetchone()
        is None
    ):
        return None
    with store.write() as conn:
        row = conn.execute(
            "DELETE FROM sign_in_codes WHERE code_sha256 = ? RETURNING key_ids, expires_ms",
            (digest,),
        ).fetchone()
    if row is None or int(row[1]) <= _now_ms():
        return None
    keys = json.loads(row[0])
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
