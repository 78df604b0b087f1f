"""A path keeps its first type through ``despina.Run`` (issue #12, finding 6).

Every pair of attribute types is logged on one path, first one then the other, both inside one
flush (the flusher's batch used to apply configs before metrics, so a later config replaced an
earlier series) and in two flushes. The path must hold exactly what a control path holding only
the first value holds, and the later value must be refused through ``on_error_callback`` with a
message naming the path and both types.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import despina
from despina.client import buffer as buffer_module
from despina.exceptions import NeptuneAttributeTypeMismatch
from despina.store import Store
from despina.store.schema import ATTRIBUTE_TYPES
from despina.store.series import read_float_points
from despina.types import File, Histogram

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}

Logger = Callable[[despina.Run, str], None]


def _float_series(run: despina.Run, path: str) -> None:
    for step in range(1, 4):
        run.log_metrics({path: float(step)}, step=step)


def _string_series(run: despina.Run, path: str) -> None:
    for step in range(1, 4):
        run.log_string_series({path: f"line {step}"}, step=step)


def loggers(tmp: Path) -> dict[str, Logger]:
    """One way to log a value of each stored attribute type on ``path``."""
    source = tmp / "artifact.txt"
    source.write_text("data")
    return {
        "float": lambda run, path: run.log_configs({path: 1.5}),
        "int": lambda run, path: run.log_configs({path: 7}),
        "bool": lambda run, path: run.log_configs({path: True}),
        "string": lambda run, path: run.log_configs({path: "text"}),
        "datetime": lambda run, path: run.log_configs({path: datetime(2024, 1, 2, tzinfo=UTC)}),
        "string_set": lambda run, path: run.log_configs({path: ["a", "b"]}),
        "file": lambda run, path: run.assign_files(
            {path: File(b"file content", mime_type="text/plain", destination="fixed/file.txt")}
        ),
        "float_series": _float_series,
        "string_series": _string_series,
        "histogram_series": lambda run, path: run.log_histograms(
            {path: Histogram(bin_edges=[0, 1, 2], counts=[1, 2])}, step=1
        ),
        "file_series": lambda run, path: run.log_files(
            {path: File(b"sample", mime_type="text/plain", destination="fixed/sample.bin")}, step=1
        ),
        "artifact": lambda run, path: run.track_artifact(path, source) and None,
    }


def content(conn: sqlite3.Connection, run_id: str, path: str) -> tuple[Any, ...] | None:
    """Everything stored for ``path``: the attribute row, float points and other points."""
    row = conn.execute(
        "SELECT a.id, a.type, a.num, a.text, a.count, a.last_step, a.fmin, a.fmax, a.fsum, "
        "a.fsumsq, a.fcount FROM attributes a JOIN runs r ON r.id = a.run_id "
        "WHERE r.run_id = ? AND a.path = ?",
        (run_id, path),
    ).fetchone()
    if row is None:
        return None
    attr_id = row[0]
    floats = read_float_points(conn, attr_id)
    others = conn.execute(
        "SELECT step, value FROM points WHERE attr_id = ? ORDER BY step", (attr_id,)
    ).fetchall()
    return (row[1:], floats.steps.tolist(), floats.values.tolist(), others)


PAIRS = [(a, b) for a, b in itertools.product(ATTRIBUTE_TYPES, repeat=2) if a != b]


def test_every_type_has_a_logger(tmp_path: Path) -> None:
    assert set(loggers(tmp_path)) == set(ATTRIBUTE_TYPES)


@pytest.mark.parametrize("together", [True, False], ids=["one-flush", "two-flushes"])
def test_a_path_keeps_its_first_type(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, together: bool
) -> None:
    # a long interval: the flusher writes only when wait_for_processing wakes it, so
    # everything logged between two waits is one batch
    monkeypatch.setattr(buffer_module, "FLUSH_INTERVAL", 30.0)
    log = loggers(tmp_path)
    errors: list[BaseException] = []
    run = despina.Run(
        project="ws/proj",
        run_id="types",
        on_error_callback=lambda exc, _: errors.append(exc),
        **QUIET,
    )
    for first, second in PAIRS:
        log[first](run, f"control/{first}/{second}")
        log[first](run, f"p/{first}/{second}")
        if together:
            log[second](run, f"p/{first}/{second}")
    assert run.wait_for_processing(timeout=60)
    if not together:
        for first, second in PAIRS:
            log[second](run, f"p/{first}/{second}")
    run.close()

    conn = Store.open(home).connection()
    wrong = []
    for first, second in PAIRS:
        got = content(conn, "types", f"p/{first}/{second}")
        want = content(conn, "types", f"control/{first}/{second}")
        assert want is not None and want[0][0] == first
        if got != want:
            wrong.append((first, second, None if got is None else got[0][0]))
    assert wrong == []

    mismatches = [e for e in errors if isinstance(e, NeptuneAttributeTypeMismatch)]
    messages = "\n".join(str(e) for e in mismatches)
    assert all(isinstance(e, NeptuneAttributeTypeMismatch) for e in errors), errors
    for first, second in PAIRS:
        path = f"p/{first}/{second}"
        line = next((m for m in messages.splitlines() if f"{path!r}" in m), None)
        assert line is not None, f"no type-mismatch error names {path!r}"
        assert re.search(rf"\b{first}\b", line) and re.search(rf"\b{second}\b", line), line
