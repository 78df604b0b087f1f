"""The first call in a process reads only what it needs (issue 16): the matched runs' rows of
the selected paths, with the columns the call uses, never a whole project to warm a cache."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import query_data as data

import despina.query as nq
from despina.query import attrs, runs
from despina.query.attrs import READ_STATS, read_attr_rows, read_columns
from despina.query.filters import Attribute, Filter
from despina.query.service import QueryService
from despina.store import Store
from despina.store.batch import Assign, Batch, MetricColumn
from despina.store.runs import RunSpec, create_run
from despina.store.sql import attribute_columns
from despina.store.writer import RunWriter

RUNS = 2_000
PARAMS = 20
METRICS = 5
PROJECT = "ws/first"


def _p00(i: int) -> float:
    return ((i * 7919) % 1000) / 1000


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """2,000 runs × (20 params + 5 one-step metrics), written straight through the writer; the
    store's location."""
    with data.shared_store(request, tmp_path_factory.mktemp("first-call")) as location:
        _build(Store.open(url=location))
        yield location


def _build(store: Store) -> None:
    one = np.array([0], np.int64)
    for i in range(RUNS):
        made = create_run(store, RunSpec(project=PROJECT, run_id=f"r{i:04d}", creation_ms=i))
        ops = [Assign("params/p00", "float", _p00(i))]
        ops += [Assign(f"params/p{j:02d}", "float", float(i + j)) for j in range(1, PARAMS)]
        metrics = {
            f"metrics/m{j}": MetricColumn(one, np.array([i / 7 + j]), one + 1_000)
            for j in range(METRICS)
        }
        RunWriter(store, made.pk).apply(Batch(ops=ops, metrics=metrics))


@pytest.fixture()
def fresh(home: str) -> Iterator[str]:
    """A process that has not queried yet: no cached rows, the store's own connection."""
    service = QueryService.for_home(url=home)
    service.attributes.clear()
    service.tables.clear()
    nq.set_store(home)
    yield home
    nq.set_store(None)


def _traced(home: str) -> list[str] | None:
    """The statements the store's connection runs from now on (the embedded store only)."""
    store = QueryService.for_home(url=home).store
    if store.dialect != "sqlite":
        return None
    statements: list[str] = []
    store.connection().set_trace_callback(statements.append)
    return statements


def _untrace(home: str) -> None:
    store = QueryService.for_home(url=home).store
    if store.dialect == "sqlite":
        store.connection().set_trace_callback(None)


def test_filtered_table_reads_only_the_matched_runs_selected_paths(fresh: str) -> None:
    matched = sum(_p00(i) > 0.5 for i in range(RUNS))
    statements = _traced(fresh)
    before = READ_STATS.rows
    try:
        table = runs.fetch_runs_table(
            project=PROJECT,
            runs=Filter.gt(Attribute("params/p00", "float"), 0.5),
            attributes=["params/p01", "metrics/m0"],
        )
    finally:
        _untrace(fresh)
    assert table.shape == (matched, 2)
    # every statement that reads attribute rows in bulk names the runs and the paths it wants
    if statements is not None:
        reads = [s for s in statements if re.search(r"FROM attributes a WHERE a.run_id IN", s)]
        assert reads, statements
        for sql in reads:
            assert "a.path IN" in sql, sql
    assert READ_STATS.rows - before == matched * 2  # not matched × 25, not 2,000 × 25


def test_regex_columns_read_only_the_paths_they_match(fresh: str) -> None:
    before = READ_STATS.rows
    table = runs.fetch_runs_table(
        project=PROJECT, runs=["r0001", "r0002"], attributes=r"^params/p0[0-4]$"
    )
    assert table.shape == (2, 5)
    assert READ_STATS.rows - before == 2 * 5


def test_first_fetch_metrics_reads_only_float_series_rows(fresh: str) -> None:
    before = READ_STATS.rows
    frame = runs.fetch_metrics(project=PROJECT, runs=".*", attributes="^metrics/m[01]$")
    assert frame.shape == (RUNS, 2)
    assert READ_STATS.rows - before == RUNS * 2
    assert frame.loc[("r0014", 0.0), "metrics/m1"] == 14 / 7 + 1


