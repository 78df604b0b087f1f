"""The rest of the neptune_scale surface: logging handler, legacy dict-style Run, projects."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import despina
import despina.legacy
import despina.projects
from despina.client.logging_handler import MAX_LINE_BYTES, _split
from despina.errors import ConfigError
from despina.store import Store
from despina.store.series import lineage, read_float_lineage, read_points_lineage

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def _pk(home: Path, run_id: str) -> int:
    conn = Store.open(home).connection()
    return int(conn.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])


def test_logging_handler_writes_lines_in_order(home: Path) -> None:
    logger = logging.getLogger("despina-test-handler")
    logger.setLevel(logging.INFO)
    with despina.Run(project="ws/p", run_id="r", **QUIET) as run:
        handler = despina.NeptuneLoggingHandler(run=run, level=logging.INFO)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.info("starting")
        logger.debug("not captured")
        logger.warning("two\nlines")
        logger.removeHandler(handler)
    conn = Store.open(home).connection()
    rows = read_points_lineage(conn, lineage(conn, _pk(home, "r")), "runtime/logs", "string_series")
    assert [value for _, _, value in rows] == ["INFO starting", "WARNING two", "lines"]
    assert [step for step, _, _ in rows] == [0, 1, 2]  # micro-steps


def test_long_lines_are_split_between_characters() -> None:
    line = "é" * MAX_LINE_BYTES
    pieces = _split(line)
    assert "".join(pieces) == line
    assert all(len(p.encode()) <= MAX_LINE_BYTES for p in pieces)


def test_legacy_dict_style(home: Path) -> None:
    with despina.legacy.Run(project="ws/p", run_id="r", **QUIET) as run:
        run["/params"] = {"lr": 0.1, "model": {"depth": 3}}
        run["train/loss"].append(1.0, step=1)
        run["train/loss"].extend([0.5, 0.25], steps=[2, 3])
        run["sys/tags"].add("single")
        run["sys/tags"].add(["a", "b"])
        run["sys/tags"].remove("a")
        with pytest.warns(UserWarning, match="unsupported keyword"):
            run["x"].append(1.0, step=1, bogus=True)
        with pytest.raises(ValueError, match="same length"):
            run["y"].extend([1.0], steps=[1, 2])
        for bad in ("a/", "a//b", "a/ b"):
            with pytest.raises(ValueError, match="invalid attribute path"):
                run[bad]
    conn = Store.open(home).connection()
    pk = _pk(home, "r")
    got = {
        path: text if num is None else num
        for path, num, text in conn.execute(
            "SELECT path, num, text FROM attributes WHERE run_id = ?", (pk,)
        )
    }
    assert got["params/lr"] == 0.1 and got["params/model/depth"] == 3
    assert got["sys/tags"] == '["b", "single"]'
    points = read_float_lineage(conn, lineage(conn, pk), "train/loss")
    assert points.values.tolist() == [1.0, 0.5, 0.25]


def test_projects_module(home: Path) -> None:
    assert despina.projects.create_project("my-proj", workspace="ws", key="MP") == "ws/my-proj"
    assert despina.projects.create_project("ws/my-proj") == "ws/my-proj"
    with pytest.raises(ConfigError, match="already exists"):
        despina.projects.create_project("ws/my-proj", fail_if_exists=True)
    with pytest.raises(ConfigError, match="differs"):
        despina.projects.create_project("ws/x", workspace="other")
    with pytest.raises(ConfigError, match="visibility"):
        despina.projects.create_project("ws/y", visibility="secret")
    assert despina.projects.list_projects() == ["ws/my-proj"]
