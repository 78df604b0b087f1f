"""``despina sync``: load local operation queues (``run_operations.sqlite3``) into the store,
and send despina's own log queues (``queue.sqlite3``, left by runs logging to a server) to it.

neptune-scale in ``offline`` mode — or any run whose sync was cut off — leaves its operations
in a SQLite queue (logging-api.md §6). ``despina sync`` reads the queue in sequence order,
applies the operations through the same decoder and writer the server uses, copies the files
the queue still holds into the store, and then deletes what it applied: the database goes
when nothing is left. Applying is idempotent: a queue synced twice changes nothing.

With an API token and no explicit local store, ``despina sync`` sends neptune-scale queues to
the server the token names instead (:mod:`despina.sync_server`), converted by the same
:func:`queue_units` and decoder.

A despina log queue (docs/remote-logging.md) goes to the server that its run logged to, with an
API token for that server: :func:`send_log_queue` sends it in order through the same sender a
live run uses (each operation is applied once, even if an earlier attempt's answer was lost).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from despina.client.run import _os_user
from despina.errors import ConfigError, StoreError
from despina.store import Store
from despina.store.batch import Batch, IngestIssue
from despina.store.http.queue import QUEUE_FILE as LOG_QUEUE_FILE
from despina.store.http.queue import LogQueue
from despina.store.op_queues import FileUpload, OperationQueue
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

if TYPE_CHECKING:
    from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2

__all__ = [
    "QueueUnit",
    "SyncResult",
    "find_queues",
    "open_operation_queue",
    "queue_units",
    "readable_uploads",
    "remove_queue_files",
    "send_log_queue",
    "sync_queue",
]

QUEUE_FILE = "run_operations.sqlite3"
CREATE_RUN = 1
UNIT_OPERATIONS = 10_000
"""Updates decoded and applied (or sent) together at most."""
UNIT_BYTES = 4 * 1024 * 1024
"""Serialized updates in one unit at most (once passed, the unit ends): a unit sent to a server
stays well below its request limit (32 MiB) even when its strings grow as JSON."""


@dataclass
class SyncResult:
    """What one queue brought: counts, and the issues the store reported."""

    queue: Path
    project: str
    run_id: str
    operations: int = 0
    files: int = 0
    issues: list[IngestIssue] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    refused_files: list[str] = field(default_factory=list)
    """Source paths outside the queue's directory (and ``files_from``): not read, kept queued."""
    deleted: bool = False
    server: str | None = None
    """The server the queue was sent to (None: loaded into the local store)."""
    error: Exception | None = None
    """Why sending stopped (what was not acknowledged stays queued)."""


@dataclass
class QueueUnit:
    """Consecutive operations of a neptune-scale queue that are applied together: a run's
    creation alone, or up to ``UNIT_OPERATIONS`` updates."""

    sequences: list[int] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    create: bool = False

    def run(self) -> common_pb2.Run:
        """The creation's ``Run`` message (``create`` units)."""
        from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2

        return common_pb2.Run.FromString(self.blobs[0])

    def run_spec(self, project: str, run_id: str, owner: str) -> RunSpec:
        """The creation as the server's ingest reads it.

        Raises:
            ValueError: invalid creation parameters (a fork point without a step, …).
        """
        from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

        from despina.server.ingest import _run_spec

        op = RunOperation(project=project, run_id=run_id)
        op.create.CopyFrom(self.run())
        return _run_spec(op, owner=owner)

    def snapshots(self) -> list[common_pb2.UpdateRunSnapshot]:
        from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2

        return [common_pb2.UpdateRunSnapshot.FromString(blob) for blob in self.blobs]

    def digest(self) -> str:
        """SHA-256 of the unit's sequence numbers and operations: the same unit read again
        (after a failed attempt, or from a copy of the queue) has the same digest."""
        hasher = hashlib.sha256()
        for sequence, blob in zip(self.sequences, self.blobs, strict=True):
            hasher.update(sequence.to_bytes(8, "little", signed=True))
            hasher.update(len(blob).to_bytes(8, "little"))
            hasher.update(blob)
        return hasher.hexdigest()


def queue_units(ops: OperationQueue) -> Iterator[QueueUnit]:
    """The queue's operations in sequence order as units (see :class:`QueueUnit`).

    Units depend only on the operations from the first one left: a queue whose first units were
    applied and deleted yields the same later units as before.
    """
    unit = QueueUnit()
    size = 0
    for sequence, kind, blob in ops.operations():
        if kind == CREATE_RUN:
            if unit.sequences:
                yield unit
            yield QueueUnit([sequence], [bytes(blob)], create=True)
            unit, size = QueueUnit(), 0
            continue
        unit.sequences.append(sequence)
        unit.blobs.append(bytes(blob))
        size += len(blob)
        if len(unit.sequences) >= UNIT_OPERATIONS or size >= UNIT_BYTES:
            yield unit
            unit, size = QueueUnit(), 0
    if unit.sequences:
        yield unit


def open_operation_queue(queue: Path) -> tuple[OperationQueue, str, str]:
    """The queue open, with its project and run id.

    Raises:
        ConfigError: the file is not a queue database this version understands.
    """
    ops = OperationQueue(queue)
    try:
        project, run_id, version = ops.metadata()
        if version != "v5":
            raise ConfigError(
                f"{str(queue)!r} has queue format {version!r}; despina reads format 'v5' "
                "(neptune-scale 0.30)"
            )
    except BaseException:
        ops.close()
        raise
    return ops, project, run_id


