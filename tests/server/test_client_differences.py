"""Remaining differences between ``despina serve`` and Neptune found with the official clients
(issue #14, deliverable 4): each test drives the unmodified neptune-scale / neptune-query client,
or sends what it sends, against a real server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_helpers import ServerProcess, Tokens, run_logging_script

from despina.store.sqlite import Store

pytestmark = pytest.mark.slow

pytest.importorskip("neptune_scale")

FILE_SERIES_BACKWARDS = """
from neptune_scale import Run
from neptune_scale.types import File

errors = []
with Run(run_id="files-backwards", enable_console_log_capture=False, source_tracking_config=None,
         on_error_callback=lambda exc, ts: errors.append(f"{type(exc).__name__}: {exc}")) as run:
    for step in (3, 2, 1):
        run.log_files({"files/series": File(f"file at {step}".encode(), mime_type="text/plain")},
                      step=step)
print("ERRORS", repr(errors))
"""


def series_points(home: Path, run_id: str, path: str) -> list[tuple[int, str]]:
    conn = Store.open(home).connection()
    return conn.execute(
        "SELECT p.step, p.value FROM points p JOIN attributes a ON a.id = p.attr_id "
        "JOIN runs r ON r.id = a.run_id WHERE r.run_id = ? AND a.path = ? ORDER BY p.step",
        (run_id, path),
    ).fetchall()


def test_file_series_keeps_every_file_of_decreasing_steps(
    server: ServerProcess, tokens: Tokens, tmp_path: Path
) -> None:
    result = run_logging_script(FILE_SERIES_BACKWARDS, tmp_path, tokens.project)
    errors_line = next(line for line in result.stdout.splitlines() if line.startswith("ERRORS"))
    print(errors_line)
    points = series_points(server.home, "files-backwards", "files/series")
    assert [step for step, _ in points] == [1_000_000, 2_000_000, 3_000_000]
    assert errors_line == "ERRORS []"
