"""Durability benchmarks (issue 12): what acknowledging only what is on stable storage costs.

* Server ingest: ``IngestService.submit`` (what ``POST /api/client/v1/ingest`` runs before it
  answers) on the same RunOperations, with four stores that differ only in when they fsync:
  ``synchronous=NORMAL`` throughout, how the server acknowledged before (a power loss could drop
  acknowledged data), as the baseline; the shipped behaviour (the request's status is the last
  commit before the answer and runs under ``synchronous=FULL``: one WAL fsync per request); and
  two alternatives measured to choose it: a separate ``Store.sync()`` after the status (an extra
  one-page transaction), and ``synchronous=FULL`` on every commit (one fsync per transaction of
  the request). Requests alternate between the four, one by one, so that the load of a shared
  machine falls on all of them alike; each figure is points per request over the median request
  time. Two shapes: one snapshot of 100 metrics per request (a request per training step, the
  worst case for a per-request fsync) and 2,000 snapshots per request (what neptune-scale sends
  when it keeps up). HTTP is left out: it adds the same cost to every variant.
* In-process ``despina.Run``: the background flushes stay ``synchronous=NORMAL``; only
  ``wait_for_processing()`` and ``close()`` pay one durable write. The cost of that write, and
  the logging rate of a run up to ``close()``.
* The fdatasync latency of the disk the benchmark ran on, to read the figures by: on a VM whose
  host caches writes it is ~0.2 ms; a consumer SSD honouring flushes takes 0.5-5 ms, a disk 10 ms.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from despina.store import Store

Row = tuple[str, float, str]


class _Normal(Store):
    """Every commit under ``synchronous=NORMAL``, durable or not: the server before."""

    honour = False

    @contextlib.contextmanager
    def write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with super().write(durable=durable and self.honour) as conn:
            yield conn


class _SyncAfter(_Normal):
    """The status under NORMAL, then a separate ``Store.sync()`` before the answer."""


class _AllFull(Store):
    """Every commit under ``synchronous=FULL``."""

    @contextlib.contextmanager
    def write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with super().write(durable=True) as conn:
            yield conn


VARIANTS: tuple[tuple[str, type[Store]], ...] = (
    ("synchronous=NORMAL (before: not durable)", _Normal),
    ("durable: status commit under FULL (shipped)", Store),
    ("alternative: NORMAL + Store.sync() after", _SyncAfter),
    ("alternative: FULL on every commit", _AllFull),
)
SHAPES = (
    # metrics, snapshots per request, requests per variant
    (100, 1, 600),
    (100, 2_000, 12),
)


def _submitter(home: Path, kind: type[Store]) -> Callable[[bytes], None]:
    from despina.server.auth import Principal
    from despina.server.ingest import IngestService
    from despina.server.settings import ServerSettings
    from despina.store.access import ApiKey

    Store.open(home).create_project("bench/ingest")
    store = kind(home)
    service = IngestService(store, ServerSettings())
    principal = Principal(ApiKey("k", "", "k", "bench", "bench", "ingest", 0, None, None))

    def submit(body: bytes) -> None:
        service.submit(principal, body)
        if isinstance(store, _SyncAfter):
            store.honour = True
            try:
                store.sync()
            finally:
                store.honour = False

    return submit


def server_ingest() -> list[Row]:
    from bench.server_bench import _operations

    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="despina-durability-bench-"))
    try:
        for k, (metrics, per_request, requests) in enumerate(SHAPES):
            submitters = [
                _submitter(work / f"s{k}-v{n}", kind) for n, (_, kind) in enumerate(VARIANTS)
            ]
            ops = _operations(f"shape-{k}", metrics, per_request * requests, per_request)
            times: list[list[float]] = [[] for _ in VARIANTS]
            for submit in submitters:
                submit(ops[0])  # the run's creation
            for body in ops[1:]:
                for n, submit in enumerate(submitters):
                    start = time.perf_counter()
                    submit(body)
                    times[n].append(time.perf_counter() - start)
            points = metrics * per_request
            base = statistics.median(times[0])
            for n, (label, _) in enumerate(VARIANTS):
                median = statistics.median(times[n])
                note = (
                    f"{metrics} metrics × {per_request:,} snapshot(s) per request, "
                    f"{requests:,} requests; median {median * 1e3:.2f} ms per request"
                    if n == 0
                    else f"{base / median:.0%} of the baseline; median {median * 1e3:.2f} ms "
                    f"(+{(median - base) * 1e3:.2f} ms) per request"
                )
                rows.append(
                    (f"ingest {per_request} snap/req, {label} (points/s)", points / median, note)
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def sync_cost() -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="despina-durability-bench-"))
    try:
        store = Store.open(work / "sync")
        store.create_project("bench/sync")
        costs = []
        for _ in range(200):
            start = time.perf_counter()
            store.sync()
            costs.append(time.perf_counter() - start)
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    costs.sort()
    return [
        (
            "Store.sync(), median (ms)",
            costs[len(costs) // 2] * 1e3,
            f"p90 {costs[len(costs) * 9 // 10] * 1e3:.2f} ms: one page + one WAL fsync, "
            "paid by wait_for_processing() and close()",
        )
    ]


def run_logging(calls: int = 5_000, width: int = 1000) -> list[Row]:
    """A despina.Run logging until close(), with a durable wait every 1,000 calls."""
    import despina

    work = Path(tempfile.mkdtemp(prefix="despina-durability-bench-"))
    try:
        keys = [f"metrics/m{j}" for j in range(width)]
        run = despina.Run(
            project="bench/sync",
            home=work / "run",
            enable_console_log_capture=False,
            source_tracking_config=None,
        )
        start = time.perf_counter()
        for step in range(calls):
            run.log_metrics({k: step * 0.001 + j for j, k in enumerate(keys)}, step=step)
            if step % 1000 == 999:
                run.wait_for_processing()  # an epoch boundary: a durable point
        run.close()
        elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        (
            f"despina.Run {width} metrics/call until close(), points/s",
            calls * width / elapsed,
            f"{calls:,} calls, wait_for_processing() every 1,000; background flushes "
            "stay synchronous=NORMAL",
        )
    ]


def disk_latency() -> list[Row]:
    with tempfile.NamedTemporaryFile(prefix="despina-fsync-") as probe:
        costs = []
        for _ in range(100):
            probe.write(b"x" * 8192)
            probe.flush()
            start = time.perf_counter()
            os.fdatasync(probe.fileno())
            costs.append(time.perf_counter() - start)
    costs.sort()
    return [
        (
            "fdatasync of 8 KiB on the bench disk, median (ms)",
            costs[len(costs) // 2] * 1e3,
            f"p90 {costs[90] * 1e3:.2f} ms; the per-request cost of a durable ack scales with it",
        )
    ]


def run() -> list[Row]:
    return disk_latency() + server_ingest() + sync_cost() + run_logging()


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label:60s} {value:14,.3f}  {note}")
