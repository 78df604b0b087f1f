"""Store-side ingest rules, applied through RunWriter directly (wire-protocol.md §5.3–§5.5)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from despina.store import Store
from despina.store.batch import (
    NO_STEP,
    Assign,
    Batch,
    MetricColumn,
    ModifySet,
    PointAppend,
    PreviewPoint,
)
from despina.store.runs import RunSpec, create_run
from despina.store.series import lineage, read_float_lineage, read_float_points
from despina.store.writer import CHUNK_POINTS, RunWriter

M = 1_000_000


@pytest.fixture
def store(home: Path) -> Store:
    return Store.open(home)


def new_run(store: Store, run_id: str = "r", **kwargs: object) -> RunWriter:
    created = create_run(store, RunSpec("ws/p", run_id, **kwargs))  # type: ignore[arg-type]
    return RunWriter(store, created.pk)


def metrics(path: str, steps: list[float], values: list[float], ts: int | None = None) -> Batch:
    """Points at ``steps``; timestamps equal to the step in ms unless ``ts`` starts them."""
    stamps = [int(s) if ts is None else ts + i for i, s in enumerate(steps)]
    return Batch(metrics={path: MetricColumn([int(s * M) for s in steps], values, stamps)})


def attr(store: Store, run_pk: int, path: str) -> tuple:
    return (
        store.connection()
        .execute(
            "SELECT type, num, text, count, last_step, fmin, fmax, fsum, fsumsq, fcount "
            "FROM attributes WHERE run_id = ? AND path = ?",
            (run_pk, path),
        )
        .fetchone()
    )


def points(store: Store, writer: RunWriter, path: str) -> tuple[list[float], list[float]]:
    conn = store.connection()
    got = read_float_lineage(conn, lineage(conn, writer.run_pk), path)
    return (got.steps / M).tolist(), got.values.tolist()


def test_points_span_many_chunks_and_read_back_in_order(store: Store) -> None:
    writer = new_run(store)
    n = CHUNK_POINTS * 3 + 17
    values = np.random.default_rng(0).random(n)
    for part in np.array_split(np.arange(n), 7):  # several flushes, chunk boundaries anywhere
        assert writer.apply(metrics("m", part.tolist(), values[part].tolist())) == []
    steps, got = points(store, writer, "m")
    assert steps == list(range(n))
    assert got == values.tolist()
    assert store.connection().execute("SELECT count(*) FROM chunks").fetchone()[0] == 4


def test_aggregates_cover_finite_values_and_last_keeps_nan(store: Store) -> None:
    writer = new_run(store)
    writer.apply(metrics("m", [1, 2, 3, 4], [1.0, math.inf, 3.0, math.nan]))
    type_, last, _, count, last_step, fmin, fmax, fsum, fsumsq, fcount = attr(
        store, writer.run_pk, "m"
    )
    assert (type_, last, count, last_step) == ("float_series", None, 4, 4 * M)  # NULL = NaN
    assert (fmin, fmax, fsum, fsumsq, fcount) == (1.0, 3.0, 4.0, 10.0, 2)
    _, got = points(store, writer, "m")
    assert got[1] == math.inf and math.isnan(got[3])


def test_non_increasing_step_is_rejected_for_that_series_only(store: Store) -> None:
    writer = new_run(store)
    writer.apply(metrics("a", [1, 2], [1.0, 2.0]))
    batch = metrics("a", [2, 3], [5.0, 3.0])
    batch.metrics.update(metrics("b", [1], [7.0]).metrics)
    issues = writer.apply(batch)
    assert [i.code for i in issues] == ["SERIES_STEP_NON_INCREASING"]
    assert "step 2 of 'a'" in issues[0].message
    assert points(store, writer, "a") == ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert points(store, writer, "b") == ([1.0], [7.0])


def test_identical_resent_point_is_a_duplicate_warning(store: Store) -> None:
    writer = new_run(store)
    writer.apply(metrics("a", [1, 2], [1.0, 2.0]))
    issues = writer.apply(metrics("a", [1, 2], [1.0, 2.0]))
    assert {(i.code, i.severity) for i in issues} == {("SERIES_POINT_DUPLICATE", "warning")}
    assert points(store, writer, "a") == ([1.0, 2.0], [1.0, 2.0])


def test_decreasing_timestamp_and_too_large_step(store: Store) -> None:
    writer = new_run(store)
    writer.apply(metrics("a", [1], [1.0], ts=5000))
    issues = writer.apply(metrics("a", [2], [1.0], ts=10))
    assert [i.code for i in issues] == ["SERIES_TIMESTAMP_DECREASING"]
    big = Batch(metrics={"a": MetricColumn([10**18], [1.0], [6000])})
    assert [i.code for i in writer.apply(big)] == ["SERIES_STEP_TOO_LARGE"]


def test_missing_step_continues_the_series(store: Store) -> None:
    writer = new_run(store)
    writer.apply(Batch(metrics={"a": MetricColumn([NO_STEP, NO_STEP], [1.0, 2.0], [1, 2])}))
    writer.apply(metrics("a", [5.5], [3.0], ts=3))
    writer.apply(Batch(metrics={"a": MetricColumn([NO_STEP], [4.0], [4])}))
    assert points(store, writer, "a")[0] == [0.0, 1.0, 5.5, 6.5]


def test_type_of_a_path_is_fixed(store: Store) -> None:
    writer = new_run(store)
    writer.apply(Batch(ops=[Assign("x", "float", 1.0)]))
    issues = writer.apply(metrics("x", [1], [1.0]))
    assert [i.code for i in issues] == ["FIELD_TYPE_CONFLICTING"]
    assert "'x' is a float" in issues[0].message
    assert attr(store, writer.run_pk, "x")[:2] == ("float", 1.0)


def test_sys_paths_are_read_only_but_tags_can_change(store: Store) -> None:
    writer = new_run(store)
    issues = writer.apply(
        Batch(
            ops=[
                Assign("sys/name", "string", "x"),
                ModifySet("sys/tags", ["a", "b"], []),
                ModifySet("sys/tags", [], ["a", "zz"]),
            ]
        )
    )
    assert [i.code for i in issues] == ["FIELD_PATH_NON_WRITABLE"]
    assert attr(store, writer.run_pk, "sys/tags")[2] == '["b"]'


def test_limits_on_values(store: Store) -> None:
    writer = new_run(store)
    issues = writer.apply(
        Batch(
            ops=[
                Assign("s", "string", "x" * (64 * 1024 + 1)),
                Assign("d", "datetime", 10**16),
                Assign("", "int", 1),
                Assign("p" * 1025, "int", 1),
                Assign("ok", "int", 2**62),
            ]
        )
    )
    assert sorted(i.code for i in issues) == [
        "DATETIME_VALUE_OUT_OF_RANGE",
        "FIELD_PATH_EMPTY",
        "FIELD_PATH_EXCEEDS_SIZE_LIMIT",
        "STRING_VALUE_EXCEEDS_SIZE_LIMIT",
    ]
    assert attr(store, writer.run_pk, "ok")[1] == 2**62  # exact 64-bit int


def test_previews_are_replaced_by_committed_points(store: Store) -> None:
    writer = new_run(store)
    writer.apply(metrics("a", [1], [1.0]))
    issues = writer.apply(
        Batch(
            previews=[
                PreviewPoint("a", 2 * M, 0.5, 5000, 0.2),
                PreviewPoint("a", 3 * M, 0.6, 5000, 0.3),
                PreviewPoint("a", 1 * M, 0.6, 5000, 0.3),
            ]
        )
    )
    assert [i.code for i in issues] == ["SERIES_PREVIEW_STEP_NOT_AFTER_LAST_COMMITTED_STEP"]
    conn = store.connection()
    assert conn.execute("SELECT step, value, completion FROM previews").fetchall() == [
        (2 * M, 0.5, 0.2),
        (3 * M, 0.6, 0.3),
    ]
    writer.apply(metrics("a", [2], [2.0], ts=6000))
    assert conn.execute("SELECT step FROM previews").fetchall() == [(3 * M,)]
    assert attr(store, writer.run_pk, "a")[3] == 2  # previews do not count


def test_fork_inherits_history_and_configs(store: Store) -> None:
    parent = new_run(store, "parent")
    parent.apply(metrics("m", [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]))
    parent.apply(Batch(ops=[Assign("cfg", "int", 7)]))
    parent.apply(
        Batch(points=[PointAppend("log", "string_series", s * M, 1, f"l{s}") for s in (1, 4)])
    )
    child = new_run(store, "child", fork_run_id="parent", fork_step=3 * M)
    assert points(store, child, "m") == ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    issues = child.apply(metrics("m", [3, 4], [9.0, 10.0], ts=0))
    assert [i.code for i in issues] == ["SERIES_STEP_NOT_AFTER_FORK_POINT"]
    assert points(store, child, "m") == ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 10.0])
    _, last, _, count, last_step, fmin, fmax, fsum, _, _ = attr(store, child.run_pk, "m")
    assert (last, count, last_step, fmin, fmax, fsum) == (10.0, 4, 4 * M, 1.0, 10.0, 16.0)
    assert attr(store, child.run_pk, "cfg")[1] == 7
    assert attr(store, child.run_pk, "log")[2:4] == ("l1", 1)
    grandchild = new_run(store, "gc", fork_run_id="child", fork_step=4 * M, inherit_configs=False)
    assert points(store, grandchild, "m")[0] == [1.0, 2.0, 3.0, 4.0]
    assert attr(store, grandchild.run_pk, "cfg") is None
    depth = store.connection().execute("SELECT depth FROM runs WHERE run_id = 'gc'").fetchone()
    assert depth == (2,)


def test_experiment_head_moves_to_the_newest_run(store: Store) -> None:
    new_run(store, "a", experiment_name="exp")
    new_run(store, "b", experiment_name="exp")
    rows = store.connection().execute(
        "SELECT run_id, is_head, experiment_name, short_no FROM runs ORDER BY id"
    )
    assert rows.fetchall() == [("a", 0, "exp", 1), ("b", 1, "exp", 2)]


def test_creating_an_existing_run_resumes_it(store: Store) -> None:
    first = create_run(store, RunSpec("ws/p", "r", experiment_name="e"))
    again = create_run(store, RunSpec("ws/p", "r", experiment_name="e"))
    other = create_run(store, RunSpec("ws/p", "r", experiment_name="other"))
    assert again.pk == first.pk and again.resumed
    assert [i.code for i in again.issues] == ["RUN_DUPLICATE"]
    assert [i.code for i in other.issues] == ["RUN_CONFLICTING"]


def test_invalid_creation_parameters(store: Store) -> None:
    with pytest.raises(ValueError, match=r"RUN_INVALID_CREATION_PARAMETERS.*'a/b'"):
        create_run(store, RunSpec("ws/p", "a/b"))


def test_another_writer_to_the_same_run_is_noticed(store: Store) -> None:
    created = create_run(store, RunSpec("ws/p", "r"))
    one, two = RunWriter(store, created.pk), RunWriter(store, created.pk)
    one.apply(metrics("m", [1, 2], [1.0, 2.0]))
    two.apply(metrics("m", [3], [3.0], ts=5000))
    one.apply(metrics("m", [4], [4.0], ts=6000))
    assert points(store, one, "m")[0] == [1.0, 2.0, 3.0, 4.0]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 50),
            st.floats(allow_nan=True, allow_infinity=True, width=64),
        ),
        min_size=1,
        max_size=80,
    ),
    st.integers(1, 5),
)
def test_random_streams_keep_exactly_the_accepted_points(
    tmp_path_factory: pytest.TempPathFactory, stream: list[tuple[int, float]], flushes: int
) -> None:
    store = Store.open(tmp_path_factory.mktemp("s"))
    # a new run per example: over PostgreSQL every example of the test shares one database
    writer = new_run(store, f"r{uuid.uuid4().hex}")
    expected: dict[int, float] = {}
    last = -1
    for part in np.array_split(np.arange(len(stream)), flushes):
        chunk = [stream[i] for i in part]
        if not chunk:
            continue
        writer.apply(
            Batch(
                metrics={
                    "m": MetricColumn(
                        [s * M for s, _ in chunk], [v for _, v in chunk], [0] * len(chunk)
                    )
                }
            )
        )
        for step, value in chunk:
            if step > last:
                expected[step] = value
                last = step
    got = read_float_points(store.connection(), writer._attrs["m"][0])
    assert (got.steps // M).tolist() == list(expected)
    assert got.values.tobytes() == np.array(list(expected.values())).tobytes()
    finite = [v for v in expected.values() if math.isfinite(v)]
    row = attr(store, writer.run_pk, "m")
    assert row[3] == len(expected) and row[9] == len(finite)
    if finite:
        assert row[5] == min(finite) and row[6] == max(finite)


def test_aggregates_when_a_whole_chunk_is_non_finite(store: Store) -> None:
    writer = new_run(store)
    values = [math.nan] * CHUNK_POINTS + [2.0, 5.0]
    writer.apply(metrics("m", list(range(len(values))), values))
    row = attr(store, writer.run_pk, "m")
    assert row[5:] == (2.0, 5.0, 7.0, 29.0, 2)


def test_deleting_a_parent_leaves_forks_with_their_own_history(store: Store) -> None:
    """Forks of a deleted run become roots: depth and aggregates over what remains."""
    from despina.store.admin import delete_runs

    parent = new_run(store, "parent")
    parent.apply(metrics("m", [1, 2, 3], [100.0, 200.0, 300.0]))
    parent.apply(Batch(points=[PointAppend("log", "string_series", M, 1, "p1")]))
    child = new_run(store, "child", fork_run_id="parent", fork_step=2 * M)
    child.apply(metrics("m", [3, 4], [3.0, 4.0]))
    grandchild = new_run(store, "gc", fork_run_id="child", fork_step=3 * M)
    grandchild.apply(metrics("m", [5], [5.0]))
    assert attr(store, grandchild.run_pk, "m")[3] == 4  # 2 inherited from parent, 1 from child
    with store.write() as conn:
        assert delete_runs(conn, [parent.run_pk]) == 1
    assert points(store, child, "m") == ([3.0, 4.0], [3.0, 4.0])
    _, last, _, count, last_step, fmin, fmax, fsum, _, fcount = attr(store, child.run_pk, "m")
    assert (last, count, last_step, fmin, fmax, fsum, fcount) == (4.0, 2, 4 * M, 3.0, 4.0, 7.0, 2)
    assert attr(store, child.run_pk, "log")[2:4] == (None, 0)  # only inherited: now absent
    _, last, _, count, _, fmin, fmax, fsum, _, _ = attr(store, grandchild.run_pk, "m")
    assert (last, count, fmin, fmax, fsum) == (5.0, 2, 3.0, 5.0, 8.0)
    depths = dict(store.connection().execute("SELECT run_id, depth FROM runs").fetchall())
    assert depths == {"child": 0, "gc": 1}


def _chunk_sizes(store: Store, writer: RunWriter, path: str) -> list[int]:
    conn = store.connection()
    (attr_id,) = conn.execute(
        "SELECT id FROM attributes WHERE run_id = ? AND path = ?", (writer.run_pk, path)
    ).fetchone()
    lo = attr_id << 24
    return [
        n
        for (n,) in conn.execute(
            "SELECT n FROM chunks WHERE id BETWEEN ? AND ? ORDER BY id", (lo, lo + (1 << 24) - 1)
        )
    ]


def test_flushes_append_pieces_and_merge_them_into_full_chunks(store: Store) -> None:
    """A flush writes only its new points; pieces merge into full chunks, stored points are
    read back the same, and the rows of a series stay few."""
    from despina.store.writer import MAX_PIECES

    writer = new_run(store)
    expected: list[float] = []
    for flush in range(300):  # 7 points per flush: 2,100 points
        steps = [float(flush * 7 + i) for i in range(7)]
        values = [s * 0.5 for s in steps]
        expected += values
        writer.apply(metrics("m", steps, values))
        sizes = _chunk_sizes(store, writer, "m")
        full = [n for n in sizes if n == CHUNK_POINTS]
        short = sizes[len(full) :]
        assert sizes[: len(full)] == full  # full chunks first, then the pieces
        assert all(n < CHUNK_POINTS for n in short) and len(short) <= MAX_PIECES
        assert sum(sizes) == len(expected)
    assert points(store, writer, "m") == ([float(i) for i in range(2100)], expected)


def test_a_new_writer_continues_after_the_pieces(store: Store) -> None:
    writer = new_run(store)
    writer.apply(metrics("m", [0, 1, 2], [0.0, 1.0, 2.0]))
    writer.apply(metrics("m", [3, 4], [3.0, 4.0]))
    assert _chunk_sizes(store, writer, "m") == [3, 2]
    again = RunWriter(store, writer.run_pk)  # another process, or after a restart
    again.apply(metrics("m", [5], [5.0]))
    again.apply(metrics("m", [4, 6], [9.0, 6.0]))  # step 4 is not after the last step: dropped
    assert _chunk_sizes(store, again, "m") == [3, 2, 1, 1]
    assert points(store, again, "m") == ([0, 1, 2, 3, 4, 5, 6], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert attr(store, again.run_pk, "m")[3] == 7  # count


def test_a_wide_batch_of_new_series_matches_series_written_one_by_one(store: Store) -> None:
    """New series created together (one statement) with figures computed for every column at
    once: same points, aggregates and issues as series written one at a time."""
    width, n = 40, 25
    rng = np.random.default_rng(3)
    values = rng.normal(size=(width, n)) * 1e3
    values[1, 3], values[2, :], values[3, 0], values[4, 5] = math.nan, math.inf, -math.inf, -0.0
    steps = list(range(n))
    stamps = [1_000 + i for i in range(n)]
    columns = {
        f"w/m{j}": MetricColumn([s * M for s in steps], values[j], stamps) for j in range(width)
    }
    columns["sys/bad"] = MetricColumn([0], [1.0], [1_000])  # reported once, nothing stored
    wide = new_run(store, "wide")
    issues = wide.apply(Batch(metrics=columns))
    assert [(i.code, i.path) for i in issues] == [("FIELD_PATH_NON_WRITABLE", "sys/bad")]
    narrow = new_run(store, "narrow")
    for j in range(width):
        narrow.apply(Batch(metrics={f"w/m{j}": columns[f"w/m{j}"]}))
    for j in range(width):
        got_steps, got = points(store, wide, f"w/m{j}")
        assert got_steps == steps
        assert np.array_equal(np.array(got), values[j], equal_nan=True)
        mine, theirs = attr(store, wide.run_pk, f"w/m{j}"), attr(store, narrow.run_pk, f"w/m{j}")
        assert mine[:7] == theirs[:7] and mine[9] == theirs[9]  # type .. fmax, fcount
        if theirs[9]:  # sums (NULL without a finite value) may differ in summation order
            assert mine[7:9] == pytest.approx(theirs[7:9], rel=1e-12)
        else:
            assert mine[7:9] == theirs[7:9] == (None, None)
    # the series go on in a later flush, in a new writer too (state read back from the store)
    again = RunWriter(store, wide.run_pk)
    for writer in (wide, again):
        more = {
            f"w/m{j}": MetricColumn([(n + (writer is again)) * M], [float(j)], [5_000])
            for j in range(width)
        }
        assert writer.apply(Batch(metrics=more)) == []
    assert points(store, again, "w/m7")[0] == [*steps, n, n + 1]
    assert attr(store, again.run_pk, "w/m7")[3] == n + 2
