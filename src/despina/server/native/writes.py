"""Native write endpoints: what ``despina.Run`` with an API token sends from its local queue
(docs/remote-logging.md).

Every operation applies through the store functions an in-process run calls (``create_run``,
``RunWriter.apply``, ``mark_closed``, the registry's functions), so the ingest rules are the same
whichever way data arrives. An operation from a queue carries ``request`` (``<queue id>:<seq>``);
its outcome is recorded in the ingest-status table in the transaction that applied it, so a
resend after a lost answer is answered from the record and applied once.
"""

from __future__ import annotations

import hmac
import struct
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from despina.config import parse_project
from despina.errors import ConfigError, ProjectNotFound, RunNotFound
from despina.server.auth import Principal
from despina.server.errors import bad_request
from despina.server.ingest import _status, _Writers
from despina.server.native.common import NativeRoute, native_endpoint, project_in
from despina.store.access import (
    StoredStatus,
    find_project,
    find_request,
    find_run_pk,
    record_request,
    save_request,
    sha256_hex,
)
from despina.store.batch import WARNING, Batch, IngestIssue
from despina.store.http.batches import decode_batch, split_request
from despina.store.registry import change_stage, create_model, create_model_version, open_object
from despina.store.runs import RunSpec, create_run, mark_closed

__all__ = ["ROUTES", "file_receipt", "split_envelope"]

_writers: dict[int, tuple[Any, _Writers]] = {}
_writers_lock = threading.Lock()
_create_lock = threading.Lock()


class _Applied(Exception):
    def __init__(self, status: StoredStatus) -> None:
        super().__init__("already applied")
        self.status = status


def _writers_of(state: Any) -> _Writers:
    with _writers_lock:
        found = _writers.get(id(state))
        if found is None or found[0] is not state:
            found = _writers[id(state)] = (state, _Writers(state.store))
        return found[1]


def _issues_json(issues: list[IngestIssue]) -> list[dict[str, Any]]:
    return [
        {
            "code": i.code,
            "message": i.message,
            "path": i.path,
            "severity": i.severity,
            "count": i.count,
        }
        for i in issues
    ]


def _answer(issues: list[IngestIssue], resent: bool = False) -> dict[str, Any]:
    return {"issues": _issues_json(issues), "resent": resent}


def _from_status(status: StoredStatus) -> dict[str, Any]:
    """The answer to a resend: the issues recorded when the operation was applied."""
    issues = [
        IngestIssue(
            detail,
            f"{detail} (reported when this operation was first applied)",
            None,
            WARNING if detail in _WARNING_CODES else "error",
            count,
        )
        for code, count, detail in status
        if code != "OK"
    ]
    return _answer(issues, resent=True)


_WARNING_CODES = frozenset(
    {"RUN_DUPLICATE", "RUN_CONFLICTING", "RUN_FORK_PARENT_NOT_FOUND", "SERIES_POINT_DUPLICATE"}
)


def _digest(request: Any) -> str | None:
    if request is None:
        return None
    if not isinstance(request, str) or not request or len(request) > 200:
        raise bad_request("'request' must be a short string ('<queue id>:<sequence>')")
    return sha256_hex(f"despina-queue:{request}")


def _project(state: Any, principal: Principal, name: str, *, create: bool = False) -> int:
    """The project's row id; created when allowed (``create``) as the neptune ingest does."""
    try:
        parse_project(name)
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None
    found = find_project(state.store, name)
    if found is None and create:
        workspace = name.split("/")[0]
        if state.settings.auto_create_projects and principal.may_create_in(workspace):
            state.store.create_project(name, exist_ok=True)
            found = find_project(state.store, name)
    if found is None:
        raise ProjectNotFound(
            f"project {name!r} does not exist on this server; create it there with "
            f"'despina project create {name}' (or start the server with "
            "DESPINA_AUTO_CREATE_PROJECTS=1)"
        )
    return int(found.id)


def _run_pk(state: Any, project_id: int, project: str, run_id: str) -> int:
    pk = find_run_pk(state.store, project_id, run_id)
    if pk is None:
        raise RunNotFound(f"run {run_id!r} does not exist in project {project!r}")
    return pk


