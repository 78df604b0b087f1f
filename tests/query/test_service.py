"""The query service: the attribute cache stays exact while runs change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import despina
import despina.query as nq
from despina.query import attrs, runs
from despina.store import Store
from despina.store.admin import delete_runs

QUIET = {"enable_console_log_capture": False, "source_tracking_config": None}


def test_cache_follows_writes_and_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attrs, "CACHE_THRESHOLD", 0)  # every query goes through the cache
    home = tmp_path / "store"
    for i in range(3):
        with despina.Run(project="ws/c", run_id=f"r{i}", home=home, **QUIET) as run:
            run.log_configs({"x": i})
            run.log_metrics({"m": float(i)}, step=0)
    nq.set_home(home)
    try:
        table = runs.fetch_runs_table(
            project="ws/c", attributes=["x", "m"], sort_by="x", sort_direction="asc"
        )
        assert table["x"].tolist() == [0, 1, 2]
        only = runs.fetch_runs_table(project="ws/c", runs=["r1"], attributes=["x"])
        assert only["x"].tolist() == [1]
        with despina.Run(project="ws/c", run_id="r1", home=home, **QUIET) as run:
            run.log_configs({"x": 10, "y": "new"})
            run.log_metrics({"m": 5.0}, step=1)
        table = runs.fetch_runs_table(
            project="ws/c", attributes=["x", "y", "m"], sort_by="x", sort_direction="asc"
        )
        assert table["x"].tolist() == [0, 2, 10]
        assert table["m"].tolist() == [0.0, 2.0, 5.0]
        assert table["y"].isna().tolist() == [True, True, False]
        metrics = runs.fetch_metrics(project="ws/c", runs=".*", attributes=["m"])
        assert metrics.loc["r1"]["m"].tolist() == [1.0, 5.0]
        store = Store.open(home)
        with store.write() as conn:
            (pk,) = conn.execute("SELECT id FROM runs WHERE run_id = 'r2'").fetchone()
            delete_runs(conn, [pk])
        with despina.Run(project="ws/c", run_id="r3", home=home, **QUIET) as run:
            run.log_configs({"x": 7})
        table = runs.fetch_runs_table(
            project="ws/c", attributes=["x"], sort_by="x", sort_direction="asc"
        )
        assert list(table.index) == ["r0", "r3", "r1"]
        assert np.array_equal(table["x"].to_numpy(), [0, 7, 10])
    finally:
        nq.set_home(None)
