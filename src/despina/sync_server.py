"""``despina sync`` with an API token: neptune-scale queues sent to the server the token names.

A ``run_operations.sqlite3`` queue is read in the units the local sync applies
(:func:`despina.sync.queue_units`), converted by the same decoder, and sent through the native
write endpoints a remote ``despina.Run`` uses (docs/remote-logging.md): the run's creation,
its updates as encoded batches, then the files the queue holds, uploaded and registered with
their receipts. The server applies each with the store's own functions, as the local sync does.

Every request carries an id derived from the queue operations it stands for (their sequence
numbers and bytes); the server records it in the transaction that applies the request, so a
resend after a lost answer, a server that went down mid-send, or a second sync of the same queue
is answered from the record and applied once. A unit's operations are deleted from the queue
once the server acknowledged all of it, and the queue goes when nothing is left.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from despina.errors import AuthError, DespinaError
from despina.store.batch import Batch, IngestIssue
from despina.store.http.batches import batch_request, encode_batch, issues_of, split_batch
from despina.store.http.connection import ServerConnection, ServerUnreachable
from despina.store.op_queues import OperationQueue
from despina.sync import (
    QueueUnit,
    SyncResult,
    open_operation_queue,
    queue_units,
    readable_uploads,
    remove_queue_files,
)

__all__ = ["send_neptune_queue", "stops_every_queue"]

REQUEST_PREFIX = "neptune-queue"
"""Request ids of synced neptune-scale queues (``<prefix>:<digest>:<part>``): never a despina
log queue's (``<queue id>:<seq>``)."""


def stops_every_queue(exc: BaseException) -> bool:
    """A failure the next queues would meet too (the server down, the token refused)."""
    return isinstance(exc, ServerUnreachable | AuthError)


def send_neptune_queue(
    queue: Path,
    connection: ServerConnection,
    progress: Callable[[int], None] | None = None,
    files_from: Sequence[Path] = (),
) -> SyncResult:
    """Send one neptune-scale queue to the server of ``connection``; what the server
    acknowledged is deleted, and the queue once nothing is left.

    A failure on the way (the server down, the token or a request refused) ends the sending:
    ``error`` says why and the rest stays queued for the next sync. Files are read only from the
    queue's directory and ``files_from`` (as :func:`despina.sync.sync_queue` does).

    Raises:
        ConfigError: the file is not a queue database this version understands.
    """
    ops, project, run_id = open_operation_queue(queue)
    with ops:
        result = SyncResult(queue, project, run_id, server=connection.server)
        target = _Target(connection, project, run_id)
        try:
            for unit in queue_units(ops):
                result.issues.extend(target.send_unit(unit))
                ops.delete_operations(unit.sequences)
                result.operations += len(unit.sequences)
                if progress is not None:
                    progress(len(unit.sequences))
            _send_files(target, ops, queue.parent, files_from, result)
        except DespinaError as exc:
            result.error = exc
        except ValueError as exc:  # a creation the server's ingest would refuse alike
            result.error = ValueError(f"the queue's run creation is invalid: {exc}")
        left = ops.remaining()
    if left == 0 and result.error is None:
        remove_queue_files(queue)
        result.deleted = True
    return result


class _Target:
    """One run on the server: requests to the native write endpoints."""

    def __init__(self, connection: ServerConnection, project: str, run_id: str) -> None:
        self.connection = connection
        self.project = project
        self.run_id = run_id

    def send_unit(self, unit: QueueUnit) -> list[IngestIssue]:
        """Send one unit; the issues the server (or the decoder) reported.

        Raises:
            DespinaError: the server did not take all of it (it stays queued).
            ValueError: the creation's parameters are invalid.
        """
        from despina.server.ingest import decode_snapshots

        request = f"{REQUEST_PREFIX}:{unit.digest()}"
        if unit.create:
            spec = unit.run_spec(self.project, self.run_id, owner="")
            body = {
                "project": self.project,
                "run_id": spec.run_id,
                "request": f"{request}:create",
                "experiment_name": spec.experiment_name,
                "creation_ms": spec.creation_ms,
                "family": spec.family,
                "fork_run_id": spec.fork_run_id,
                "fork_step": spec.fork_step,
                "inherit_configs": spec.inherit_configs,
            }
            return issues_of(self.connection.post_json("/runs/create", body))
        batches, _, issues = decode_snapshots(unit.snapshots(), int(time.time() * 1000))
        for i, batch in enumerate(batches):
            # parts numbered from the unit: the same unit read again gives the same ids
            for j, part in enumerate(split_batch(batch)):
                issues.extend(self.send_batch(part, f"{request}:{i}.{j}"))
        return issues

    def send_batch(
        self, batch: Batch, request: str, receipts: Mapping[str, str] | None = None
    ) -> list[IngestIssue]:
        """POST one encoded batch (``/runs/batch``); the issues the server reported."""
        body = batch_request(
            self.project, self.run_id, request, dict(receipts or {}), encode_batch(batch)
        )
        return issues_of(self.connection.post_batch(body))

    def upload(self, data: bytes) -> tuple[str, str]:
        """POST a file's content (``/files``); its SHA-256 and the server's receipt."""
        sha = hashlib.sha256(data).hexdigest()
        return sha, self.connection.upload_file(self.project, sha, data)


def _send_files(
    target: _Target,
    ops: OperationQueue,
    queue_dir: Path,
    files_from: Sequence[Path],
    result: SyncResult,
) -> None:
    """Upload the files the queue holds and register them with the run (one batch); a file
    the server refuses (larger than it takes) stays queued and is reported."""
    readable, result.missing_files, result.refused_files = readable_uploads(
        ops, queue_dir, files_from
    )
    blobs: list[tuple[str, str, int, str]] = []
    receipts: dict[str, str] = {}
    sent: list[tuple[int, Path, bool]] = []
    for upload, path in readable:
        data = path.read_bytes()
        try:
            sha, receipt = target.upload(data)
        except DespinaError as exc:
            if stops_every_queue(exc):
                raise
            result.issues.append(
                IngestIssue(
                    "FILE_REFUSED",
                    f"server {target.connection.server} refused file {upload.source_path!r} "
                    f"({len(data)} bytes): {exc}; it stays queued",
                    upload.destination,
                )
            )
            continue
        receipts[sha] = receipt
        blobs.append((upload.destination, sha, len(data), upload.mime_type))
        sent.append((upload.id, path, upload.is_temporary))
    if not blobs:
        return
    digest = hashlib.sha256(json.dumps(blobs).encode()).hexdigest()
    result.issues.extend(
        target.send_batch(Batch(blobs=blobs), f"{REQUEST_PREFIX}:{digest}:files", receipts)
    )
    ops.delete_file_uploads([upload_id for upload_id, _, _ in sent])
    result.files = len(sent)
    own = queue_dir.resolve()
    for _, path, temporary in sent:
        if temporary and path.is_relative_to(own):  # the queue's own copy, no longer needed
            path.unlink(missing_ok=True)