def _text(body: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or not _encodable(value):
        raise bad_request(f"{key!r} must be a non-empty UTF-8 string, got {value!r:.80}")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise bad_request(f"{key!r} must be a 64-bit integer, got {value!r:.80}")
    return value


# -- runs ------------------------------------------------------------------------------------


def create_run_call(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    """Create (or resume) a run, as ``despina.Run`` does in-process."""
    project = project_in(principal, body)
    project_id = _project(state, principal, project, create=True)
    run_id = _text(body, "run_id")
    digest = _digest(body.get("request"))
    if digest is not None:
        earlier = find_request(state.store, project_id, run_id, digest)
        if earlier is not None:
            return _answer([], resent=True)
    spec = RunSpec(
        project=project,
        run_id=run_id,
        experiment_name=_text(body, "experiment_name", optional=True),
        creation_ms=_int(body, "creation_ms"),
        family=_text(body, "family", optional=True),  # neptune-scale queues name it
        fork_run_id=_text(body, "fork_run_id", optional=True),
        fork_step=_int(body, "fork_step"),
        inherit_configs=body.get("inherit_configs") is not False,
        owner=principal.username,
        description=_text({"d": body.get("description") or None}, "d", optional=True) or "",
    )
    try:
        with _create_lock:  # experiment heads: one creation at a time in this process
            created = create_run(state.store, spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if digest is not None:
        save_request(
            state.store, str(uuid.uuid4()), project_id, run_id, digest, _status(1, created.issues)
        )
    return _answer(list(created.issues))


def file_receipt(state: Any, project: str, sha256: str) -> str:
    """Proof that this server received content ``sha256`` for ``project``: a batch may then
    reference it (a client cannot link content it never sent, e.g. another project's)."""
    return str(state.storage.signature_of("NATIVE-FILE", project, sha256, {}))


def split_envelope(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """A batch request's envelope (JSON) and the encoded batch after it."""
    try:
        envelope, batch = split_request(data)
    except (struct.error, ValueError) as exc:
        raise bad_request(f"the body must start with a u32-framed JSON envelope: {exc}") from None
    if not isinstance(envelope, dict):
        raise bad_request("the envelope must be a JSON object")
    return envelope, batch


def apply_batch_call(state: Any, principal: Principal, body: bytes, params: Any) -> Any:
    """Apply one encoded batch to a run with the store's writer (same rules as in-process)."""
    envelope, encoded = split_envelope(body)
    project = project_in(principal, envelope)
    run_id = _text(envelope, "run_id")
    digest = _digest(envelope.get("request"))
    project_id = _project(state, principal, project)
    pk = _run_pk(state, project_id, project, run_id)
    batch = decode_batch(encoded)
    receipts = envelope.get("receipts") or {}
    for _key, sha, _size, _mime in batch.blobs:
        receipt = receipts.get(sha) if isinstance(receipts, dict) else None
        if not isinstance(receipt, str) or not hmac.compare_digest(
            receipt, file_receipt(state, project, str(sha))
        ):
            raise bad_request(
                f"the batch references content {str(sha)[:16]}… that was not uploaded for "
                f"project {project!r}; upload it first (POST /files)"
            )
    if digest is not None:
        earlier = find_request(state.store, project_id, run_id, digest)
        if earlier is not None:
            return _answer([], resent=True)
    writer, lock = _writers_of(state).get(pk)

    def guard(conn: Any) -> None:
        if digest is not None and find_request(state.store, project_id, run_id, digest):
            raise _Applied([])

    def record(conn: Any, found: list[IngestIssue]) -> None:
        if digest is not None:
            record_request(
                conn, str(uuid.uuid4()), project_id, run_id, digest, _status(_items(batch), found)
            )

    with lock:
        try:
            issues = writer.apply(batch, durable=True, guard=guard, before_commit=record)
        except _Applied:
            return _answer([], resent=True)
    return _answer(issues)


def _items(batch: Batch) -> int:
    return (
        len(batch.ops)
        + sum(len(c.steps) for c in batch.metrics.values())
        + len(batch.previews)
        + len(batch.points)
    )


def close_run_call(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    """Mark a run closed by its logging process (``failed``: it ended with an exception)."""
    project = project_in(principal, body)
    project_id = _project(state, principal, project)
    pk = _run_pk(state, project_id, project, _text(body, "run_id"))
    mark_closed(state.store, pk, failed=bool(body.get("failed")))
    return _answer([])


def ping_run_call(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    """Record that the logging process is alive (``sys/ping_time``)."""
    project = project_in(principal, body)
    project_id = _project(state, principal, project)
    pk = _run_pk(state, project_id, project, _text(body, "run_id"))
    writer, lock = _writers_of(state).get(pk)
    with lock:
        writer.ping()
    return _answer([])


def upload_file_call(state: Any, principal: Principal, body: bytes, params: Any) -> Any:
    """Store a logged file's content; answers its hash, size and the receipt a batch needs."""
    project = project_in(principal, params)
    _project(state, principal, project)
    expected = params.get("sha256")
    sha, size = state.store.blobs.put(bytes(body))
    if expected is not None and expected != sha:
        raise bad_request(f"the content's SHA-256 is {sha}, not {expected!r}: resend the file")
    return {"sha256": sha, "size": size, "receipt": file_receipt(state, project, sha)}


# -- models and versions ---------------------------------------------------------------------


def create_model_call(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    project = project_in(principal, body)
    _project(state, principal, project, create=True)
    object_id, _ = create_model(state.store, project, _text(body, "key"), principal.username)
    return {"id": object_id}


def create_version_call(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    project = project_in(principal, body)
    _project(state, principal, project)
    object_id, _ = create_model_version(
        state.store, project, _text(body, "model"), principal.username
    )
    return {"id": object_id}


def open_object_call(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    project = project_in(principal, body)
    _project(state, principal, project)
    kind = _text(body, "kind")
    if kind not in ("model", "model_version"):
        raise bad_request(f"'kind' must be 'model' or 'model_version', got {kind!r}")
    open_object(state.store, project, _text(body, "id"), kind)
    return {"id": body["id"]}


def change_stage_call(state: Any, principal: Principal, body: Any, params: Any) -> Any:
    project = project_in(principal, body)
    project_id = _project(state, principal, project)
    pk = _run_pk(state, project_id, project, _text(body, "id"))
    change_stage(state.store, pk, _text(body, "stage"))
    return _answer([])


ROUTES: list[NativeRoute] = [
    native_endpoint("/runs/create", create_run_call, write=True),
    native_endpoint(
        "/runs/batch", apply_batch_call, write=True, body="bytes", limit="max_ingest_bytes"
    ),
    native_endpoint("/runs/close", close_run_call, write=True),
    native_endpoint("/runs/ping", ping_run_call, write=True),
    native_endpoint("/files", upload_file_call, write=True, body="bytes", limit="max_blob_bytes"),
    native_endpoint("/models/create", create_model_call, write=True),
    native_endpoint("/model-versions/create", create_version_call, write=True),
    native_endpoint("/objects/open", open_object_call, write=True),
    native_endpoint("/model-versions/stage", change_stage_call, write=True),
]
"""Native writes endpoints (see the module docstring)."""
