"""``despina.Run`` accepts neptune-scale's own ``File`` and ``Histogram`` (issue #14, item 4).

Code moved from neptune-scale imports them from ``neptune_scale.types``; a File used to crash
with a pathlib error and a Histogram was dropped with a warning. Each is logged beside the same
value built from ``despina.types`` and must be stored identically, with no error reported.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import despina
from despina.store import Store
from despina.types import File, Histogram

ns_types = pytest.importorskip("neptune_scale.types")

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def stored(conn: sqlite3.Connection, path: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT a.id, a.type, a.text, a.count FROM attributes a JOIN runs r ON r.id = a.run_id "
        "WHERE r.run_id = 'moved' AND a.path = ?",
        (path,),
    ).fetchone()
    assert row is not None, f"nothing stored at {path!r}"
    points = conn.execute(
        "SELECT step, value FROM points WHERE attr_id = ? ORDER BY step", (row[0],)
    ).fetchall()
    return (row[1], row[3], points)


def test_neptune_scale_file_and_histogram_are_logged(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("moved from neptune")
    errors: list[BaseException] = []
    run = despina.Run(
        project="ws/proj",
        run_id="moved",
        on_error_callback=lambda exc, _: errors.append(exc),
        **QUIET,
    )
    with caplog.at_level(logging.WARNING, logger="despina"):
        run.log_histograms(
            {
                "ours/h": Histogram(bin_edges=[0, 1, 2], counts=[3, 4]),
                "theirs/h": ns_types.Histogram(bin_edges=[0, 1, 2], counts=[3, 4]),
                "ours/d": Histogram(bin_edges=[0.0, 0.5], densities=[2.0]),
                "theirs/d": ns_types.Histogram(bin_edges=[0.0, 0.5], densities=[2.0]),
            },
            step=1,
        )
        run.assign_files(
            {
                "ours/f": File(b"abc", mime_type="text/plain", destination="k/ours.txt"),
                "theirs/f": ns_types.File(b"abc", mime_type="text/plain", destination="k/th.txt"),
                "theirs/path": ns_types.File(source, mime_type="text/plain"),
            }
        )
        run.log_files(
            {
                "ours/fs": File(source, mime_type="text/plain"),
                "theirs/fs": ns_types.File(str(source), mime_type="text/plain"),
            },
            step=2,
        )
        run.close()
    assert errors == []
    # despina's own warnings (a pool of an earlier test's store may still log on other loggers)
    ours = [r for r in caplog.records if r.name.split(".")[0] == "despina"]
    assert [r.getMessage() for r in ours if r.levelno >= logging.WARNING] == []

    conn = Store.open(home).connection()
    for name in ("h", "d"):
        assert stored(conn, f"theirs/{name}") == stored(conn, f"ours/{name}")
        assert stored(conn, f"ours/{name}")[0] == "histogram_series"
    # files: same type and mime type; the storage key differs by destination/path only
    for ours, theirs in (("ours/f", "theirs/f"), ("ours/fs", "theirs/fs")):
        a, b = stored(conn, ours), stored(conn, theirs)
        assert a[0] == b[0] and a[1] == b[1]
    assert stored(conn, "theirs/path")[0] == "file"
    assert stored(conn, "theirs/fs")[0] == "file_series"
