"""File series keep every file whatever the step order, as Neptune did (issue #14, item 4).

Other series refuse a step that is not after the last one; a file series logged at steps 3, 2, 1
keeps three files (its last value stays the file at step 3). Two different files at one step
are still refused, with a message naming the path and the step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import despina
from despina.store import Store
from despina.types import File

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def test_file_series_keeps_files_of_decreasing_steps(home: Path) -> None:
    errors: list[BaseException] = []
    run = despina.Run(
        project="ws/proj",
        run_id="backwards",
        on_error_callback=lambda exc, _: errors.append(exc),
        **QUIET,
    )
    for step in (3, 2, 1):
        run.log_files({"fs": File(f"at {step}".encode(), destination=f"k/{step}.txt")}, step=step)
        assert run.wait_for_processing(timeout=60)  # one flush each: the rule spans batches
    for step in (5, 4, 4):  # in one batch: 4 twice with the same file is a duplicate
        run.log_files({"fs": File(f"at {step}".encode(), destination=f"k/{step}.txt")}, step=step)
    run.log_files({"fs": File(b"other", destination="k/other.txt")}, step=2)
    run.close()

    conn = Store.open(home).connection()
    attr = conn.execute(
        "SELECT a.id, a.count, a.last_step, a.text FROM attributes a JOIN runs r "
        "ON r.id = a.run_id WHERE r.run_id = 'backwards' AND a.path = 'fs'"
    ).fetchone()
    points = conn.execute(
        "SELECT step, value FROM points WHERE attr_id = ? ORDER BY step", (attr[0],)
    ).fetchall()
    assert [step // 1_000_000 for step, _ in points] == [1, 2, 3, 4, 5]
    assert [json.loads(value)["path"] for _, value in points] == [
        f"k/{step}.txt" for step in (1, 2, 3, 4, 5)
    ]
    assert attr[1:3] == (5, 5_000_000)
    assert json.loads(attr[3])["path"] == "k/5.txt"
    messages = [str(e) for e in errors]
    assert len(messages) == 1, messages
    assert "'fs'" in messages[0] and "step 2" in messages[0], messages
