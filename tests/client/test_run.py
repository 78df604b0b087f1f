"""despina.Run: the neptune_scale.Run surface, validated and stored in the embedded store."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import despina
from despina.exceptions import (
    NeptuneProjectNotProvided,
    NeptuneSeriesStepNonIncreasing,
    NeptuneUnableToLogData,
)
from despina.store import Store
from despina.store.series import lineage, read_float_lineage, read_points_lineage
from despina.types import File, Histogram

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


def make_run(**kwargs: Any) -> despina.Run:
    kwargs.setdefault("project", "ws/proj")
    return despina.Run(**{**QUIET, **kwargs})


def run_pk(home: Path, run_id: str) -> int:
    row = (
        Store.open(home)
        .connection()
        .execute("SELECT id FROM runs WHERE run_id = ?", (run_id,))
        .fetchone()
    )
    return int(row[0])


def attrs(home: Path, run_id: str) -> dict[str, tuple[str, Any, Any]]:
    conn = Store.open(home).connection()
    rows = conn.execute(
        "SELECT path, type, num, text FROM attributes WHERE run_id = ?", (run_pk(home, run_id),)
    )
    return {path: (type_, num, text) for path, type_, num, text in rows}


def series(home: Path, run_id: str, path: str) -> tuple[list[float], list[float], list[int]]:
    conn = Store.open(home).connection()
    got = read_float_lineage(conn, lineage(conn, run_pk(home, run_id)), path)
    return (got.steps / 1e6).tolist(), got.values.tolist(), got.timestamps.tolist()


def test_every_value_type_is_stored(home: Path) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    with make_run(run_id="r1", experiment_name="exp") as run:
        run.log_configs(
            {
                "f": 0.5,
                "i": 3,
                "b": True,
                "s": "adam",
                "d": when,
                "ss": ["x", "y"],
                "nan": math.nan,
                "inf": -math.inf,
            }
        )
        run.log_metrics({"loss": 1.0, "acc": 0.1}, step=1, timestamp=when)
        run.log_metrics({"loss": 0.5}, step=2.5)
        run.log_string_series({"notes": "hello"}, step=1)
        run.log_histograms({"h": Histogram(bin_edges=[0, 1, 2], counts=[3, 4])}, step=1)
        run.log_histograms({"hd": Histogram(bin_edges=[0, 1], densities=[0.5])}, step=1)
        run.add_tags(["t1", "t2"])
        run.remove_tags(["t1"])
        run.add_tags(["g"], group_tags=True)
        run.assign_files({"file": b"content", "named": File(b"x", mime_type="text/csv")})
        run.log_files({"fs": b"abc"}, step=3)
    got = attrs(home, "r1")
    assert got["f"] == ("float", 0.5, None)
    assert got["i"] == ("int", 3, None)
    assert got["b"] == ("bool", 1, None)
    assert got["s"] == ("string", None, "adam")
    assert got["d"] == ("datetime", int(when.timestamp() * 1000), None)
    assert got["ss"] == ("string_set", None, '["x", "y"]')
    assert got["nan"] == ("float", None, None)  # NULL stands for NaN
    assert got["inf"] == ("float", -math.inf, None)
    assert got["sys/tags"][2] == '["t2"]' and got["sys/group_tags"][2] == '["g"]'
    assert got["notes"][0] == "string_series"
    assert json.loads(got["h"][2]) == {"type": "COUNTING", "edges": [0, 1, 2], "values": [3, 4]}
    assert json.loads(got["hd"][2])["type"] == "DENSITY"
    file_ref = json.loads(got["file"][2])
    assert file_ref["size_bytes"] == 7 and file_ref["path"].startswith("r1-")
    assert json.loads(got["named"][2])["mime_type"] == "text/csv"
    assert json.loads(got["fs"][2])["path"].split("/")[2] == "000000000003_000000"
    steps, values, stamps = series(home, "r1", "loss")
    assert (steps, values) == ([1.0, 2.5], [1.0, 0.5])
    assert stamps[0] == int(when.timestamp() * 1000)
    blob = Store.open(home).blobs_dir
    assert any(p.read_bytes() == b"content" for p in blob.rglob("*") if p.is_file())


def test_flatten_and_cast_unsupported(home: Path) -> None:
    @dataclasses.dataclass
    class Opt:
        lr: float = 0.1
        betas: tuple[float, float] = (0.9, 0.99)

    with make_run(run_id="r") as run:
        run.log_configs({"opt": Opt(), "model": {"depth": 3}}, flatten=True, cast_unsupported=True)
        run.log_configs({"none": None, "obj": {1, 2}}, cast_unsupported=True)
    got = attrs(home, "r")
    assert got["opt/lr"] == ("float", 0.1, None)
    assert got["opt/betas"] == ("string", None, "(0.9, 0.99)")
    assert got["model/depth"] == ("int", 3, None)
    assert got["none"] == ("string", None, "")
    assert got["obj"] == ("string", None, "{1, 2}")


def test_unsupported_values_are_dropped_with_a_warning(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="despina"), make_run(run_id="r") as run:
        run.log_configs({"d": {"a": 1}, "ok": 1})
        run.log_metrics({"m": "not a number", "n": "1.5", "k": True}, step=1)
        run.add_tags("single-string")
    assert "config 'd' has unsupported type dict" in caplog.text
    assert "cannot convert 'not a number' to float" in caplog.text
    assert "wrap a single tag in a list" in caplog.text
    got = attrs(home, "r")
    assert "d" not in got and "m" not in got
    assert series(home, "r", "n")[1] == [1.5]
    assert series(home, "r", "k")[1] == [1.0]


def test_raise_mode_raises_in_the_callers_thread(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEPTUNE_LOG_FAILURE_ACTION", "raise")
    with make_run(run_id="r") as run:
        with pytest.raises(NeptuneUnableToLogData, match=r"'m'.*'x'"):
            run.log_metrics({"m": "x"}, step=1)
        with pytest.raises(NeptuneUnableToLogData, match="config 'c'"):
            run.log_configs({"c": None})


@pytest.mark.parametrize(
    ("step", "error"),
    [(-1, ValueError), (1e12, ValueError), (math.nan, ValueError), ("1", TypeError)],
)
def test_bad_steps_raise(step: Any, error: type[Exception]) -> None:
    with make_run(run_id="r") as run, pytest.raises(error, match="step"):
        run.log_metrics({"m": 1.0}, step=step)


def test_argument_errors() -> None:
    with pytest.raises(NeptuneProjectNotProvided, match="DESPINA_PROJECT"):
        despina.Run(**QUIET)
    with pytest.raises(ValueError, match="must not contain '/'"):
        make_run(run_id="a/b")
    with pytest.raises(ValueError, match="together"):
        make_run(fork_run_id="x")
    with make_run(run_id="r") as run:
        with pytest.raises(ValueError, match="preview_completion"):
            run.log_metrics({"m": 1.0}, step=1, preview_completion=0.5)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            run.log_metrics({"m": 1.0}, step=1, preview=True, preview_completion=2)
        with pytest.raises(TypeError, match="only str elements, got int 1"):
            run.log_configs({"s": ["a", 1]})
        with pytest.raises(TypeError, match="mapping or a dataclass"):
            run.log_configs([1, 2])


def test_project_comes_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEPTUNE_PROJECT", "ws/from-neptune")
    with despina.Run(run_id="a", **QUIET) as run:
        assert run.project == "ws/from-neptune"
    monkeypatch.setenv("DESPINA_PROJECT", "ws/from-despina")
    with despina.Run(run_id="b", **QUIET) as run:
        assert run.project == "ws/from-despina"
    assert Store.open(home).list_projects() == ["ws/from-despina", "ws/from-neptune"]


def test_store_errors_reach_the_error_callback_and_the_run_goes_on(home: Path) -> None:
    seen: list[tuple[BaseException, float | None]] = []
    with make_run(run_id="r", on_error_callback=lambda e, t: seen.append((e, t))) as run:
        run.log_metrics({"m": 1.0}, step=2)
        run.wait_for_processing()
        run.log_metrics({"m": 2.0}, step=1)
        run.log_metrics({"m": 3.0}, step=3)
    assert len(seen) == 1 and isinstance(seen[0][0], NeptuneSeriesStepNonIncreasing)
    assert "step 1 of 'm'" in str(seen[0][0])
    assert series(home, "r", "m")[1] == [1.0, 3.0]


def test_previews_and_none_steps(home: Path) -> None:
    with make_run(run_id="r") as run:
        run.log_metrics({"m": 0.1}, step=1)
        run.log_metrics({"m": 0.5}, step=2, preview=True, preview_completion=0.5)
        run.log_metrics({"m": 0.7}, step=3, preview=True)
        run.log_metrics({"n": 1.0}, step=None)
        run.log_metrics({"n": 2.0}, step=None)
    conn = Store.open(home).connection()
    assert conn.execute(
        "SELECT step, value, completion FROM previews ORDER BY step"
    ).fetchall() == [
        (2_000_000, 0.5, 0.5),
        (3_000_000, 0.7, 0.0),
    ]
    assert series(home, "r", "n")[0] == [0.0, 1.0]


def test_fork_with_run_api(home: Path) -> None:
    with make_run(run_id="parent", experiment_name="e") as run:
        for step in range(1, 6):
            run.log_metrics({"m": step / 10}, step=step)
        run.log_configs({"lr": 0.1})
    with make_run(run_id="child", fork_run_id="parent", fork_step=3, experiment_name="e") as run:
        run.log_metrics({"m": 0.9}, step=4)
    assert series(home, "child", "m")[0] == [1.0, 2.0, 3.0, 4.0]
    got = attrs(home, "child")
    assert got["lr"] == ("float", 0.1, None)
    row = (
        Store.open(home)
        .connection()
        .execute("SELECT fork_step, depth, is_head FROM runs WHERE run_id = 'child'")
        .fetchone()
    )
    assert row == (3_000_000, 1, 1)


def test_context_manager_marks_failure(home: Path) -> None:
    with pytest.raises(RuntimeError), make_run(run_id="bad") as run:
        run.log_metrics({"m": 1.0}, step=1)
        raise RuntimeError("boom")
    with make_run(run_id="good"):
        pass
    conn = Store.open(home).connection()
    assert conn.execute("SELECT run_id, failed, closed FROM runs ORDER BY id").fetchall() == [
        ("bad", 1, 1),
        ("good", 0, 1),
    ]
    assert series(home, "bad", "m")[1] == [1.0]  # what was logged before the error is kept


def test_calls_after_close_are_ignored(home: Path) -> None:
    run = make_run(run_id="r")
    run.log_metrics({"m": 1.0}, step=1)
    run.close()
    run.log_metrics({"m": 2.0}, step=2)
    run.close()
    assert series(home, "r", "m")[1] == [1.0]


def test_disabled_mode_checks_arguments_and_stores_nothing(home: Path) -> None:
    run = make_run(run_id="r", mode="disabled")
    with pytest.raises(ValueError):
        run.log_metrics({"m": 1.0}, step=-1)
    run.log_metrics({"m": 1.0}, step=1)
    run.close()
    assert not (home / "despina.db").exists()


def test_resume_continues_a_run(home: Path) -> None:
    with make_run(run_id="r") as run:
        run.log_metrics({"m": 1.0}, step=1)
    with make_run(run_id="r") as run:
        run.log_metrics({"m": 2.0}, step=2)
    assert series(home, "r", "m")[1] == [1.0, 2.0]


def test_console_capture(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with despina.Run(project="ws/p", run_id="r", source_tracking_config=None):
        print("first line")
        print("second", end="")
    conn = Store.open(home).connection()
    rows = read_points_lineage(
        conn, lineage(conn, run_pk(home, "r")), "runtime/stdout", "string_series"
    )
    assert [value for _, _, value in rows] == ["first line", "second"]
    assert "first line" in capsys.readouterr().out


def test_source_tracking_inside_git(
    home: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo)
    with despina.Run(project="ws/p", run_id="r", enable_console_log_capture=False):
        pass
    got = attrs(home, "r")
    assert got["source_code/commit/message"] == ("string", None, "msg")
    assert got["source_code/branch"] == ("string", None, "main")
    assert got["source_code/dirty"] == ("bool", 0, None)


def test_async_lag_callback_fires_once_while_the_store_is_locked(home: Path) -> None:
    import sqlite3
    import threading
    import time

    fired: list[float] = []
    run = make_run(
        run_id="r", async_lag_threshold=0.3, on_async_lag_callback=lambda: fired.append(1)
    )
    run.wait_for_processing()
    url = os.environ.get("DESPINA_STORE", "")
    if url.startswith("postgresql"):
        import psycopg

        # another process writing to the run holds its row lock: the run's writes wait
        blocker: Any = psycopg.connect(url)
        blocker.execute("SELECT id FROM runs WHERE run_id = 'r' FOR UPDATE")
    else:
        blocker = sqlite3.connect(
            home / "despina.db", isolation_level=None, check_same_thread=False
        )
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    run.log_metrics({"m": 1.0}, step=1)
    time.sleep(3.0)
    assert fired == [1]  # once per episode, not once per check
    threading.Thread(target=lambda: blocker.rollback()).start()
    assert run.wait_for_processing(timeout=30)
    run.close()
    assert series(home, "r", "m")[1] == [1.0]  # nothing was lost while the store was locked
