"""Server-side records: API keys, refresh tokens, ingest request statuses and blob keys.

The server (``despina.server``) keeps its state in the same store as the runs, so a restarted
server — or a second one over the same home — answers for every token and request id the first
one handed out. Secrets are never stored: API keys and refresh tokens are kept as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from despina.store import Store

__all__ = [
    "ApiKey",
    "BlobRecord",
    "ProjectInfo",
    "StoredStatus",
    "add_api_key",
    "blob_record",
    "consume_refresh_token",
    "find_api_key",
    "find_project",
    "find_refresh_token",
    "find_request",
    "find_run_pk",
    "list_api_keys",
    "list_project_infos",
    "prune_requests",
    "record_request",
    "request_statuses",
    "revoke_api_key",
    "save_refresh_token",
    "save_request",
    "sha256_hex",
]


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of bytes (or of the UTF-8 encoding of a string)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: who it belongs to and what it reaches (``project`` None: the workspace)."""

    key_id: str
    secret_sha256: str
    name: str
    username: str
    workspace: str
    project: str | None
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None

    def is_valid(self, now_ms: int | None = None) -> bool:
        """Not revoked and not expired."""
        now = _now_ms() if now_ms is None else now_ms
        return self.revoked_ms is None and (self.expires_ms is None or self.expires_ms > now)

    @property
    def scope(self) -> str:
        """``workspace/project`` for a project key, ``workspace/*`` for a workspace key."""
        return f"{self.workspace}/{self.project if self.project is not None else '*'}"


_KEY_COLUMNS = (
    "key_id, secret_sha256, name, username, workspace, project, created_ms, expires_ms, revoked_ms"
)


def add_api_key(store: Store, key: ApiKey) -> None:
    """Store a new API key (its secret already hashed)."""
    with store.write() as conn:
        conn.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.key_id,
                key.secret_sha256,
                key.name,
                key.username,
                key.workspace,
                key.project,
                key.created_ms,
                key.expires_ms,
                key.revoked_ms,
            ),
        )


def find_api_key(store: Store, key_id: str) -> ApiKey | None:
    """The key with this id, valid or not; None when unknown."""
    row = (
        store.connection()
        .execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        .fetchone()
    )
    return None if row is None else ApiKey(*row)


def list_api_keys(store: Store) -> list[ApiKey]:
    """Every key, oldest first."""
    rows = store.connection().execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_ms, key_id"
    )
    return [ApiKey(*row) for row in rows]


def revoke_api_key(store: Store, key_id: str) -> bool:
    """Revoke a key and every refresh token issued for it; False when the id is unknown."""
    with store.write() as conn:
        cursor = conn.execute(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?) WHERE key_id = ?",
            (_now_ms(), key_id),
        )
        conn.execute("DELETE FROM refresh_tokens WHERE key_id = ?", (key_id,))
        return cursor.rowcount > 0


def save_refresh_token(store: Store, token: str, key_id: str, expires_ms: int) -> None:
    """Remember a refresh token (by hash) for ``key_id``; expired ones are dropped on the way."""
    now = _now_ms()
    with store.write() as conn:
        conn.execute("DELETE FROM refresh_tokens WHERE expires_ms <= ?", (now,))
        conn.execute(
            "INSERT OR REPLACE INTO refresh_tokens (token_sha256, key_id, expires_ms) "
            "VALUES (?, ?, ?)",
            (sha256_hex(token), key_id, expires_ms),
        )


