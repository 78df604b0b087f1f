"""SIGKILL the server while neptune-scale is sending; restart it; every point lands exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from server_helpers import PROJECT, ServerProcess, mint

from despina.store import Store
from despina.store.series import read_float_points

pytestmark = pytest.mark.slow

METRICS = 20
STEPS = 3000

SCRIPT = textwrap.dedent(
    f"""
    import time
    from neptune_scale import Run

    def main():
        with Run(run_id="killed", enable_console_log_capture=False,
                 source_tracking_config=None) as run:
            run.log_configs({{"cfg/steps": {STEPS}}})
            names = [f"metrics/m{{j}}" for j in range({METRICS})]
            for step in range({STEPS}):
                run.log_metrics({{n: step * 1000 + j for j, n in enumerate(names)}}, step=step)
                run.log_string_series({{"log/line": f"line {{step}}"}}, step=step)
                if step % 50 == 0:
                    time.sleep(0.05)

    if __name__ == "__main__":
        main()
    """
)


def _points(home: Path) -> int:
    store = Store.open(home)
    try:
        row = (
            store.connection()
            .execute(
                "SELECT COALESCE(SUM(a.count), 0) FROM attributes a JOIN runs r ON r.id = a.run_id "
                "WHERE r.run_id = 'killed' AND a.type = 'float_series'"
            )
            .fetchone()
        )
        return int(row[0])
    finally:
        store.close()


def test_sigkill_while_sending(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(home)
    store.create_project(PROJECT)
    store.close()
    server = ServerProcess(home)
    server.start()
    token = mint(home, server.url, project="proj", workspace="ws")
    script = tmp_path / "sender.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")}
    env.update(NEPTUNE_API_TOKEN=token, NEPTUNE_PROJECT=PROJECT)
    sender = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _points(home) == 0:
            assert time.monotonic() < deadline, "no points arrived"
            assert sender.poll() is None, sender.communicate()[0]
            time.sleep(0.05)
        server.kill()
        killed_at = _points(home)
        time.sleep(1.0)
        server.start()
        output, _ = sender.communicate(timeout=240)
        assert sender.returncode == 0, output
    finally:
        if sender.poll() is None:
            sender.kill()
        server.stop()
    assert 0 < killed_at < METRICS * STEPS, "the kill did not happen while sending"
    store = Store.open(home)
    try:
        conn = store.connection()
        (run_pk,) = conn.execute("SELECT id FROM runs WHERE run_id = 'killed'").fetchone()
        expected_steps = np.arange(STEPS, dtype=np.int64) * 1_000_000
        for j in range(METRICS):
            (attr_id,) = conn.execute(
                "SELECT id FROM attributes WHERE run_id = ? AND path = ?",
                (run_pk, f"metrics/m{j}"),
            ).fetchone()
            points = read_float_points(conn, attr_id)
            assert np.array_equal(points.steps, expected_steps), f"metrics/m{j}"
            assert np.array_equal(points.values, np.arange(STEPS) * 1000.0 + j)
        lines = conn.execute(
            "SELECT p.step, p.value FROM points p JOIN attributes a ON a.id = p.attr_id "
            "WHERE a.run_id = ? AND a.path = 'log/line' ORDER BY p.step",
            (run_pk,),
        ).fetchall()
        assert lines == [(s * 1_000_000, f"line {s}") for s in range(STEPS)]
    finally:
        store.close()