def test_repeated_call_reads_nothing_again(fresh: str) -> None:
    call = {"project": PROJECT, "runs": ".*", "attributes": r"^params/p0[0-2]$"}
    first = runs.fetch_runs_table(**call)
    after_first = READ_STATS.rows
    again = runs.fetch_runs_table(**call)
    assert READ_STATS.rows == after_first  # served from what the first call kept
    assert first.equals(again)


def test_columnar_read_equals_the_row_wise_read(tmp_path: Path) -> None:
    """Every column, bit for bit: NaN, ±inf, -0.0, subnormals, integers past 2**53, text
    with the separators, a path holding the layout separator (row-wise fallback)."""
    store = Store.open(tmp_path)  # DESPINA_STORE (PostgreSQL) wins when set
    floats = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 0.1, 1 / 3, 1.7976931348623157e308]
    floats += [8.954980282160279e-297, 1.4447524204172303e265]
    pks = []
    for i, name in enumerate(["a", "b", "c"]):
        made = create_run(store, RunSpec(project="ws/edge", run_id=name, creation_ms=i))
        pks.append(made.pk)
        ops = [Assign(f"f/{k}", "float", v) for k, v in enumerate(floats)]
        ops += [
            Assign("i/big", "int", 2**62 + 1 + i),
            Assign("i/neg", "int", -(2**60) - 3),
            Assign("b/t", "bool", True),
            Assign("s/comma", "string", "x,y\x01z"),
            Assign("s/empty", "string", ""),
        ]
        if name == "c":
            ops.append(Assign("weird\x01path", "string", "v"))
        one = np.array([5_000_000], np.int64)
        metrics = {"m/one": MetricColumn(one, np.array([-0.0]), one)}
        RunWriter(store, made.pk).apply(Batch(ops=ops, metrics=metrics))
    with store.read() as conn:
        for chosen in (pks[:2], pks):
            expected = read_attr_rows(conn, chosen)
            found = read_columns(conn, chosen)
            _assert_same_rows(expected, found)
            numeric = read_columns(conn, chosen, text=False, series=False)
            _assert_same_rows(expected, numeric, columns=("num_f", "num_i"))
            texts = read_columns(conn, chosen, values=False, series=False, types=["string"])
            strings = expected.take(expected.type == attrs.TYPE_CODE["string"])
            _assert_same_rows(strings, texts, columns=("text",))


def _assert_same_rows(
    expected: attrs.AttrRows, found: attrs.AttrRows, columns: tuple[str, ...] | None = None
) -> None:
    def keyed(rows: attrs.AttrRows) -> dict[tuple[int, str], dict[str, object]]:
        out = {}
        for i in range(len(rows)):
            key = (int(rows.run[i]), rows.paths[int(rows.path[i])])
            out[key] = {
                "type": int(rows.type[i]),
                "attr_id": int(rows.attr_id[i]),
                "num_f": np.float64(rows.num_f[i]).tobytes(),
                "num_i": int(rows.num_i[i]),
                "text": rows.text[i],
                "count": int(rows.count[i]),
                "last_step": int(rows.last_step[i]),
                "last_ts": int(rows.last_ts[i]),
            }
        return out

    left, right = keyed(expected), keyed(found)
    assert left.keys() == right.keys()
    for key, cells in left.items():
        for name in columns or tuple(cells):
            assert cells[name] == right[key][name], (key, name)
        assert cells["type"] == right[key]["type"], key


def test_many_store_paths_fall_back_to_every_path(
    fresh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the path limit a regex selection reads all paths of its runs, same table."""
    call = {"project": PROJECT, "runs": ["r0003", "r0004"], "attributes": r"^params/p0[0-4]$"}
    expected = runs.fetch_runs_table(**call)
    QueryService.for_home(url=fresh).attributes.clear()
    QueryService.for_home(url=fresh).tables.clear()
    monkeypatch.setattr(attribute_columns, "STORE_PATHS_LIMIT", 3)
    before = READ_STATS.rows
    found = runs.fetch_runs_table(**call)
    store = QueryService.for_home(url=fresh).store
    with store.read() as conn:
        (every,) = conn.execute(
            "SELECT count(*) FROM attributes a JOIN runs r ON r.id = a.run_id "
            "WHERE r.run_id IN ('r0003', 'r0004')"
        ).fetchone()
    assert every >= 2 * (PARAMS + METRICS)
    assert READ_STATS.rows - before == every
    assert found.equals(expected)
