"""Logging to a server: the local queue on the flusher's side, a sender thread on the other.

With an API token (``api_token=``, ``despina.query.set_api_token``, ``DESPINA_API_TOKEN`` /
``NEPTUNE_API_TOKEN``) a run's flusher does not write to a store: every flush becomes one
encoded batch appended to the run's queue on the local disk (:mod:`despina.store.http.queue`),
logged files are copied into it, and :class:`Sender` sends what is queued, in order, to the
server's native write endpoints. The training loop never waits on the network: a server that
is down or slow only grows the queue (the lag callback fires; network errors go to the network
callback). What the server acknowledged is deleted; what is left when the process ends is sent
by the next run started from the same log directory or by ``despina sync``.
See docs/remote-logging.md.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from despina.errors import AuthError, DespinaError, ProjectNotFound, RunNotFound, StoreBusy
from despina.store.batch import Assign, Batch, IngestIssue
from despina.store.http.batches import (
    BATCH_MAGIC,
    batch_request,
    decode_batch,
    encode_batch,
    issues_of,
    split_batch,
)
from despina.store.http.connection import (
    ServerConnection,
    ServerUnreachable,
)
from despina.store.http.queue import LogQueue, QueuedOperation, QueueLocked, find_log_queues
from despina.store.http.tokens import remote_token

__all__ = [
    "QueueFiles",
    "QueueSink",
    "SendResult",
    "Sender",
    "remote_token",
    "send_leftovers",
]

logger = logging.getLogger("despina")

RETRY_MAX_SECONDS = 30.0
"""Longest wait between two attempts while the server is unreachable or refuses the token."""

CLOSE_GIVE_UP_SECONDS = 15.0
"""``close()`` without a timeout stops waiting once sending has failed for this long."""

FIRST_SEND_SECONDS = 3.5
"""How long ``Run()`` tries to reach the server before it goes on with the queue alone (the
connection's five attempts to a server that refuses connections take about 3 s)."""

_active_leftovers: set[Path] = set()
_leftovers_lock = threading.Lock()
_leftover_senders: list[Sender] = []
"""Senders of leftover queues this process started (waited for at exit)."""


def _retryable(exc: BaseException) -> bool:
    """Failures that a later attempt may get past (nothing is dropped for them): the server
    down or busy, the token refused, the project (or the run, whose creation then failed)
    missing on the server until someone creates it."""
    return isinstance(
        exc, ServerUnreachable | AuthError | StoreBusy | OSError | ProjectNotFound | RunNotFound
    )


@dataclass
class SendResult:
    """What a sender sent: operations, files, and the issues the server reported."""

    operations: int = 0
    files: int = 0
    issues: list[IngestIssue] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class QueueFiles:
    """The flusher's file store in remote mode: contents go into the queue directory."""

    def __init__(self, queue: LogQueue) -> None:
        self.queue = queue

    def put(self, source: Path | bytes) -> tuple[str, int]:
        return self.queue.put_file(source)


class QueueSink:
    """The flusher's writer in remote mode: a batch is encoded and appended to the queue."""

    def __init__(self, queue: LogQueue, sender: Sender) -> None:
        self.queue = queue
        self.sender = sender
        self.run_pk = 0

    def apply(self, batch: Batch) -> list[IngestIssue]:
        # part by part: the sender sends the first while the next is encoded and written
        for part in split_batch(batch):
            self.sender.queued(self.queue.append("batch", encode_batch(part)))
        return []  # the server's issues arrive with its acknowledgement (the sender's)

    def ping(self) -> None:
        self.sender.ping_due = True
        self.sender.wake()


def _batch_blobs(body: bytes) -> list[str]:
    """The content hashes an encoded batch references (read from its header only)."""
    if body[:4] != BATCH_MAGIC:
        return []
    (size,) = struct.unpack_from("<I", body, 4)
    header = json.loads(body[8 : 8 + size])
    return [str(b[1]) for b in header.get("blobs", [])]


def _without_files(body: bytes, refused: Mapping[str, Exception]) -> bytes:
    """An encoded batch without the file references to contents in ``refused``."""
    batch = decode_batch(body)
    keys = {b[0] for b in batch.blobs if b[1] in refused}
    batch.blobs = [b for b in batch.blobs if b[1] not in refused]
    batch.ops = [
        op
        for op in batch.ops
        if not (isinstance(op, Assign) and op.type == "file" and op.value.get("path") in keys)
    ]
    batch.points = [
        p
        for p in batch.points
        if not (p.type == "file_series" and json.loads(p.value).get("path") in keys)
    ]
    return encode_batch(batch)


class Sender:
    """Sends one queue to the server in order; deletes what was acknowledged.

    Runs as a thread (:meth:`start`) for a live run or a leftover queue, or in the caller's
    thread (:meth:`send_all`) for ``despina sync``.
    """

    def __init__(
        self,
        connection: ServerConnection,
        queue: LogQueue,
        *,
        on_issues: Callable[[list[IngestIssue]], None] | None = None,
        on_network_error: Callable[[BaseException], None] | None = None,
        on_refused: Callable[[BaseException], None] | None = None,
        remove_when_done: bool = False,
    ) -> None:
        self.connection = connection
        self.queue = queue
        self.project = str(queue.meta["project"])
        self.run_id = str(queue.meta["run_id"])
        self.queue_id = str(queue.meta["queue_id"])
        self.on_issues = on_issues
        self.on_network_error = on_network_error
        self.on_refused = on_refused
        self.remove_when_done = remove_when_done
        self.acked = 0
        self.queued_seq = queue.last_seq()
        self.cond = threading.Condition()
        self.stopping = False
        self.give_up_at: float | None = None
        self.ping_due = False
        self.failing_since: float | None = None
        self.finished = threading.Event()
        self.result = SendResult()
        self._receipts: dict[str, str] = {}
        self._times: deque[tuple[int, float]] = deque()
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._raise_refused = False
        self._first_deadline: float | None = None

    # -- the flusher's side ----------------------------------------------------------------

    def queued(self, seq: int) -> None:
        """Operations up to ``seq`` are in the queue (durably)."""
        with self.cond:
            self._times.append((seq, time.monotonic()))
            self.queued_seq = max(self.queued_seq, seq)
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def oldest_unacked(self) -> float | None:
        """Monotonic time the oldest operation not acknowledged yet was queued (lag)."""
        times = self._times
        return times[0][1] if times else None

    # -- the thread --------------------------------------------------------------------------

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, give_up_at: float | None) -> None:
        """Send what is queued until ``give_up_at`` (monotonic; None: no deadline), then stop."""
        with self.cond:
            self.stopping = True
            self.give_up_at = give_up_at
            self.cond.notify_all()

    def join(self, timeout: float | None) -> bool:
        """Whether the thread ended within ``timeout``."""
        return self.finished.wait(timeout)

    def wait_acked(self, seq: int, timeout: float | None) -> bool:
        """Wait until the server acknowledged every operation up to ``seq``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.acked < seq:
                if self.finished.is_set():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(0.1 if remaining is None else min(0.1, remaining))
        return True

    def _run(self) -> None:
        delay = 0.2
        last_ping = time.monotonic()
        try:
            while True:
                with self.cond:
                    while not (self.stopping or self.queued_seq > self.acked or self.ping_due):
                        self.cond.wait(1.0)
                        if time.monotonic() - last_ping > 10.0:
                            self.ping_due = True
                if (
                    self.stopping
                    and self.give_up_at is not None
                    and time.monotonic() >= self.give_up_at
                ):
                    return
                try:
                    sent = self.send_available()
                    if self.ping_due and not sent:
                        self.connection.post_json(
                            "/runs/ping",
                            {"project": self.project, "run_id": self.run_id},
                            deadline=self._deadline(),
                        )
                    self.ping_due = False
                    last_ping = time.monotonic()
                    self._recovered()
                    delay = 0.2
                except Exception as exc:
                    if not _retryable(exc):
                        raise
                    self._failed(exc)
                    with self.cond:
                        wait = delay
                        if self.stopping and self.give_up_at is not None:
                            wait = min(wait, max(0.0, self.give_up_at - time.monotonic()))
                        self.cond.wait(wait)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
                    continue
                if self.stopping and self.acked >= self.queue.last_seq():
                    return
        except BaseException:
            logger.exception("despina: sending run %r to the server failed", self.run_id)
        finally:
            if self.remove_when_done:
                self._finish_leftover()
            self.finished.set()
            with self.cond:
                self.cond.notify_all()

    def _finish_leftover(self) -> None:
        try:
            left = self.queue.remaining()
        except Exception:
            left = 1
        if left == 0:
            self.queue.remove()
            logger.info("despina: sent the queue left by run %r", self.run_id)
        else:
            self.queue.close()
        with _leftovers_lock:
            _active_leftovers.discard(self.queue.directory)

    def _failed(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        if text != self._last_error:
            self._last_error = text
            if self.on_network_error is not None:
                self.on_network_error(exc)
            else:
                logger.warning("despina: %s (kept in the queue, retried)", exc)

    def _recovered(self) -> None:
        if self.failing_since is not None:
            logger.warning(
                "despina: server %s takes run %r's data again; nothing queued was lost",
                self.connection.server,
                self.run_id,
            )
        self.failing_since = None
        self._last_error = ""

    # -- sending -----------------------------------------------------------------------------

    def send_available(self) -> bool:
        """Send every operation queued now; whether anything was sent.

        Raises:
            ServerUnreachable, AuthError, StoreBusy, OSError: a retryable failure (what was
                not acknowledged stays queued).
        """
        sent = False
        while True:
            ops = self.queue.pending(self.acked)
            if not ops:
                return sent
            for op in ops:
                issues, released = self._send_one(op)
                self.queue.delete_through(op.seq, released)
                self.result.operations += 1
                with self.cond:
                    self.acked = op.seq
                    while self._times and self._times[0][0] <= op.seq:
                        self._times.popleft()
                    self.cond.notify_all()
                if issues:
                    self.result.issues.extend(issues)
                    if self.on_issues is not None:
                        self.on_issues(issues)
                    elif self.remove_when_done:  # a leftover queue: nobody else hears of them
                        for issue in issues:
                            logger.warning(
                                "despina: run %r (sent from a leftover queue): %s: %s",
                                self.run_id,
                                issue.code,
                                issue.message,
                            )
                sent = True

    def send_first(self) -> None:
        """Send what is queued now, raising every failure, refusals included (``Run()``
        creation: a refused creation is the caller's error, not a queued item to drop).
        Gives up within ``FIRST_SEND_SECONDS`` (``ServerUnreachable``), also when the server's
        address drops packets and each attempt would wait out a connect timeout."""
        self._raise_refused = True
        self._first_deadline = time.monotonic() + FIRST_SEND_SECONDS
        try:
            self.send_available()
        finally:
            self._raise_refused = False
            self._first_deadline = None

    def _deadline(self) -> float:
        """By when the request about to start must have reached the server: ``Run()``'s
        first send, the deadline ``close()`` set, else ``CLOSE_GIVE_UP_SECONDS`` from now (a
        failure then reaches the retry loop, the network callback and ``close()`` in time)."""
        if self._first_deadline is not None:
            return self._first_deadline
        if self.stopping and self.give_up_at is not None:
            return self.give_up_at
        return time.monotonic() + CLOSE_GIVE_UP_SECONDS

    def send_all(self) -> SendResult:
        """Send the whole queue now, in the caller's thread (``despina sync``).

        Raises:
            ServerUnreachable, TokenRefused: the server cannot take it now (the rest stays).
        """
        self.send_available()
        return self.result

    def _send_one(self, op: QueuedOperation) -> tuple[list[IngestIssue], list[str]]:
        request = f"{self.queue_id}:{op.seq}"
        try:
            if op.kind == "batch":
                return self._send_batch(op, request)
            body = json.loads(op.body)
            body.update(project=self.project, request=request)
            path = {
                "create": "/runs/create",
                "open": "/objects/open",
                "close": "/runs/close",
                "stage": "/model-versions/stage",
            }[op.kind]
            answer = self.connection.post_json(path, body, deadline=self._deadline())
        except Exception as exc:
            if _retryable(exc) or not isinstance(exc, DespinaError) or self._raise_refused:
                raise
            # the server refused the operation itself: kept would block the queue forever
            self.result.refused.append(f"{op.kind} #{op.seq}: {exc}")
            if self.on_refused is not None:
                self.on_refused(exc)
            else:
                logger.error("despina: the server refused queued %s: %s", op.kind, exc)
            return [], []
        return issues_of(answer), []

    def _send_batch(self, op: QueuedOperation, request: str) -> tuple[list[IngestIssue], list[str]]:
        shas = _batch_blobs(op.body)
        body = op.body
        refused: dict[str, Exception] = {}
        for sha in shas:
            if sha not in self._receipts:
                try:
                    self._upload(sha)
                except Exception as exc:
                    if _retryable(exc) or not isinstance(exc, DespinaError):
                        raise
                    refused[sha] = exc  # e.g. larger than the server takes: this file only
        if refused:
            body = _without_files(body, refused)
            for sha, why in refused.items():
                text = f"a logged file ({sha[:12]}…) was refused by the server, not stored: {why}"
                self.result.refused.append(text)
                if self.on_refused is not None:
                    self.on_refused(DespinaError(text))
                else:
                    logger.error("despina: %s", text)
        kept = [sha for sha in shas if sha not in refused]
        receipts = {sha: self._receipts[sha] for sha in kept}
        answer = self.connection.post_batch(
            batch_request(self.project, self.run_id, request, receipts, body),
            deadline=self._deadline(),
        )
        return issues_of(answer), shas

    def _upload(self, sha: str) -> None:
        path = self.queue.file_path(sha)
        data = path.read_bytes()
        self._receipts[sha] = self.connection.upload_file(
            self.project, sha, data, deadline=self._deadline()
        )
        self.result.files += 1


def send_leftovers(
    log_directory: Path, connection: ServerConnection, skip: Path | None = None
) -> list[Sender]:
    """Start sending, in the background, the queues under ``log_directory`` that a process left
    (their lock is free) for the server of ``connection``; each is removed once sent."""
    started: list[Sender] = []
    for directory in find_log_queues(log_directory):
        if directory == skip:
            continue
        with _leftovers_lock:
            if directory in _active_leftovers:
                continue
            try:
                queue = LogQueue.open(directory)
            except (QueueLocked, DespinaError, OSError):
                continue
            if queue.meta.get("server") != connection.server:
                queue.close()
                continue
            _active_leftovers.add(directory)
        sender = Sender(connection, queue, remove_when_done=True)
        sender.stop(None)  # send what is there, then end
        logger.warning(
            "despina: sending %s left queued by an earlier process (run %r) in the background",
            directory,
            sender.run_id,
        )
        sender.start(f"despina-leftover-{os.getpid()}")
        started.append(sender)
    if started:
        with _leftovers_lock:
            if not _leftover_senders:
                atexit.register(_finish_leftovers_at_exit)
            _leftover_senders.extend(started)
    return started


def _finish_leftovers_at_exit() -> None:
    """Let the leftover queues this process sends finish before it ends: until each is sent,
    or until sending it fails (the server down or refusing: the queue stays for the next run
    or ``despina sync``, and a warning names it). Their threads are daemons: without this, a
    short run that started sending a killed process's queue ended with it half sent and no
    word of it."""
    with _leftovers_lock:
        senders = list(_leftover_senders)
        _leftover_senders.clear()
    for sender in senders:
        while not sender.join(0.2):
            if sender.failing_since is not None:
                sender.stop(time.monotonic())
                sender.join(1.0)  # a request in flight may hold it; the queue stays whole
                break
        directory = sender.queue.directory
        if directory.exists():
            logger.warning(
                "despina: the queue of run %r left by an earlier process was not all sent to "
                "server %s (%s); it stays in %s: 'despina sync %s' sends it, as does the next "
                "despina.Run started from this directory",
                sender.run_id,
                sender.connection.server,
                sender._last_error or "not finished",
                directory,
                directory,
            )
