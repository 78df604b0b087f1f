"""Logging benchmarks (issue 2): end-to-end log cost beside neptune-scale offline, sustained
points/s for one and four writer processes (with a reader), bytes per point, read speed of the
compressed chunk layout beside raw int64 steps and timestamps."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

Row = tuple[str, float, str]

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def _payloads(width: int, calls: int) -> list[dict[str, float]]:
    keys = [f"metrics/m{j}" for j in range(width)]
    return [{k: i * 0.001 + j for j, k in enumerate(keys)} for i in range(calls)]


def _despina_log(home: Path, data: list[dict[str, float]]) -> float:
    import despina

    run = despina.Run(project="bench/logging", home=home, **QUIET)
    start = time.perf_counter()
    for step, payload in enumerate(data):
        run.log_metrics(payload, step=step)
    run.close()  # returns when everything is durable
    return time.perf_counter() - start


def _neptune_log(directory: Path, data: list[dict[str, float]]) -> float:
    from neptune_scale import Run

    logging.getLogger("neptune").setLevel(logging.ERROR)
    run = Run(project="bench/logging", mode="offline", log_directory=directory, **QUIET)
    start = time.perf_counter()
    for step, payload in enumerate(data):
        run.log_metrics(payload, step=step)
    run.close()
    return time.perf_counter() - start


def end_to_end(workdir: Path) -> list[Row]:
    """Per-call cost of logging until durable, despina first (neptune-scale leaves threads)."""
    cases = ((10, 200_000, 5_000), (1000, 3_000, 300))
    mine = {
        width: _despina_log(workdir / f"home-{width}", _payloads(width, calls)) / calls
        for width, calls, _ in cases
    }
    rows: list[Row] = []
    for width, ours, theirs in cases:
        ref = _neptune_log(workdir / f"neptune-{width}", _payloads(width, theirs)) / theirs
        per = "call" if width == 10 else "point"
        scale = 1 if width == 10 else width
        rows.append(
            (
                f"log_metrics {width} metrics/call, despina, µs per {per}",
                mine[width] / scale * 1e6,
                f"{ours:,} calls + close(), durable",
            )
        )
        rows.append(
            (
                f"log_metrics {width} metrics/call, neptune-scale offline, µs per {per}",
                ref / scale * 1e6,
                f"{theirs:,} calls + close(); despina is {ref / mine[width]:.1f}x cheaper",
            )
        )
    return rows


def sustained_one_writer(workdir: Path) -> list[Row]:
    home = workdir / "sustained"
    data = _payloads(1000, 10_000)
    seconds = _despina_log(home, data)
    points = 1000 * len(data)
    db = home / "despina.db"
    size = db.stat().st_size + sum(
        p.stat().st_size for p in home.glob("despina.db-*") if p.is_file()
    )
    return [
        ("one writer, points/s to disk", points / seconds, f"{points:,} points, 1000 series"),
        ("bytes on disk per point (with timestamps)", size / points, "database + WAL"),
    ]


_WRITER = textwrap.dedent(
    """
    import sys, time, despina
    run_id, width, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keys = [f"metrics/m{j}" for j in range(width)]
    data = [{k: s * 0.001 + j for j, k in enumerate(keys)} for s in range(steps)]
    run = despina.Run(project="bench/multi", run_id=run_id, enable_console_log_capture=False,
                      source_tracking_config=None)
    start = time.time()
    for step, payload in enumerate(data):
        run.log_metrics(payload, step=step)
    run.close()
    print(start, time.time())
    """
)

_READER = textwrap.dedent(
    """
    import sys, time
    from despina.store import Store
    from despina.store.series import read_float_points
    store = Store.open()
    stop = time.time() + float(sys.argv[1])
    reads = errors = 0
    while time.time() < stop:
        try:
            with store.read() as conn:
                for (attr_id,) in conn.execute(
                    "SELECT id FROM attributes WHERE type = 'float_series' LIMIT 50"
                ).fetchall():
                    read_float_points(conn, attr_id)
            reads += 1
        except Exception:
            errors += 1
    print(reads, errors)
    """
)


def four_writers(workdir: Path) -> list[Row]:
    home = workdir / "multi"
    env = {**os.environ, "DESPINA_HOME": str(home)}
    from despina.store import Store

    Store.open(home)
    width, steps = 1000, 2_500
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, f"w{i}", str(width), str(steps)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, "12"], env=env, stdout=subprocess.PIPE, text=True
    )
    spans = []
    failures = 0
    for proc in writers:
        out, _ = proc.communicate()
        failures += proc.returncode != 0
        start, end = map(float, out.split())
        spans.append((start, end))
    reads, errors = map(int, reader.communicate()[0].split())
    seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    points = 4 * width * steps
    return [
        (
            "four writer processes + a reader, points/s to disk",
            points / seconds,
            f"{points:,} points; writer failures {failures}, reader passes {reads}, "
            f"reader errors {errors}",
        )
    ]


def read_speed(workdir: Path) -> list[Row]:
    """Reading 1M points back: the compressed layout beside raw int64 steps and timestamps."""
    from despina.store import Store
    from despina.store.codec import decode_floats, decode_ints, encode_floats, encode_ints
    from despina.store.series import read_float_points

    store = Store.open(workdir / "sustained")
    conn = store.connection()
    (attr_id,) = conn.execute("SELECT id FROM attributes WHERE path = 'metrics/m0'").fetchone()
    n = 1_000_000
    steps = np.arange(n, dtype=np.int64) * 1_000_000
    stamps = 1_700_000_000_000 + np.cumsum(np.random.default_rng(0).integers(0, 50, n))
    values = np.random.default_rng(1).random(n)
    chunks = [
        (
            encode_ints(steps[i : i + 1024]),
            encode_floats(values[i : i + 1024]),
            encode_ints(stamps[i : i + 1024]),
        )
        for i in range(0, n, 1024)
    ]
    raw = [
        (
            b"\0" + steps[i : i + 1024].tobytes(),
            encode_floats(values[i : i + 1024]),
            b"\0" + stamps[i : i + 1024].tobytes(),
        )
        for i in range(0, n, 1024)
    ]

    def decode(blobs: list[tuple[bytes, bytes, bytes]]) -> float:
        start = time.perf_counter()
        for s, v, t in blobs:
            m = min(1024, (len(v)) // 8)
            decode_ints(s, m), decode_floats(v, m), decode_ints(t, m)
        return time.perf_counter() - start

    compressed_bytes = sum(len(s) + len(v) + len(t) for s, v, t in chunks) / n
    raw_bytes = sum(len(s) + len(v) + len(t) for s, v, t in raw) / n
    start = time.perf_counter()
    got = read_float_points(conn, attr_id)
    from_store = time.perf_counter() - start
    return [
        (
            "decode 1M points, compressed chunks, s",
            decode(chunks),
            f"{compressed_bytes:.2f} blob bytes/point",
        ),
        ("decode 1M points, raw int64 chunks, s", decode(raw), f"{raw_bytes:.2f} blob bytes/point"),
        (
            f"read one series of {len(got):,} points from the store, s",
            from_store,
            "SQLite + decode",
        ),
    ]


_SWEEP = textwrap.dedent(
    """
    import json, statistics, sys, time
    t0 = time.perf_counter()
    import despina
    imported = time.perf_counter() - t0
    home, n = sys.argv[1], int(sys.argv[2])
    times = []
    for i in range(n):
        start = time.perf_counter()
        run = despina.Run(project="bench/sweep", home=home)  # defaults: console, git
        run.log_configs({"lr": 0.001 * i, "batch": 32, "optimizer": "adam"})
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step * 0.1}, step=step)
        run.close()  # durable when it returns
        times.append(time.perf_counter() - start)
    print(json.dumps({"import": imported, "first": times[0],
                      "median": statistics.median(times[1:] or times), "total": sum(times)}))
    """
)


def _sweep(home: Path, runs: int, cwd: Path) -> dict[str, float]:
    import json

    out = subprocess.run(
        [sys.executable, "-c", _SWEEP, str(home), str(runs)],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _sqlite_sweep(path: Path, runs: int) -> list[float]:
    """The floor: the same rows with plain sqlite3 in the same transactions as a despina run
    (create; the logged rows; the close under synchronous=FULL, one fsync of the WAL)."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT, closed INTEGER)")
    conn.execute("CREATE TABLE attrs (run INTEGER, path TEXT, step REAL, num REAL, text TEXT)")
    times = []
    for i in range(runs):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        pk = conn.execute(
            "INSERT INTO runs (run_id, closed) VALUES (?, 0)", (f"run-{i}",)
        ).lastrowid
        conn.execute("COMMIT")
        rows = [(pk, "lr", None, 0.001 * i, None), (pk, "batch", None, 32, None)]
        rows.append((pk, "optimizer", None, None, "adam"))
        for step in range(3):
            rows += [(pk, "loss", step, 1.0 / (step + 1), None), (pk, "acc", step, 0.1, None)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO attrs VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE runs SET closed = 1 WHERE id = ?", (pk,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA synchronous = NORMAL")
        times.append(time.perf_counter() - start)
    conn.close()
    return times


