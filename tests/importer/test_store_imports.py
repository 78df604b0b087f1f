"""``despina.store.imports``: an imported run is stored exactly as the same data logged through
``RunWriter`` (chunks byte for byte, aggregates, lineage), and logging into it later works."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from despina.store import Store
from despina.store.batch import Assign, Batch, MetricColumn, PointAppend
from despina.store.codec import encode_ints
from despina.store.imports import (
    FloatBlock,
    ImportedRun,
    PointSeries,
    _codec_bytes,
    import_run,
    reserve_run_numbers,
)
from despina.store.runs import RunSpec, create_run
from despina.store.series import lineage, read_float_lineage
from despina.store.sql.attribute_columns import READ_STATS, read_columns
from despina.store.sql.attribute_packs import PACK_MIN_ROWS
from despina.store.writer import CHUNK_POINTS, RunWriter

M = 1_000_000
T0 = 1_700_000_000_000


def _columns(rng: np.random.Generator) -> dict[str, MetricColumn]:
    """Series that exercise every codec: regular, irregular, huge gaps, one point, non-finite."""
    n = 2 * CHUNK_POINTS + 17
    regular = np.arange(n, dtype=np.int64) * M
    irregular = np.cumsum(rng.integers(1, 300, n)).astype(np.int64) * 1000
    gaps = np.cumsum(rng.integers(1, 2**40, 40)).astype(np.int64)
    values = rng.standard_normal(n)
    values[[3, 1500]] = [math.nan, math.inf]
    nonfinite = np.full(CHUNK_POINTS + 1, math.nan)
    return {
        "m/regular": MetricColumn(regular, values, T0 + regular // M),
        "m/irregular": MetricColumn(irregular, values[::-1].copy(), T0 + irregular // 1000),
        "m/gaps": MetricColumn(gaps, rng.standard_normal(40), T0 + np.arange(40) * 70_000),
        "m/one": MetricColumn(np.array([5 * M]), np.array([2.5]), np.array([T0])),
        "m/nan": MetricColumn(
            np.arange(len(nonfinite), dtype=np.int64), nonfinite, np.full(len(nonfinite), T0)
        ),
    }


def _chunks(store: Store, run_pk: int) -> list[tuple[object, ...]]:
    return (
        store.connection()
        .execute(
            "SELECT a.path, c.id & 16777215, c.n, c.step_first, c.step_last, c.ts_first, "
            "c.ts_last, c.vmin, c.vmax, c.steps, c.vals, c.ts FROM chunks c JOIN attributes a "
            "ON a.id = c.id >> 24 WHERE a.run_id = ? ORDER BY 1, 2",
            (run_pk,),
        )
        .fetchall()
    )


def _attrs(store: Store, run_pk: int) -> dict[str, tuple[object, ...]]:
    rows = store.connection().execute(
        "SELECT path, type, num, text, count, last_step, last_ts, fmin, fmax, fsum, fsumsq, "
        "fcount FROM attributes WHERE run_id = ?",
        (run_pk,),
    )
    return {row[0]: row[1:] for row in rows}


def _same_attrs(a: dict[str, tuple[object, ...]], b: dict[str, tuple[object, ...]]) -> None:
    assert a.keys() == b.keys()
    for path in a:
        left, right = a[path], b[path]
        assert left[:7] == right[:7], path  # type … fmax exactly
        for x, y in zip(left[7:], right[7:], strict=True):  # sums: summation order differs
            assert x == y or (isinstance(x, float) and math.isclose(x, y, rel_tol=1e-12)), path


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Store, Store]:
    return Store.open(tmp_path / "logged"), Store.open(tmp_path / "imported")


def test_imported_run_equals_logged_run(stores: tuple[Store, Store]) -> None:
    logged_store, imported_store = stores
    columns = _columns(np.random.default_rng(1))
    strings = PointSeries(
        "logs/out",
        "string_series",
        np.array([0, M, 2 * M]),
        np.array([T0, T0, T0 + 1]),
        ["a", "b", "c"],
    )
    values = [
        Assign("cfg/lr", "float", 0.5),
        Assign("cfg/n", "int", 3),
        Assign("cfg/ok", "bool", True),
        Assign("cfg/name", "string", "x"),
        Assign("cfg/when", "datetime", T0),
        Assign("cfg/set", "string_set", frozenset({"b", "a"})),
        Assign("cfg/nan", "float", math.nan),
    ]
    created = create_run(logged_store, RunSpec("ws/p", "r", creation_ms=T0))
    writer = RunWriter(logged_store, created.pk)
    assert not writer.apply(Batch(ops=list(values), metrics=columns))
    writer.apply(
        Batch(
            points=[
                PointAppend("logs/out", "string_series", int(s), int(t), v)
                for s, t, v in zip(strings.steps, strings.timestamps, strings.values, strict=True)
            ]
        )
    )
    outcome = import_run(
        imported_store,
        ImportedRun(
            "ws/p",
            "r",
            T0,
            values=values,
            floats=FloatBlock.from_columns(columns),
            series=[strings],
        ),
    )
    assert outcome.created and not outcome.issues
    assert _chunks(imported_store, outcome.pk) == _chunks(logged_store, created.pk)
    _same_attrs(_attrs(imported_store, outcome.pk), _attrs(logged_store, created.pk))


def test_an_imported_run_is_packed_as_a_closed_one(stores: tuple[Store, Store]) -> None:
    _, store = stores
    values = [Assign(f"cfg/p{j:02d}", "float", j / 3) for j in range(PACK_MIN_ROWS)]
    columns = _columns(np.random.default_rng(2))
    for replace in (False, True):  # a replacement gets a newer revision: packed with it
        outcome = import_run(
            store,
            ImportedRun("ws/p", "r", T0, values=values, floats=FloatBlock.from_columns(columns)),
            replace=replace,
        )
        before = READ_STATS.packs
        with store.read() as conn:
            packed = read_columns(conn, [outcome.pk])
            rows = read_columns(conn, [outcome.pk], packs=False)
        assert READ_STATS.packs - before == 1
        assert packed.paths == rows.paths and packed.text.tolist() == rows.text.tolist()
        assert packed.num_f.tobytes() == rows.num_f.tobytes()
        assert packed.attr_id.tolist() == rows.attr_id.tolist()


def test_imported_fork_equals_logged_fork(stores: tuple[Store, Store]) -> None:
    logged_store, imported_store = stores
    steps = np.arange(100, dtype=np.int64) * M
    parent = {"loss": MetricColumn(steps, np.linspace(1, 0, 100), T0 + steps // M)}
    child_steps = np.arange(41, 70, dtype=np.int64) * M
    child = {"loss": MetricColumn(child_steps, np.full(29, 7.0), T0 + child_steps // M)}

    p = create_run(logged_store, RunSpec("ws/p", "parent", creation_ms=T0))
    RunWriter(logged_store, p.pk).apply(Batch(metrics=parent))
    c = create_run(
        logged_store,
        RunSpec("ws/p", "child", fork_run_id="parent", fork_step=40 * M, inherit_configs=False),
    )
    RunWriter(logged_store, c.pk).apply(Batch(metrics=child))

    import_run(
        imported_store, ImportedRun("ws/p", "parent", T0, floats=FloatBlock.from_columns(parent))
    )
    outcome = import_run(
        imported_store,
        ImportedRun(
            "ws/p",
            "child",
            T0 + 1,
            fork_run_id="parent",
            fork_step=40 * M,
            floats=FloatBlock.from_columns(child),
        ),
    )
    assert outcome.forked
    _same_attrs(_attrs(imported_store, outcome.pk), _attrs(logged_store, c.pk))
    conn = imported_store.connection()
    points = read_float_lineage(conn, lineage(conn, outcome.pk), "loss")
    assert points.steps.tolist() == [*steps[:41].tolist(), *child_steps.tolist()]


def test_logging_continues_into_an_imported_run(stores: tuple[Store, Store]) -> None:
    _, store = stores
    columns = {
        "loss": MetricColumn(np.arange(1500, dtype=np.int64) * M, np.ones(1500), np.full(1500, T0))
    }
    outcome = import_run(
        store, ImportedRun("ws/p", "r", T0, floats=FloatBlock.from_columns(columns))
    )
    more = np.arange(1500, 1600, dtype=np.int64) * M
    issues = RunWriter(store, outcome.pk).apply(
        Batch(metrics={"loss": MetricColumn(more, np.zeros(100), np.full(100, T0 + 1))})
    )
    assert not issues
    conn = store.connection()
    points = read_float_lineage(conn, lineage(conn, outcome.pk), "loss")
    assert len(points) == 1600 and points.values[-1] == 0.0


def test_timestamps_are_kept_as_recorded_even_when_they_decrease(
    stores: tuple[Store, Store],
) -> None:
    _, store = stores
    stamps = np.array([T0 + 10, T0, T0 + 5])
    block = FloatBlock.from_columns(
        {"x": MetricColumn(np.array([0, M, 2 * M]), np.ones(3), stamps)}
    )
    outcome = import_run(store, ImportedRun("ws/p", "r", T0, floats=block))
    conn = store.connection()
    assert read_float_lineage(conn, lineage(conn, outcome.pk), "x").timestamps.tolist() == list(
        stamps
    )


def test_invariants_are_checked(stores: tuple[Store, Store]) -> None:
    _, store = stores
    bad = FloatBlock.from_columns({"x": MetricColumn(np.array([M, M]), np.ones(2), np.ones(2))})
    with pytest.raises(ValueError, match="steps must strictly increase"):
        import_run(store, ImportedRun("ws/p", "r", T0, floats=bad))
    with pytest.raises(ValueError, match="must not contain '/'"):
        import_run(store, ImportedRun("ws/p", "a/b", T0))
    assert store.connection().execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_kept_ids_and_the_counter(stores: tuple[Store, Store]) -> None:
    _, store = stores
    store.create_project("ws/p", key="KEY")
    reserve_run_numbers(store, "ws/p", 10)
    kept = import_run(store, ImportedRun("ws/p", "a", T0, short_no=7))
    taken = import_run(store, ImportedRun("ws/p", "b", T0, short_no=7))
    new = create_run(store, RunSpec("ws/p", "c"))
    number = store.connection().execute("SELECT short_no FROM runs WHERE id = ?", (new.pk,))
    assert (kept.sys_id, taken.sys_id) == ("KEY-7", "KEY-11")
    assert number.fetchone()[0] == 12
    again = import_run(store, ImportedRun("ws/p", "a", T0, short_no=7))
    assert not again.created and again.sys_id == "KEY-7"


def test_experiment_head_follows_the_mark(stores: tuple[Store, Store]) -> None:
    _, store = stores
    marked = frozenset({"a"})
    import_run(store, ImportedRun("ws/p", "a", T0, experiment_name="e", marked_heads=marked))
    import_run(store, ImportedRun("ws/p", "b", T0 + 5, experiment_name="e", marked_heads=marked))
    heads = store.connection().execute("SELECT run_id FROM runs WHERE is_head = 1").fetchall()
    assert heads == [("a",)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=40), min_size=1, max_size=6
    )
)
def test_chunk_codecs_match_encode_ints(chunks: list[list[int]]) -> None:
    sizes = [len(c) for c in chunks]
    column = np.array([v for c in chunks for v in c], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    lengths = np.array(sizes, dtype=np.int64)
    with np.errstate(over="ignore"):
        got = _codec_bytes(column, starts, starts + lengths, lengths)
        want = [encode_ints(np.array(c, dtype=np.int64)) for c in chunks]
    assert got == want


@pytest.mark.parametrize("marked", [frozenset(), frozenset({"r3", "r5"})])
def test_head_rule_holds_whatever_the_import_order(
    stores: tuple[Store, Store], marked: frozenset[str]
) -> None:
    _, store = stores
    created = {f"r{i}": T0 + c for i, c in enumerate([5, 1, 9, 3, 7, 2, 8])}
    for run_id in ["r4", "r0", "r6", "r2", "r5", "r1", "r3"]:  # neither by name nor by time
        import_run(
            store,
            ImportedRun("ws/p", run_id, created[run_id], experiment_name="e", marked_heads=marked),
        )
        heads = store.connection().execute("SELECT count(*) FROM runs WHERE is_head = 1")
        assert heads.fetchone()[0] == 1
    head = store.connection().execute("SELECT run_id FROM runs WHERE is_head = 1").fetchone()[0]
    pool = [r for r in created if r in marked] or list(created)
    assert head == max(pool, key=created.__getitem__)


def test_one_run_imported_at_once_by_several_threads_is_stored_once(tmp_path: Path) -> None:
    import threading

    store = Store.open(tmp_path / "home")
    columns = _columns(np.random.default_rng(3))
    outcomes: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(run_id: str) -> None:
        start.wait()
        try:
            run = ImportedRun("ws/p", run_id, T0, floats=FloatBlock.from_columns(columns))
            outcomes.append(import_run(store, run).created)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(run_id,)) for run_id in ("x", "x", "y", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(outcomes) == [False, False, True, True]  # the second of each is kept as is
    rows = store.connection().execute("SELECT run_id, short_no FROM runs ORDER BY 2").fetchall()
    assert sorted(r for r, _ in rows) == ["x", "y"]
    assert [n for _, n in rows] == [1, 2]