def remove_queue_files(queue: Path) -> None:
    """Delete a queue database that holds nothing any more (with its WAL files)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{queue}{suffix}").unlink(missing_ok=True)


def find_queues(path: Path, *, despina_queues: bool = False) -> list[Path]:
    """The queue databases at ``path``: the file itself, or every one found below a directory.

    ``despina_queues``: finding none is not an error (the caller found despina log queues).

    Raises:
        ConfigError: nothing is there.
    """
    if path.is_file() and path.name != LOG_QUEUE_FILE:
        return [path]
    if path.is_dir():
        found = sorted(path.rglob(QUEUE_FILE))
        if found or despina_queues:
            return found
    if despina_queues:
        return []
    raise ConfigError(
        f"no {QUEUE_FILE} or {LOG_QUEUE_FILE} at {str(path)!r}; pass a queue file or a "
        "directory holding queues (the .neptune or .despina directory of a training script, "
        "by default)"
    )


def send_log_queue(
    directory: Path, token: str, progress: Callable[[int], None] | None = None
) -> SyncResult:
    """Send a despina log queue to its server; the queue is removed once all of it was taken.

    Raises:
        QueueLocked: a live process is sending it.
        ConfigError: the token names another server than the one the queue was logged for.
        ServerUnreachable, TokenRefused: the server cannot take it now (nothing is lost).
    """
    from despina.client.remote import Sender
    from despina.store.http.connection import connection_for

    queue = LogQueue.open(directory)
    try:
        connection = connection_for(token)
        logged_to = str(queue.meta.get("server"))
        if logged_to != connection.server:
            raise ConfigError(
                f"{str(directory)!r} was logged for server {logged_to}, but the API token names "
                f"{connection.server}: use a token minted by {logged_to}"
            )
        sender = Sender(connection, queue)
        result = SyncResult(directory, sender.project, sender.run_id)
        sent = sender.send_all()
        result.operations, result.files = sent.operations, sent.files
        result.issues.extend(sent.issues)
        result.issues.extend(IngestIssue("REFUSED", text) for text in sent.refused)
        if progress is not None:
            progress(sent.operations)
        if queue.remaining() == 0:
            queue.remove()
            result.deleted = True
    finally:
        queue.close()
    return result


def sync_queue(
    store: Store,
    queue: Path,
    progress: Callable[[int], None] | None = None,
    files_from: Sequence[Path] = (),
) -> SyncResult:
    """Apply one queue to the store and remove what was applied.

    Files are read only from the queue's own directory (where neptune-scale keeps its copies of
    ``bytes`` payloads) and from the directories of ``files_from``; any other ``source_path`` a
    queue names is refused (listed in ``refused_files``, left in the queue), so that a queue
    from elsewhere cannot copy the syncing user's files into the store. Files the queue marks
    temporary are deleted only inside the queue's directory.

    Raises:
        ConfigError: the file is not a queue database this version understands.
    """
    from despina.server.ingest import decode_snapshots

    ops, project, run_id = open_operation_queue(queue)
    with ops:
        result = SyncResult(queue, project, run_id)
        writer: RunWriter | None = None
        applied: list[int] = []
        now = int(time.time() * 1000)
        for unit in queue_units(ops):
            if unit.create:
                created = create_run(store, unit.run_spec(project, run_id, _owner()))
                result.issues.extend(created.issues)
                writer = RunWriter(store, created.pk)
            else:
                if writer is None:
                    raise StoreError(f"{str(queue)!r} has updates before its run was created")
                batches, _, issues = decode_snapshots(unit.snapshots(), now)
                result.issues.extend(issues)
                for batch in batches:
                    result.issues.extend(writer.apply(batch))
            applied.extend(unit.sequences)
            if progress is not None:
                progress(len(unit.sequences))
        result.operations = len(applied)
        if writer is not None:
            result.files, result.missing_files, result.refused_files = _copy_files(
                store, ops, writer, queue.parent, files_from
            )
        ops.delete_operations(applied)
        left = ops.remaining()
    if left == 0:
        remove_queue_files(queue)
        result.deleted = True
    return result


def readable_uploads(
    ops: OperationQueue, queue_dir: Path, files_from: Sequence[Path]
) -> tuple[list[tuple[FileUpload, Path]], list[str], list[str]]:
    """The queue's file uploads whose source may be read (with its resolved path), and the
    source paths that are missing and refused (outside ``queue_dir`` and ``files_from``)."""
    readable: list[tuple[FileUpload, Path]] = []
    missing: list[str] = []
    refused: list[str] = []
    own = queue_dir.resolve()
    allowed = [own, *(d.resolve() for d in files_from)]
    for upload in ops.file_uploads():
        source = upload.source_path
        # resolved first: a link inside the queue's directory may point anywhere
        path = (own / str(source)).resolve()
        if not any(path.is_relative_to(d) for d in allowed):
            refused.append(str(source))
        elif not path.is_file():
            missing.append(str(source))
        else:
            readable.append((upload, path))
    return readable, missing, refused


def _copy_files(
    store: Store,
    ops: OperationQueue,
    writer: RunWriter,
    queue_dir: Path,
    files_from: Sequence[Path],
) -> tuple[int, list[str], list[str]]:
    """Store the files the queue still holds and register their storage keys; the counts of
    copied files, and the missing and refused source paths."""
    readable, missing, refused = readable_uploads(ops, queue_dir, files_from)
    own = queue_dir.resolve()
    batch = Batch()
    for upload, path in readable:
        sha, size = store.blobs.put(path)
        batch.blobs.append((upload.destination, sha, size, upload.mime_type))
        if upload.is_temporary and path.is_relative_to(own):
            path.unlink(missing_ok=True)
    if batch.blobs:
        writer.apply(batch)
        ops.delete_file_uploads([upload.id for upload, _ in readable])
    return len(readable), missing, refused


def _owner() -> str:
    return _os_user()