def short_runs(workdir: Path) -> list[Row]:
    """Run start + close, and a sweep of 1,000 short runs in one process (issue #16)."""
    import statistics

    runs = 1000
    plain = workdir / "plain"  # not a git checkout: no source tracking to look up
    plain.mkdir()
    fresh = _sweep(workdir / "sweep-home", runs, plain)
    again = _sweep(workdir / "sweep-home", runs, plain)  # a new process, an existing store
    in_git = _sweep(workdir / "sweep-git", 50, Path(__file__).resolve().parent.parent)
    floor = _sqlite_sweep(workdir / "plain.db", runs)
    floor_median = statistics.median(floor)
    ms = 1e3
    return [
        (
            "run start + close, warm process, ms per run (median)",
            fresh["median"] * ms,
            f"Run(), log_configs (3), log_metrics (3 steps x 2), close() durable; defaults "
            f"(console capture, source tracking); plain sqlite3 of the same rows and "
            f"transactions: {floor_median * ms:.2f} ms",
        ),
        (
            "run start + close, first run of a process, fresh store, ms",
            fresh["first"] * ms,
            f"creates and migrates the store; import despina {fresh['import'] * ms:.0f} ms "
            "not counted",
        ),
        (
            "run start + close, first run of a process, existing store, ms",
            again["first"] * ms,
            f"then {again['median'] * ms:.2f} ms per run (median)",
        ),
        (
            "run start + close, first run in a git checkout, ms",
            in_git["first"] * ms,
            f"git looked up once per process, in the background; then "
            f"{in_git['median'] * ms:.2f} ms per run (median)",
        ),
        (
            f"{runs:,} short runs in one process, s",
            fresh["total"],
            f"plain sqlite3 of the same rows: {sum(floor):.2f} s "
            f"(one fsync per run in both: close() is durable)",
        ),
    ]


def run() -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="despina-bench-"))
    try:
        # the sustained run goes first, before neptune-scale's runs leave threads behind
        rows = short_runs(workdir)
        rows += sustained_one_writer(workdir)
        rows += read_speed(workdir)
        rows += four_writers(workdir)
        rows += end_to_end(workdir)
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
