"""Attribute rows kept on disk between processes (``despina.query.attr_files``): exact round
trips, and a fresh service starting from the file reads again only the runs written since."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from despina.query import attr_files
from despina.query.attrs import READ_STATS, AttrRows
from despina.query.service import QueryService
from despina.store import Store
from despina.store.batch import Assign, Batch, MetricColumn
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

PROJECT = "ws/disk"
RUNS = 100
PARAMS = 60  # 100 × (60 + 2) rows: past attr_files.DISK_MIN_ROWS


def _rows(n: int, *, texts: list[str | None], floats: list[float]) -> AttrRows:
    run = np.repeat(np.arange(n // 2, dtype=np.int64), 2)[:n]
    text = np.full(n, None, dtype=object)
    text[: len(texts)] = texts
    num_f = np.full(n, 0.5)
    num_f[: len(floats)] = floats
    return AttrRows(
        np.arange(n, dtype=np.int64) + 7,
        run,
        (np.arange(n) % 3).astype(np.int32),
        np.full(n, 4, np.int8),
        num_f,
        np.full(n, 2**62 + 1, np.int64),
        text,
        np.full(n, -1, np.int64),
        np.zeros(n, np.int64),
        np.arange(n, dtype=np.int64) * 1_000,
        ("a", "b\x01c", "é/ü"),
    )


def _assert_identical(left: AttrRows, right: AttrRows) -> None:
    assert left.paths == right.paths
    for name in ("attr_id", "run", "path", "type", "num_f", "num_i", "count"):
        a, b = getattr(left, name), getattr(right, name)
        assert a.dtype == b.dtype, name
        assert a.tobytes() == b.tobytes(), name  # bit for bit: NaN, -0.0
    for name in ("last_step", "last_ts"):
        assert np.array_equal(getattr(left, name), getattr(right, name)), name
    assert left.text.tolist() == right.text.tolist()


@pytest.mark.parametrize(
    "floats",
    [
        [math.nan, -0.0, 0.0, math.inf, -math.inf, 5e-324, 1 / 3],
        [-0.0] * 10,  # a constant column kept as one value, its sign bit included
    ],
)
def test_round_trip_is_exact(tmp_path: Path, floats: list[float]) -> None:
    rows = _rows(10, texts=["x,y", None, "", "\x01\x00zé", None], floats=floats)
    revisions = {0: (3, "u0"), 1: (1, "u1"), 4: (9, "u4")}
    path = tmp_path / "entry.attrs"
    assert attr_files.save(path, revisions, rows)
    found = attr_files.load(path)
    assert found is not None
    assert found[0] == revisions
    _assert_identical(rows, found[1])
    found[1].num_f[0] = 1.0  # the arrays read are writable


def test_empty_rows_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "empty.attrs"
    assert attr_files.save(path, {}, AttrRows.empty())
    found = attr_files.load(path)
    assert found is not None and found[0] == {} and len(found[1]) == 0


def test_unreadable_files_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "entry.attrs"
    assert attr_files.load(path) is None  # none yet
    attr_files.save(path, {1: (1, "u")}, _rows(6, texts=["a"], floats=[1.0]))
    whole = path.read_bytes()
    for broken in (whole[: len(whole) // 2], b"not a cache file", b""):
        path.write_bytes(broken)
        assert attr_files.load(path) is None


def test_cells_other_than_text_are_not_saved(tmp_path: Path) -> None:
    rows = _rows(4, texts=[], floats=[])
    rows.text[0] = ["a", "list"]
    assert not attr_files.save(tmp_path / "entry.attrs", {}, rows)
    assert not (tmp_path / "entry.attrs").exists()


def test_turned_off_by_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert attr_files.cache_directory(tmp_path, "key") is not None
    monkeypatch.setenv(attr_files.DISABLE_ENV, "0")
    assert attr_files.cache_directory(tmp_path, "key") is None


def _log(store: Store, pks: list[int], value: float) -> None:
    one = np.array([0], np.int64)
    for i, pk in enumerate(pks):
        ops = [Assign(f"cfg/p{j:02d}", "float", value + i + j / 100) for j in range(PARAMS)]
        ops.append(Assign("cfg/name", "string", f"run {i} at {value}"))
        metrics = {"m/loss": MetricColumn(one, np.array([value - i]), one + 1)}
        RunWriter(store, pk).apply(Batch(ops=ops, metrics=metrics))


def _read(store: Store, cache_dir: Path) -> AttrRows:
    """Every row of the project's runs through a new service (a fresh process's)."""
    service = QueryService(store, cache_dir=cache_dir)
    with service.snapshot(PROJECT) as snap:
        containers = snap.search(kind="run")
        rows = snap.rows(containers)
    service.attributes._wait()  # the background write of the file
    return rows


def _by_cell(rows: AttrRows) -> dict[tuple[int, str], tuple[bytes, object]]:
    return {
        (int(rows.run[i]), rows.paths[int(rows.path[i])]): (
            rows.num_f[i].tobytes(),
            rows.text[i],
        )
        for i in range(len(rows))
    }


def test_a_fresh_service_reads_only_the_runs_written_since(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")  # DESPINA_STORE (PostgreSQL) wins when set
    try:
        pks = [
            create_run(store, RunSpec(project=PROJECT, run_id=f"r{i:03d}", creation_ms=i)).pk
            for i in range(RUNS)
        ]
        _log(store, pks, 1.0)
        cache_dir = tmp_path / "cache"
        before = READ_STATS.rows
        first = _read(store, cache_dir)
        assert READ_STATS.rows - before == len(first) > attr_files.DISK_MIN_ROWS
        assert list(cache_dir.glob("*.attrs"))

        before = READ_STATS.rows
        again = _read(store, cache_dir)
        assert READ_STATS.rows == before  # from the file alone
        assert _by_cell(again) == _by_cell(first)

        _log(store, pks[:3], 2.0)  # three runs written since: only they are read again
        before = READ_STATS.rows
        changed = _read(store, cache_dir)
        assert READ_STATS.rows - before == 3 * len(first) // RUNS
        uncached = _by_cell(_read(store, tmp_path / "other-cache"))
        assert _by_cell(changed) == uncached
        assert uncached[(pks[0], "cfg/name")][1] == "run 0 at 2.0"
    finally:
        store.close()


def test_a_run_replaced_by_an_import_is_read_again(tmp_path: Path) -> None:
    """A replaced run may get its row id and (from its source) its uuid back; its revision
    still moves, so rows kept on disk for the old one are not served."""
    from despina.store.imports import ImportedRun, import_run

    def imported(i: int, value: float) -> ImportedRun:
        return ImportedRun(
            project=PROJECT,
            run_id=f"r{i:03d}",
            creation_ms=i,
            run_columns={"uuid": f"00000000-0000-0000-0000-{i:012d}"},
            values=[Assign(f"cfg/p{j:02d}", "float", value + j) for j in range(PARAMS)],
        )

    store = Store.open(tmp_path / "store")  # DESPINA_STORE (PostgreSQL) wins when set
    try:
        for i in range(RUNS):
            import_run(store, imported(i, 1.0))
        cache_dir = tmp_path / "cache"
        first = _by_cell(_read(store, cache_dir))
        newest = max(pk for pk, _ in first)
        outcome = import_run(store, imported(RUNS - 1, 5.0), replace=True)
        again = _by_cell(_read(store, cache_dir))
        assert again == _by_cell(_read(store, tmp_path / "other-cache"))
        assert again[(outcome.pk, "cfg/p00")][0] == np.float64(5.0).tobytes()
        if outcome.pk == newest:  # the embedded store reused the row id
            assert again != first
    finally:
        store.close()
