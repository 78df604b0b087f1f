"""Store benchmarks on both backends side by side (issue #13): what a flush writes.

A server-shaped workload: 50 float series of one run receive 10 new steps each per flush, as a
training process sending every few seconds does, for 20,000 steps (1M points, 2,000 flushes).
Written through the store's writer (``RunWriter``), so the figures are the store's own.

* points/s: the flushes, each one write transaction;
* bytes written per point: what the database wrote to make them durable (SQLite: the process's
  write I/O, WAL and checkpoints; PostgreSQL: WAL bytes), the write amplification;
* bytes on disk per point: the store's size after the run, without a manual vacuum; and in
  steady state, what the store grew by over the second half of the run per point logged in it
  (the space dead rows hold between two vacuums is bounded: paid once, not per point). On
  PostgreSQL the writing process vacuums the tables it leaves dead rows in
  (``store/postgres/upkeep.py``); the same run with that turned off (``DESPINA_PG_VACUUM=0``:
  autovacuum alone, which looks once a minute) and with a plain ``VACUUM`` every 200 flushes
  are given beside it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.backends import backends, postgres_database
from despina.store.postgres.upkeep import ENV

Row = tuple[str, float, str]

SERIES = 50
STEPS = 20_000
PER_FLUSH = 10
VACUUM_EVERY = 200
"""Flushes between two plain ``VACUUM``s of PostgreSQL's tables in the "with autovacuum" pass:
what autovacuum does on a server every minute (``autovacuum_naptime``), brought into a
benchmark that lasts seconds. Never ``VACUUM FULL``: the table is not compacted."""


def _process_written() -> int:
    with open(f"/proc/{os.getpid()}/io") as io:
        for line in io:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def _wal_bytes(store: Any) -> int:
    with store.read() as conn:
        return int(conn.raw.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()[0])


def _size(store: Any) -> int:
    if store.dialect == "sqlite":
        return sum(p.stat().st_size for p in store.home.glob("despina.db*") if p.is_file())
    tables = ("runs", "attributes", "chunks", "previews", "points", "set_members")
    with store.read() as conn:
        return sum(
            int(conn.raw.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0])
            for t in tables
        )


def _vacuum(store: Any) -> None:
    with store.database.connection() as raw:
        raw.execute(b"VACUUM chunks, attributes")


def _flushes(store: Any, *, vacuum: bool = False, halfway: Any = None) -> tuple[float, int]:
    from despina.store.batch import Batch, MetricColumn
    from despina.store.runs import RunSpec, create_run
    from despina.store.writer import RunWriter

    made = create_run(store, RunSpec(project="bench/store", run_id="amplification"))
    writer = RunWriter(store, made.pk)
    names = [f"metrics/m{j}" for j in range(SERIES)]
    now = int(time.time() * 1000)
    start = time.perf_counter()
    for flush, first in enumerate(range(0, STEPS, PER_FLUSH)):
        if first == STEPS // 2 and halfway is not None:
            halfway()
        if vacuum and flush % VACUUM_EVERY == VACUUM_EVERY - 1:
            _vacuum(store)
        steps = np.arange(first, first + PER_FLUSH, dtype=np.int64) * 1_000_000
        stamps = np.full(PER_FLUSH, now, dtype=np.int64)
        writer.apply(
            Batch(
                metrics={
                    name: MetricColumn(steps, np.sin(steps / 1e9 + j), stamps)
                    for j, name in enumerate(names)
                }
            )
        )
    return time.perf_counter() - start, SERIES * STEPS


def _measure(kind: str, url: str, *, vacuum: bool, label: str | None = None) -> list[Row]:
    from despina.store import Store

    store = Store.open(url=url)
    before_size = _size(store)
    before = _process_written() if kind == "sqlite" else _wal_bytes(store)
    sizes: list[int] = []

    def halfway() -> None:
        if kind == "sqlite":  # as at the end: the WAL folded in (it shrinks back after)
            store.checkpoint()
        sizes.append(_size(store))

    seconds, points = _flushes(store, vacuum=vacuum, halfway=halfway)
    if kind == "sqlite":
        store.checkpoint()
        written = _process_written() - before
    else:
        written = _wal_bytes(store) - before
    size = _size(store) - before_size
    store.close()
    if label is None:
        label = f"{kind}, plain VACUUM every {VACUUM_EVERY} flushes" if vacuum else kind
    return [
        (
            f"{label}: flushes, points/s",
            points / seconds,
            f"{SERIES} series x {STEPS:,} steps, {PER_FLUSH} steps per flush",
        ),
        (
            f"{label}: bytes written per point",
            written / points,
            "WAL and checkpoints" if kind == "sqlite" else "WAL bytes",
        ),
        (f"{label}: bytes on disk per point", size / points, "tables and indexes, as left"),
        (
            f"{label}: bytes on disk per point, steady state",
            (size + before_size - sizes[0]) / (points / 2),
            "the store's growth over the second half of the run, per point logged in it",
        ),
    ]


def flush_costs(workdir: Path) -> list[Row]:
    rows: list[Row] = []
    with backends(workdir, "flushes") as chosen:
        for kind, url in chosen:
            rows += _measure(kind, url, vacuum=False)
    with postgres_database("flushes_autovacuum") as url:
        previous, os.environ[ENV] = os.environ.get(ENV), "0"
        try:
            rows += _measure(
                "postgresql", url, vacuum=False, label="postgresql, autovacuum only (before)"
            )
        finally:
            os.environ.pop(ENV)
            if previous is not None:
                os.environ[ENV] = previous
    with postgres_database("flushes_vacuumed") as url:
        rows += _measure("postgresql", url, vacuum=True)
    return rows


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="despina-store-bench-") as tmp:
        return flush_costs(Path(tmp))
