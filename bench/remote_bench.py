"""Remote logging benchmarks (issue 14): ``despina.Run`` with an API token through a
``despina serve`` on 127.0.0.1, side by side in one run with the same client logging in-process
(the ceiling: no queue, no network, no server) and with ``neptune_scale.Run`` online to the same
server.

Each figure is "logging until processed": from ``Run()`` to ``close()`` returning with every point
acknowledged by the server (stored and durable there), in a fresh process per client, as a
training script runs. Two shapes: 1,000 metrics per ``log_metrics`` call (points/s; issue target
≥1.5M/s and ≥3× neptune-scale) and 10 metrics per call (µs per call; target ≤20 µs and ≥5×
faster than neptune-scale). Payloads are built before the clock starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bench.server_bench import _server, _stop, _token

Row = tuple[str, float, str]

DESPINA_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import despina

    def main():
        width, calls, target = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
        keys = [f"metrics/m{j}" for j in range(width)]
        data = [{k: i * 0.001 + j for j, k in enumerate(keys)} for i in range(calls)]
        where = {"home": sys.argv[4]} if target == "local" else {}
        start = time.perf_counter()
        run = despina.Run(project="bench/remote", run_id=f"despina-{target}-{width}",
                          enable_console_log_capture=False, source_tracking_config=None, **where)
        for step, payload in enumerate(data):
            run.log_metrics(payload, step=step)
        logged = time.perf_counter()
        run.close()
        done = time.perf_counter()
        print(json.dumps({"logged": logged - start, "total": done - start}))

    if __name__ == "__main__":
        main()
    """
)

SCALE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time

    def main():
        from neptune_scale import Run
        width, calls = int(sys.argv[1]), int(sys.argv[2])
        keys = [f"metrics/m{j}" for j in range(width)]
        data = [{k: i * 0.001 + j for j, k in enumerate(keys)} for i in range(calls)]
        start = time.perf_counter()
        run = Run(run_id=f"scale-{width}", enable_console_log_capture=False,
                  source_tracking_config=None)
        for step, payload in enumerate(data):
            run.log_metrics(payload, step=step)
        logged = time.perf_counter()
        run.close()
        done = time.perf_counter()
        print(json.dumps({"logged": logged - start, "total": done - start}))

    if __name__ == "__main__":
        main()
    """
)

CASES = ((1000, 3000, 3000), (10, 200_000, 20_000))
"""(metrics per call, despina calls, neptune-scale calls): neptune-scale logs fewer calls (it
is 10-50x slower; its fixed start and close costs are reported in server_bench)."""


def _client(work: Path, script: str, env: dict[str, str], *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, script, *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    ).stdout.splitlines()
    result: dict[str, float] = json.loads([line for line in out if line.startswith("{")][-1])
    return result


def run() -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="despina-remote-bench-"))
    home = work / "home"
    rows: list[Row] = []
    try:
        from despina.store import Store

        store = Store.open(home)
        store.create_project("bench/remote")
        store.close()
        (work / "despina_client.py").write_text(DESPINA_SCRIPT)
        (work / "scale_client.py").write_text(SCALE_SCRIPT)
        process, url = _server(home)
        try:
            token = _token(home, url)
            base = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("NEPTUNE_", "DESPINA_API_TOKEN", "DESPINA_STORE"))
            }
            remote_env = {**base, "DESPINA_API_TOKEN": token}
            scale_env = {**base, "NEPTUNE_API_TOKEN": token, "NEPTUNE_PROJECT": "bench/remote"}
            for width, calls, scale_calls in CASES:
                remote = _client(
                    work, "despina_client.py", remote_env, str(width), str(calls), "remote"
                )
                local = _client(
                    work,
                    "despina_client.py",
                    base,
                    str(width),
                    str(calls),
                    "local",
                    str(work / "local-home"),
                )
                scale = _client(work, "scale_client.py", scale_env, str(width), str(scale_calls))
                rows += _rows(width, calls, scale_calls, remote, local, scale)
            left = list((work / ".despina").glob("*/queue.sqlite3"))
            if left:
                raise RuntimeError(f"remote runs left queues behind: {left}")
        finally:
            _stop(process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _rows(
    width: int,
    calls: int,
    scale_calls: int,
    remote: dict[str, float],
    local: dict[str, float],
    scale: dict[str, float],
) -> list[Row]:
    points = width * calls
    if width >= 100:
        ours = points / remote["total"]
        theirs = width * scale_calls / scale["total"]
        return [
            (
                f"despina.Run remote, {width} metrics/call (points/s until processed)",
                ours,
                f"{points:,} points through the server; log_metrics loop "
                f"{remote['logged']:.2f} s, close() {remote['total'] - remote['logged']:.2f} s; "
                f"target ≥1.5M/s; {ours / theirs:.1f}x neptune-scale online",
            ),
            (
                "  baseline: despina.Run in-process (points/s until durable)",
                points / local["total"],
                "no queue, no network, no server: the ceiling",
            ),
            (
                "  baseline: neptune_scale.Run online, same server (points/s)",
                theirs,
                f"{width * scale_calls:,} points, Run() to close() with all processed",
            ),
        ]
    ours_us = remote["total"] / calls * 1e6
    theirs_us = scale["total"] / scale_calls * 1e6
    return [
        (
            f"despina.Run remote, {width} metrics/call (µs per call until processed)",
            ours_us,
            f"{calls:,} calls; target ≤20 µs; neptune-scale online is {theirs_us / ours_us:.1f}x "
            "slower",
        ),
        (
            "  baseline: despina.Run in-process (µs per call until durable)",
            local["total"] / calls * 1e6,
            "no queue, no network, no server",
        ),
        (
            "  baseline: neptune_scale.Run online, same server (µs per call)",
            theirs_us,
            f"{scale_calls:,} calls, Run() to close() with all processed",
        ),
    ]