def find_refresh_token(store: Store, token: str) -> tuple[str, int] | None:
    """``(key id, expiry in epoch ms)`` of a stored refresh token, expired or not; None if
    unknown. A read: it never takes the store's write lock."""
    with store.read() as conn:
        row = conn.execute(
            "SELECT key_id, expires_ms FROM refresh_tokens WHERE token_sha256 = ?",
            (sha256_hex(token),),
        ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def consume_refresh_token(store: Store, token: str) -> str | None:
    """Delete a refresh token (tokens rotate) and return its key id; None if unknown or expired."""
    digest = sha256_hex(token)
    with store.write() as conn:
        row = conn.execute(
            "DELETE FROM refresh_tokens WHERE token_sha256 = ? RETURNING key_id, expires_ms",
            (digest,),
        ).fetchone()
    if row is None or row[1] <= _now_ms():
        return None
    return str(row[0])


# -- ingest request statuses -----------------------------------------------------------------

StoredStatus = list[tuple[str, int, str]]
"""``(google.rpc code name, count, IngestCode name)`` entries of one request's status."""


def save_request(
    store: Store,
    request_id: str,
    project_id: int,
    run_id: str,
    body_sha256: str,
    status: StoredStatus,
) -> None:
    """Record the final status of an applied operation, durably.

    It is the last write before the ingest answer, and a durable write: the status and everything
    the operation committed before it are on stable storage when the client is acknowledged.
    """
    with store.write(durable=True) as conn:
        record_request(conn, request_id, project_id, run_id, body_sha256, status)


def record_request(
    conn: Any,
    request_id: str,
    project_id: int,
    run_id: str,
    body_sha256: str,
    status: StoredStatus,
) -> None:
    """Record the final status of an operation inside the caller's write transaction (``conn``
    of :meth:`Store.write`): committed together with what the operation wrote, so a resend
    after a crash finds either both or neither."""
    conn.execute(
        "INSERT OR REPLACE INTO ingest_requests (request_id, project_id, run_id, "
        "body_sha256, status, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (request_id, project_id, run_id, body_sha256, json.dumps(status), _now_ms()),
    )


def find_request(store: Store, project_id: int, run_id: str, body_sha256: str) -> str | None:
    """The request id of an identical operation already applied to this run, if any."""
    row = (
        store.connection()
        .execute(
            "SELECT request_id FROM ingest_requests WHERE body_sha256 = ? AND project_id = ? "
            "AND run_id = ? ORDER BY created_ms LIMIT 1",
            (body_sha256, project_id, run_id),
        )
        .fetchone()
    )
    return None if row is None else str(row[0])


def request_statuses(
    store: Store, project_id: int, request_ids: Sequence[str]
) -> list[StoredStatus | None]:
    """Statuses of ``request_ids`` in order; None for an id unknown in this project."""
    found: dict[str, StoredStatus] = {}
    conn = store.connection()
    unique = list(dict.fromkeys(request_ids))
    for start in range(0, len(unique), 500):
        part = unique[start : start + 500]
        marks = ", ".join("?" * len(part))
        for request_id, status in conn.execute(
            f"SELECT request_id, status FROM ingest_requests WHERE project_id = ? "
            f"AND request_id IN ({marks})",
            (project_id, *part),
        ):
            found[request_id] = [(str(c), int(n), str(d)) for c, n, d in json.loads(status)]
    return [found.get(request_id) for request_id in request_ids]


def prune_requests(store: Store, older_than_ms: int) -> int:
    """Forget statuses recorded before ``older_than_ms``; returns how many were dropped."""
    with store.write() as conn:
        return conn.execute(
            "DELETE FROM ingest_requests WHERE created_ms < ?", (older_than_ms,)
        ).rowcount


# -- blob keys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """Where the content of a project's storage key lives."""

    sha256: str
    size: int
    mime_type: str


def blob_record(store: Store, project_id: int, path: str) -> BlobRecord | None:
    """The content stored under a project's storage key; None when nothing was uploaded."""
    row = (
        store.connection()
        .execute(
            "SELECT sha256, size, mime_type FROM blobs WHERE project_id = ? AND path = ?",
            (project_id, path),
        )
        .fetchone()
    )
    return None if row is None else BlobRecord(str(row[0]), int(row[1]), str(row[2]))


# -- projects and runs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """A project row, as the project endpoints show it."""

    id: int
    workspace: str
    name: str
    project_key: str
    uuid: str
    description: str
    visibility: str
    created_ms: int

    @property
    def full_name(self) -> str:
        return f"{self.workspace}/{self.name}"


_PROJECT_COLUMNS = "id, workspace, name, project_key, uuid, description, visibility, created_ms"


def find_project(store: Store, full_name: str) -> ProjectInfo | None:
    """The project ``workspace/project``; None when it does not exist (or the name is malformed)."""
    workspace, _, name = full_name.partition("/")
    if "\x00" in full_name:  # no stored name holds one (PostgreSQL refuses NUL in text)
        return None
    row = (
        store.connection()
        .execute(
            f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE workspace = ? AND name = ?",
            (workspace, name),
        )
        .fetchone()
    )
    return None if row is None else ProjectInfo(*row)


def list_project_infos(store: Store, workspace: str | None = None) -> list[ProjectInfo]:
    """Projects (of one workspace, or all), sorted by name."""
    conn = store.connection()
    if workspace is None:
        rows = conn.execute(f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY workspace, name")
    else:
        rows = conn.execute(
            f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE workspace = ? ORDER BY name",
            (workspace,),
        )
    return [ProjectInfo(*row) for row in rows]


def find_run_pk(store: Store, project_id: int, run_id: str) -> int | None:
    """Row id of the run with ``sys/custom_run_id`` = ``run_id`` in the project."""
    row = (
        store.connection()
        .execute("SELECT id FROM runs WHERE project_id = ? AND run_id = ?", (project_id, run_id))
        .fetchone()
    )
    return None if row is None else int(row[0])
