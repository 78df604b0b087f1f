"""Store copy benchmark (issue 13, item 5): points/s of ``despina store copy`` between backends.

The source: RUNS runs × SERIES float series × STEPS steps logged with ``despina.Run`` into an
embedded store, plus a string series per run; and SMALL_RUNS small runs, for the cost of a run
(one transaction each). Copied embedded -> PostgreSQL (a laptop into the
team database), PostgreSQL -> embedded and embedded -> embedded, each into a new store, then
once more into the same PostgreSQL database (the idempotent second run: nothing to copy). The
baseline is the raw read of the source's chunk rows in the same process (the floor any copy
pays).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

Row = tuple[str, float, str]

RUNS = 40
SERIES = 50
STEPS = 5_000
SMALL_RUNS = 500
QUIET = {"enable_console_log_capture": False, "source_tracking_config": None}


def _log_source(home: Path) -> int:
    import despina

    for r in range(RUNS):
        run = despina.Run(project="bench/copy", run_id=f"run-{r}", store=str(home), **QUIET)
        run.log_configs({"params/lr": 0.001 * (r + 1), "params/seed": r})
        for step in range(STEPS):
            run.log_metrics({f"m/{j:02d}": step * 0.001 + j for j in range(SERIES)}, step=step)
            if step % 500 == 0:
                run.log_string_series({"log/line": f"step {step}"}, step=step)
        run.close()
    return RUNS * SERIES * STEPS + RUNS * (STEPS // 500)


def _log_small(home: Path) -> None:
    import despina

    for r in range(SMALL_RUNS):
        run = despina.Run(project="bench/small", run_id=f"small-{r}", store=str(home), **QUIET)
        run.log_configs({f"params/p{j}": j * 0.5 for j in range(10)})
        for step in range(100):
            run.log_metrics({f"m/{j}": step + j for j in range(5)}, step=step)
        run.close()


def _raw_read(home: Path) -> float:
    from despina.store import Store

    store = Store.open(url=str(home))
    try:
        started = time.perf_counter()
        with store.read() as conn:
            for _ in conn.execute("SELECT id, n, steps, vals, ts FROM chunks"):
                pass
        return time.perf_counter() - started
    finally:
        store.close()


def run() -> list[Row]:
    from bench.backends import postgres_database
    from despina.store.copy import copy_store

    rows: list[Row] = []
    saved = {k: os.environ.pop(k) for k in ("DESPINA_STORE", "DESPINA_BLOBS") if k in os.environ}
    work = Path(tempfile.mkdtemp(prefix="despina-copy-bench-"))
    os.environ["DESPINA_HOME"] = str(work / "home")
    try:
        source = work / "source"
        started = time.perf_counter()
        points = _log_source(source)
        rows.append(("source logged (points/s)", points / (time.perf_counter() - started), ""))
        raw = _raw_read(source)
        rows.append(("raw read of the source's chunks (points/s)", points / raw, "baseline"))
        with postgres_database("copy") as url:
            report = copy_store(source, url)
            rows.append(("copy embedded -> PostgreSQL (points/s)", report.points_per_second, ""))
            rows.append(("  seconds", report.seconds, f"{report.points:,} points"))
            again = copy_store(source, url)
            rows.append(("  second run (s, nothing to copy)", again.seconds, ""))
            back = copy_store(url, work / "back")
            rows.append(("copy PostgreSQL -> embedded (points/s)", back.points_per_second, ""))
            rows.append(("  seconds", back.seconds, ""))
            small = work / "small"
            _log_small(small)
        with postgres_database("copysmall") as url:
            many = copy_store(small, url)
            rows.append(
                (
                    "copy embedded -> PostgreSQL, small runs (runs/s)",
                    many.runs / many.seconds,
                    f"{SMALL_RUNS} runs of 10 configs + 5 x 100 points",
                ),
            )
        local = copy_store(source, work / "local")
        rows.append(("copy embedded -> embedded (points/s)", local.points_per_second, ""))
        rows.append(("  seconds", local.seconds, ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.environ.update(saved)
    return rows


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label:50} {value:>14,.1f}  {note}")
