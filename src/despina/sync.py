"""``despina sync``: load local operation queues (``run_operations.sqlite3``) into the store,
and send despina's own log queues (``queue.sqlite3``, left by runs logging to a server) to it.

neptune-scale in ``offline`` mode — or any run whose sync was cut off — leaves its operations
in a SQLite queue (logging-api.md §6). ``despina sync`` reads the queue in sequence order,
applies the operations through the same decoder and writer the server uses, copies the files
the queue still holds into the store, and then deletes what it applied: the database goes
when nothing is left. Applying is idempotent: a queue synced twice changes nothing.

A despina log queue (docs/remote-logging.md) goes to the server that its run logged to, with an
API token for that server: :func:`send_log_queue` sends it in order through the same sender a
live run uses (each operation is applied once, even if an earlier attempt's answer was lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from despina.client.run import _os_user
from despina.errors import ConfigError, StoreError
from despina.store import Store
from despina.store.batch import Batch, IngestIssue
from despina.store.http.queue import QUEUE_FILE as LOG_QUEUE_FILE
from despina.store.http.queue import LogQueue
from despina.store.op_queues import OperationQueue
from despina.store.runs import create_run
from despina.store.writer import RunWriter

__all__ = ["SyncResult", "find_queues", "send_log_queue", "sync_queue"]

QUEUE_FILE = "run_operations.sqlite3"
CREATE_RUN = 1


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
    from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2
    from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

    from despina.server.ingest import _run_spec, decode_snapshots

    with OperationQueue(queue) as ops:
        project, run_id, version = ops.metadata()
        if version != "v5":
            raise ConfigError(
                f"{str(queue)!r} has queue format {version!r}; despina reads format 'v5' "
                "(neptune-scale 0.30)"
            )
        result = SyncResult(queue, project, run_id)
        writer: RunWriter | None = None
        pending: list[common_pb2.UpdateRunSnapshot] = []
        applied: list[int] = []
        now = int(time.time() * 1000)

        def flush() -> None:
            if not pending:
                return
            if writer is None:
                raise StoreError(f"{str(queue)!r} has updates before its run was created")
            batches, _, issues = decode_snapshots(pending, now)
            result.issues.extend(issues)
            for batch in batches:
                result.issues.extend(writer.apply(batch))
            pending.clear()

        for sequence, kind, blob in ops.operations():
            if kind == CREATE_RUN:
                flush()
                op = RunOperation(project=project, run_id=run_id)
                op.create.CopyFrom(common_pb2.Run.FromString(blob))
                created = create_run(store, _run_spec(op, owner=_owner()))
                result.issues.extend(created.issues)
                writer = RunWriter(store, created.pk)
            else:
                pending.append(common_pb2.UpdateRunSnapshot.FromString(blob))
            applied.append(sequence)
            if len(pending) >= 10_000:
                flush()
            if progress is not None:
                progress(1)
        flush()
        result.operations = len(applied)
        if writer is not None:
            result.files, result.missing_files, result.refused_files = _copy_files(
                store, ops, writer, queue.parent, files_from
            )
        ops.delete_operations(applied)
        left = ops.remaining()
    if left == 0:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{queue}{suffix}").unlink(missing_ok=True)
        result.deleted = True
    return result


def _copy_files(
    store: Store,
    ops: OperationQueue,
    writer: RunWriter,
    queue_dir: Path,
    files_from: Sequence[Path],
) -> tuple[int, list[str], list[str]]:
    """Store the files the queue still holds and register their storage keys; the counts of
    copied files, and the missing and refused source paths."""
    copied = 0
    missing: list[str] = []
    refused: list[str] = []
    done: list[int] = []
    batch = Batch()
    own = queue_dir.resolve()
    allowed = [own, *(d.resolve() for d in files_from)]
    for upload in ops.file_uploads():
        source = upload.source_path
        # resolved first: a link inside the queue's directory may point anywhere
        path = (own / str(source)).resolve()
        if not any(path.is_relative_to(d) for d in allowed):
            refused.append(str(source))
            continue
        if not path.is_file():
            missing.append(str(source))
            continue
        sha, size = store.blobs.put(path)
        batch.blobs.append((upload.destination, sha, size, upload.mime_type))
        done.append(upload.id)
        copied += 1
        if upload.is_temporary and path.is_relative_to(own):
            path.unlink(missing_ok=True)
    if batch.blobs:
        writer.apply(batch)
        ops.delete_file_uploads(done)
    return copied, missing, refused


def _owner() -> str:
    return _os_user()
