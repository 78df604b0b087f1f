"""The store workloads of issue #13 on both backends side by side, in one run.

For each workload the same data is written through the store's writer into an embedded store
and into a PostgreSQL database (``bench/backends.py``), then read with ``despina.query``:
warm (best of repeated calls in this process), first call in this process, and the first call
in a fresh process (a notebook's first cell). The PostgreSQL figure is given with its ratio to
SQLite's (target: within 2.5x warm; first call in a fresh process within 3x warm). The wide
store also answers ``list_attributes`` as a fresh process's first call.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import query_bench as qb
from bench.backends import postgres_database

Row = tuple[str, float, str]

FreshCall = tuple[str, str]
"""A fresh process's first call: (its label, or "" for the workload's own call; the call)."""

WORKLOADS: list[tuple[str, str, Callable[..., list[Row]], list[FreshCall]]] = [
    ("long", "fetch one 1M-point series", qb.bench_one_long_metric, []),
    (
        "wide",
        "1k runs x 1k metrics",
        qb.bench_wide_single_step,
        [
            ("", 'runs.fetch_metrics(project="bench/wide", runs=".*", attributes="^metrics/")'),
            ("list_attributes 1k runs x 1k attributes", qb.FIRST_CALLS[3][2]),
        ],
    ),
    ("frame", "100 runs x 5 series x 5,000 steps", qb.bench_many_series, []),
    ("frame", "buckets 500 series x 1,000 buckets", qb.bench_buckets, []),
    (
        "table",
        "runs table 10k runs x 100 columns, 3 NQL clauses",
        qb.bench_table,
        [("", qb.FIRST_CALLS[2][2])],
    ),
]


def _warm(rows: list[Row]) -> float:
    return rows[0][1]


def run() -> list[Row]:
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="despina-backends-bench-"))
        stack.callback(_close_stores)
        built: dict[str, tuple[str, str]] = {}
        for name, label, bench, fresh in WORKLOADS:
            build = name not in built
            if build:
                url = stack.enter_context(postgres_database(name))
                stack.callback(_close_stores)  # before the database is dropped (LIFO)
                built[name] = (str(Path(tmp) / name), url)
            figures: dict[str, list[Row]] = {}
            for kind, location in zip(("sqlite", "postgresql"), built[name], strict=True):
                start = time.perf_counter()
                figures[kind] = bench(location, build)
                rows.append(
                    (
                        f"{kind}: {label} (warm)",
                        _warm(figures[kind]),
                        f"first call in this process {figures[kind][1][1]:.3f} s; "
                        f"build + measure {time.perf_counter() - start:.0f} s",
                    )
                )
                if fresh and build:  # closed by their logging processes, which packs them
                    qb.close_all_runs(location)
                for fresh_label, call in fresh:
                    rows.append(
                        _first_in_fresh_process(
                            kind,
                            fresh_label or label,
                            location,
                            call,
                            None if fresh_label else figures[kind],
                        )
                    )
            ratio = _warm(figures["postgresql"]) / _warm(figures["sqlite"])
            rows.append(
                (
                    f"  postgresql / sqlite: {label}",
                    ratio,
                    f"warm; target <= 2.5: {'met' if ratio <= 2.5 else 'NOT MET'}",
                )
            )
    return rows


def _first_in_fresh_process(
    kind: str, label: str, location: str, call: str, measured: list[Row] | None
) -> Row:
    """The first call in a fresh process, with a cache file from an earlier process, without
    (the first read after logging), and without the runs' attribute packs, beside warm (the
    workload's own figure, or best of repeated calls of ``call``)."""
    first, _, _ = qb._fresh_call(location, call)
    uncached, _, _ = qb._fresh_call(location, call, disk_cache=False)
    rows_only, _, _ = qb._fresh_call(location, call, disk_cache=False, packs=False)
    warm = _warm(measured) if measured is not None else qb._warm_call(location, call)[0]
    return (
        f"{kind}: {label} (first call in a fresh process)",
        first,
        f"{first / warm:.1f}x warm {warm:.3f} s (target <= 3x); first read after "
        f"logging (no cache file) {uncached:.3f} s, {uncached / warm:.1f}x; "
        f"without attribute packs {rows_only:.3f} s, {rows_only / warm:.1f}x",
    )


def _close_stores() -> None:
    from despina.query import set_store

    set_store(None)
    for store in qb._STORES.values():
        store.close()
    qb._STORES.clear()
