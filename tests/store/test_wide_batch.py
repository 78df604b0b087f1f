"""A wide flush's new float series, written in a few whole-batch statements (wide_batch.py),
store exactly what the series-by-series path stores: attributes, chunk rows, points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from despina.store import Store
from despina.store.batch import Batch, MetricColumn
from despina.store.runs import RunSpec, create_run
from despina.store.series import read_float_points
from despina.store.writer import CHUNK_POINTS, RunWriter

M = 1_000_000
WIDTH = 12


def _batch(
    first: int, steps: int, width: int = WIDTH, odd: dict[int, float] | None = None
) -> Batch:
    """``width`` series sharing one steps and one timestamps array, as metric_columns makes."""
    step_array = np.arange(first, first + steps, dtype=np.int64) * M
    stamps = 1_700_000_000_000 + np.arange(first, first + steps, dtype=np.int64) // 3
    values = np.sin(np.arange(width * steps, dtype=np.float64)).reshape(width, steps) * 1e3
    for row, value in (odd or {}).items():
        values[row, steps // 2] = value
    return Batch(
        metrics={f"m/{j:02d}": MetricColumn(step_array, values[j], stamps) for j in range(width)}
    )


def _stored(store: Store, run_pk: int) -> dict[str, Any]:
    conn = store.connection()
    out: dict[str, Any] = {}
    for attr_id, path, *aggregates in conn.execute(
        "SELECT id, path, type, num, count, last_step, last_ts, fmin, fmax, fsum, fsumsq, fcount "
        "FROM attributes WHERE run_id = ? AND path LIKE 'm/%'",
        (run_pk,),
    ):
        chunks = conn.execute(
            "SELECT id - (? << 24), n, step_first, step_last, ts_first, ts_last, vmin, vmax, "
            "steps, vals, ts FROM chunks WHERE id BETWEEN (? << 24) AND ((? + 1) << 24) - 1 "
            "ORDER BY id",
            (attr_id, attr_id, attr_id),
        ).fetchall()
        points = read_float_points(conn, attr_id, 0, None)
        out[path] = (
            aggregates,
            chunks,
            points.steps.tolist(),
            [repr(v) for v in points.values.tolist()],  # NaN equals NaN here
            points.timestamps.tolist(),
        )
    return out


def _apply_both(
    store: Store, batches: list[Batch], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any], list[int]]:
    """Both paths' stored series, and how many series each flush wrote the whole-batch way."""
    whole = RunWriter._append_new_wide
    taken: list[int] = []

    def spy(*args: Any) -> tuple[set[str], int]:
        done = whole(*args)
        taken.append(len(done[0]))
        return done

    with monkeypatch.context() as patch:
        patch.setattr(RunWriter, "_append_new_wide", spy)
        wide = RunWriter(store, create_run(store, RunSpec("ws/p", "wide")).pk)
        for batch in batches:
            assert not wide.apply(batch)
    with monkeypatch.context() as patch:
        patch.setattr(RunWriter, "_append_new_wide", lambda *args: (set(), 0))
        narrow = RunWriter(store, create_run(store, RunSpec("ws/p", "narrow")).pk)
        for batch in batches:
            assert not narrow.apply(batch)
    return _stored(store, wide.run_pk), _stored(store, narrow.run_pk), taken


@pytest.mark.sqlite_only  # the whole-batch path is the embedded store's (reads its chunk rows)
@pytest.mark.parametrize("steps", [1, 200, CHUNK_POINTS, CHUNK_POINTS + 5, 3 * CHUNK_POINTS - 1])
def test_a_wide_first_flush_stores_what_the_series_path_stores(
    home: Path, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    store = Store.open(home)
    # a second flush continues from the state the first one left (open points, chunk numbers)
    wide, narrow, taken = _apply_both(store, [_batch(0, steps), _batch(steps, 700)], monkeypatch)
    assert taken == [WIDTH, 0]  # the second flush's series exist: series by series
    assert wide == narrow
    assert len(wide) == WIDTH
    assert wide["m/03"][0][2] == steps + 700  # count


@pytest.mark.sqlite_only  # the whole-batch path is the embedded store's (reads its chunk rows)
def test_series_with_nan_or_inf_and_known_paths_take_the_series_path(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(home)
    odd = {1: float("nan"), 4: float("inf"), 7: float("-inf")}
    batches = [_batch(0, 50, odd=odd), _batch(50, 50, odd=odd)]
    wide, narrow, taken = _apply_both(store, batches, monkeypatch)
    assert taken == [WIDTH - len(odd), 0]
    assert wide == narrow
    assert wide["m/01"][0][9] == 98  # fcount: a NaN per flush is not a finite value


def test_a_wide_flush_into_a_forked_run_keeps_the_fork_rule(home: Path) -> None:
    store = Store.open(home)
    parent = RunWriter(store, create_run(store, RunSpec("ws/p", "parent")).pk)
    assert not parent.apply(_batch(0, 10))
    child_pk = create_run(store, RunSpec("ws/p", "child", fork_run_id="parent", fork_step=5 * M)).pk
    child = RunWriter(store, child_pk)
    issues = child.apply(_batch(0, 10, width=WIDTH + 3))  # new paths at steps up to the fork
    assert {issue.code for issue in issues} == {"SERIES_STEP_NOT_AFTER_FORK_POINT"}
    new = _stored(store, child_pk)["m/13"]
    assert new[2] == list(range(6 * M, 10 * M, M))
