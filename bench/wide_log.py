"""The wide row of ``make bench-peers`` on despina alone, for comparing two source trees.

One measurement is a fresh process: a new store, ``despina.Run`` as the peers bench opens it,
then timed: 200 calls of ``log_metrics`` with 1,000 metrics and ``close()`` (durable). It prints
wall and CPU time per point (CPU: every thread of the process), the close's share and the
store's bytes per point.

    python bench/wide_log.py                      # one measurement of the installed despina
    python bench/wide_log.py --compare A/src B/src --rounds 7
        # alternates fresh processes with PYTHONPATH=A/src and B/src (a baseline checked out
        # with ``git worktree add``), then medians and ranges of each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, STEPS = 1_000, 200


def payloads(width: int, steps: int) -> list[dict[str, float]]:
    """As ``bench.peers.common.payloads``: built before timing starts."""
    keys = [f"m{j:04d}" for j in range(width)]
    return [{k: s * 0.001 + j for j, k in enumerate(keys)} for s in range(steps)]


def measure() -> dict[str, float]:
    import despina

    data = payloads(WIDTH, STEPS)
    with tempfile.TemporaryDirectory() as home:
        run = despina.Run(
            project="bench/log-1000",
            run_id="log-1000",
            experiment_name="log-1000",
            home=home,
            source_tracking_config=None,
            enable_console_log_capture=False,
        )
        cpu, begin = time.process_time(), time.perf_counter()
        for step, payload in enumerate(data):
            run.log_metrics(payload, step=step)
        logged = time.perf_counter()
        run.close()
        end, cpu = time.perf_counter(), time.process_time() - cpu
        size = sum(f.stat().st_size for f in Path(home).rglob("*") if f.is_file())
    points = WIDTH * STEPS
    return {
        "wall_us": (end - begin) / points * 1e6,
        "cpu_us": cpu / points * 1e6,
        "close_ms": (end - logged) * 1e3,
        "bytes_per_point": size / points,
    }


def compare(sources: list[str], rounds: int) -> None:
    results: dict[str, list[dict[str, float]]] = {source: [] for source in sources}
    for _ in range(rounds):
        for source in sources:
            env = {**os.environ, "PYTHONPATH": source}
            out = subprocess.run(
                [sys.executable, __file__], env=env, capture_output=True, text=True, check=True
            )
            results[source].append(json.loads(out.stdout))
    for source, found in results.items():
        print(source)
        for key in found[0]:
            values = [r[key] for r in found]
            low, high = min(values), max(values)
            print(f"  {key:16s} {statistics.median(values):9.4f}  ({low:.4f}-{high:.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs="+", metavar="SRC", help="source trees to alternate")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.rounds)
    else:
        print(json.dumps(measure()))


if __name__ == "__main__":
    main()
