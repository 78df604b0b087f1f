"""The server's background jobs: housekeeping that runs on one replica at a time.

Any number of ``despina serve`` replicas may serve one store. Each runs the same jobs on the
same schedule, in one daemon thread; a job runs under :meth:`Store.job_lease` (a PostgreSQL
advisory lock, a file lock for the embedded store), so while one replica runs it, the others
skip that turn. A replica killed mid-job releases its lease with its connection (or file), and
the next replica whose turn comes runs the job. Every job is safe to run again and to skip:
it deletes what is past a horizon, so a turn skipped or repeated changes nothing.

The jobs (set up by :func:`despina.server.app.create_app`):

* ``prune-ingest-statuses`` (hourly): request statuses older than
  ``status_retention_days`` (clients poll a status for seconds after sending).
* ``sweep-uploads`` (every 10 min): multipart uploads abandoned for
  ``abandoned_upload_seconds``, records of expired write URLs, and content a crash left
  half-received in the blob store.
* ``pack-idle-runs`` (every minute): packs the attribute rows of runs idle for ten minutes
  whose pack is missing or stale (``store/sql/attribute_packs.py``): runs logged through the
  Neptune wire never close, and a fresh process's first read of many runs reads their packs.

Everything else a replica keeps in memory is either a cache checked against the store on
every use (run writers, UI summaries) or deliberately per replica (rate limits, request caps).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from despina.store import Store

__all__ = ["JOB_PACK_IDLE_RUNS", "JOB_PRUNE_STATUSES", "JOB_SWEEP_UPLOADS", "Housekeeping", "Job"]

JOB_PACK_IDLE_RUNS = "pack-idle-runs"
JOB_PRUNE_STATUSES = "prune-ingest-statuses"
JOB_SWEEP_UPLOADS = "sweep-uploads"

logger = logging.getLogger("despina.server")

MAX_WAIT_SECONDS = 60.0
"""The thread wakes at least this often (a job's first turn, a changed clock)."""


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job: its lease name, how often it runs, and what it does."""

    name: str
    every_seconds: float
    run: Callable[[], object]


class Housekeeping:
    """Runs ``jobs`` periodically in a daemon thread, each under the store's lease of its name.

    Every job is due at start (a replica started after a long stop catches up at once).
    """

    def __init__(
        self,
        store: Store,
        jobs: Sequence[Job],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.jobs = list(jobs)
        self._clock = clock
        self._due = {job.name: clock() for job in self.jobs}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_due(self) -> list[str]:
        """Run every job whose time has come; returns the names of those this replica ran
        (the others were due but leased by another replica, or not due)."""
        ran: list[str] = []
        for job in self.jobs:
            now = self._clock()
            if now < self._due[job.name] or self._stop.is_set():
                continue
            self._due[job.name] = now + job.every_seconds
            try:
                with self.store.job_lease(job.name) as held:
                    if not held:
                        logger.debug("job %s runs on another replica", job.name)
                        continue
                    job.run()
                    ran.append(job.name)
            except Exception:  # a failed turn is retried at the next one
                logger.exception("background job %s failed", job.name)
        return ran

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="despina-housekeeping", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, waiting up to ``timeout`` s for a job in progress to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            wait = min(self._due.values(), default=self._clock() + MAX_WAIT_SECONDS)
            self._stop.wait(min(max(wait - self._clock(), 1.0), MAX_WAIT_SECONDS))
