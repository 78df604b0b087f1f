"""Compiler: SQL shapes and bound parameters, and evaluation semantics (``spec/nql.md`` §5–§7)
checked on rows inserted straight into a store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nql_testdata import Attr, Dataset, RunSpec, backend, ms, open_dataset

from despina.nql import compile_query, evaluate, install_functions, parse
from despina.nql import resolve as resolve_module
from despina.nql.ast import Attribute, Comparison, Literal
from despina.nql.resolve import resolve
from despina.store.nql.compiler import FilterCompiler
from despina.store.nql.postgres import PostgresFilterCompiler
from despina.store.nql.sqlite import SqliteFilterCompiler

NOW = ms("2024-06-01T00:00:00Z")
SOURCE = "attributes a INDEXED BY attributes_for_filters"
ATTR = f"r.id IN (SELECT a.run_id FROM {SOURCE} WHERE a.path = ? AND "
"""A clause that must hold on its own: it drives the query as one scan of its path."""
PROBE = f"EXISTS (SELECT 1 FROM {SOURCE} WHERE a.path = ? AND a.run_id = r.id AND "
"""Any other clause: probed for each run."""

SQL = [
    ("", "1", []),
    ("`x`:float > 1", ATTR + "(a.type IN ('float', 'int') AND a.num > ?))", ["x", 1]),
    ('`x`:string != "a"', ATTR + "(a.type = 'string' AND a.text != ?))", ["x", "a"]),
    ('`x`:string CONTAINS "a"', ATTR + "(a.type = 'string' AND instr(a.text, ?) > 0))", ["x", "a"]),
    (
        '`x`:stringSeries NOT MATCHES "^a"',
        "NOT " + PROBE + "(a.type = 'string_series' AND (substr(a.text, 1, 1) = ? AND "
        "nql_regexp(?, a.text))))",
        ["x", "a", "^a"],
    ),
    (  # set membership drives from the element's rows
        '`sys/tags`:stringSet CONTAINS "t"',
        "r.id IN (SELECT a.run_id FROM set_members m CROSS JOIN attributes a ON a.id = m.attr_id "
        "WHERE m.value = ? AND a.path = ? AND a.type = 'string_set')",
        ["t", "sys/tags"],
    ),
    (  # and is one lookup when probed
        '`sys/tags`:stringSet NOT CONTAINS "t"',
        "NOT " + PROBE + "(a.type = 'string_set' AND EXISTS (SELECT 1 FROM set_members m "
        "WHERE m.value = ? AND m.attr_id = a.id)))",
        ["sys/tags", "t"],
    ),
    (  # cheapest first; the first attribute clause that must hold drives
        '`n`:string MATCHES "a" AND NOT `m`:float EXISTS AND `sys/failed`:bool = false '
        "AND `x`:float > 1",
        "(r.failed = ? AND NOT ("
        + PROBE
        + "a.type = 'float')) AND "
        + ATTR
        + "(a.type IN ('float', 'int') AND a.num > ?)) AND "
        + PROBE
        + "(a.type = 'string' AND nql_regexp(?, a.text))))",
        [0, "m", "x", 1, "n", "a"],
    ),
    (  # a regular expression anchored on a literal prefix
        '`x`:string MATCHES "^ab*"',
        ATTR + "(a.type = 'string' AND (substr(a.text, 1, 1) = ? AND nql_regexp(?, a.text))))",
        ["x", "a", "^ab*"],
    ),
    (  # inside OR every clause is a probe
        "`x`:float > 1 OR `y`:float > 1",
        "("
        + PROBE
        + "(a.type IN ('float', 'int') AND a.num > ?)) OR "
        + PROBE
        + "(a.type IN ('float', 'int') AND a.num > ?)))",
        ["x", 1, "y", 1],
    ),
    ("`x`:floatSeries EXISTS", ATTR + "(a.type = 'float_series' AND a.count > 0))", ["x"]),
    ("`x`:bool = True", ATTR + "(a.type = 'bool' AND a.num = ?))", ["x", 1]),
    ("min(`x`:floatSeries) <= 0", ATTR + "(a.type = 'float_series' AND a.fmin <= ?))", ["x", 0]),
    (
        "average(`x`):float > 0",
        ATTR + "(a.type = 'float_series' AND (a.fsum / a.fcount) > ?))",
        ["x", 0],
    ),
    ("`sys/creation_time`:datetime >= -1d", "r.creation_ms >= ?", [NOW - 86_400_000]),
    (
        '`sys/id`:string = "K-1"',
        "COALESCE(r.object_id, p.project_key || '-' || r.short_no) = ?",
        ["K-1"],
    ),
    ('NOT `sys/experiment/name`:string = "e"', "NOT (COALESCE(r.experiment_name = ?, 0))", ["e"]),
    ("`sys/experiment/name` EXISTS", "(r.experiment_name IS NOT NULL)", []),
    ("`sys/state`:experimentState = running", "(r.closed = 0 AND r.ping_ms >= ? - 300000)", [NOW]),
    ("`sys/state`:experimentState = idle", "NOT (r.closed = 0 AND r.ping_ms >= ? - 300000)", [NOW]),
    (
        "`sys/failed`:bool = true AND `sys/archived`:bool = false OR `v`:gitRef = 1",
        "(r.failed = ? AND r.archived = ?)",
        [1, 0],
    ),
    (
        "`v`:artifact = 9a11",
        ATTR + "(a.type = 'artifact' AND json_extract(a.text, '$.hash') = ?))",
        ["v", "9a11"],
    ),
    ("`x`:fileRef NOT EXISTS", "NOT " + PROBE + "a.type = 'file')", ["x"]),
]


@pytest.mark.parametrize(("text", "sql", "params"), SQL)
def test_sql(text: str, sql: str, params: list[Any]) -> None:
    assert compile_query(text, now_ms=NOW) == (sql, params)


def test_inputs_text_tree_or_resolved() -> None:
    text = '`sys/size`:float > "800 kb"'
    expected = compile_query(text, now_ms=NOW)
    assert compile_query(parse(text), now_ms=NOW) == expected
    assert compile_query(resolve(text, now_ms=NOW), now_ms=NOW) == expected
    assert SqliteFilterCompiler(NOW).compile(resolve(text, now_ms=NOW)) == expected
    tree = Comparison(Attribute("sys/size", "float"), ">", Literal("800 kb"))
    assert compile_query(tree, now_ms=NOW) == expected


# SQL text every statement may contain whatever the value: a value that happens to be a
# piece of it (say "run_" of "a.run_id") proves nothing
_VOCABULARY = (
    " ".join(
        compile_query(f"`x` {op} {value}", now_ms=NOW)[0]
        for op in ("==", "CONTAINS")
        for value in ('"zz"', '"1"', '"true"', '"2024-01-01"')
    )
    + compile_query('`sys/name` NOT CONTAINS "zz"', now_ms=NOW)[0]
)


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_values_are_always_bound(value: str) -> None:
    for text in (
        f"`x` == {_quote(value)}",
        f"`x` CONTAINS {_quote(value)}",
        f"`sys/name` NOT CONTAINS {_quote(value)}",
    ):
        sql, params = compile_query(text, now_ms=NOW)
        assert value in params
        assert sql.count("?") == len(params)
        if len(value) > 3 and value not in _VOCABULARY:
            assert value not in sql


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_every_resolved_node_has_a_compiler_rule() -> None:
    kinds = [getattr(resolve_module, name) for name in ("AllOf", "AnyOf", "NotOf", "Const",
             "AttrTest", "SysTest", "StateTest")]  # fmt: skip
    assert set(kinds) == set(resolve_module.Resolved.__args__)  # type: ignore[attr-defined]
    for kind in kinds:
        assert callable(getattr(FilterCompiler, f"visit_{kind.__name__}", None)), kind
    for dialect in (SqliteFilterCompiler(0), PostgresFilterCompiler(0, None, None)):
        with pytest.raises(TypeError, match="cannot compile"):
            dialect.visit(object())  # type: ignore[arg-type]


def test_regexp_function() -> None:
    conn = sqlite3.connect(":memory:")
    install_functions(conn)
    rows = conn.execute(
        "SELECT nql_regexp('exp\\d', 'my-exp1'), nql_regexp('^exp', 'my-exp'), "
        "nql_regexp('(?i)EXP', 'exp'), nql_regexp('a', NULL), nql_regexp('a(', 'a')"
    ).fetchone()
    assert rows == (1, 0, 1, 0, 0)


# -- semantics on stored rows ------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
RUNS = [
    RunSpec(
        "r1",
        1,
        experiment_name="Blobfish",
        creation_ms=ms("2024-01-01T00:00:00.001Z"),
        tags={'b"q', "日本", "a,b"},
        attrs={
            "x": Attr("float", 1.0),
            "s": Attr("string", "a"),
            "n": Attr("float", NAN),
            "big": Attr("int", 2**53 + 1),
            "m": Attr("float_series", [NAN, 1.0, INF]),
            "ss": Attr("string_series", ["error", "fine"]),
            "e": Attr("float_series", []),
        },
    ),
    RunSpec(
        "r2",
        2,
        experiment_name="blobfish",
        closed=False,
        ping_ms=NOW - 1000,
        attrs={
            "x": Attr("int", 1),
            "s": Attr("string", "b"),
            "n": Attr("float", 2.0),
            "m": Attr("float_series", [NAN]),
            "flag": Attr("bool", True),
            "f": Attr("file", "path/to/f"),
            "h": Attr("histogram_series", [{"v": 1}]),
        },
    ),
    RunSpec(
        "r3",
        3,
        tags={"b"},
        creation_ms=ms("2024-01-01T00:00:00Z"),
        attrs={
            "x": Attr("string", "1"),
            "s": Attr("string", "é"),
            "m": Attr("float_series", [-INF, 2.0]),
            "flag": Attr("bool", False),
            "ss": Attr("string_series", ["fine", "Error: disk"]),
        },
    ),
    RunSpec(
        "r4",
        4,
        experiment_name="exp-12",
        attrs={
            "x": Attr("bool", True),
            "s": Attr("string", "😀"),
            "t": Attr("string_set", {"x"}),
            "d": Attr("datetime", ms("2024-01-01")),
        },
    ),
    # an artifact row (Run.track_artifact): NQL compares its content hash
    RunSpec("r5", 5, attrs={"s": Attr("string", "Z"), "x": Attr("artifact", "9a11")}),
]
ALL = {"r1", "r2", "r3", "r4", "r5"}

SEMANTICS = [
    # §7.2 missing attributes
    # r4's bool: "1" is not a boolean, so false rather than true; r5's artifact hash differs
    ('`x` != "1"', {"r5"}),
    ('NOT (`x` == "1")', {"r4", "r5"}),
    ("`x` EXISTS", ALL),
    ("`x`:artifact = 9a11", {"r5"}),
    ('`x` == "9a11"', {"r5"}),
    ("`x`:float != 2", {"r1", "r2"}),
    ("NOT `x`:float = 2", ALL),
    ('`s` NOT CONTAINS "a"', {"r2", "r3", "r4", "r5"}),
    ('`q` NOT CONTAINS "a"', ALL),
    ('`q` NOT MATCHES "a"', ALL),
    ("`q` NOT EXISTS", ALL),
    ("`q` EXISTS", set()),
    # numbers: int ~ float, exact integers, NaN, inf
    ('`x` == "1"', {"r1", "r2", "r3"}),
    ('`x` == "1.0"', {"r1", "r2"}),
    ("`x`:int = 1", {"r1", "r2"}),
    ("`x` = true", {"r4"}),
    ("`big`:int = 9007199254740993", {"r1"}),
    ("`big`:int = 9007199254740992", set()),
    ("`n`:float = nan", None),
    ('`n` = "nan"', set()),
    ("`n`:float != 5", {"r2"}),
    ("`n`:float < 5", {"r2"}),
    ("NOT `n`:float < 5", {"r1", "r3", "r4", "r5"}),
    ("`m`:floatSeries > 1e308", {"r1"}),
    ("last(`m`):float < 0", set()),
    ("min(`m`:floatSeries) < 0", set()),  # -inf is not finite
    ("max(`m`:floatSeries) >= 2", {"r3"}),
    ("average(`m`:floatSeries) = 1", {"r1"}),
    ("variance(`m`:floatSeries) = 0", {"r1", "r3"}),
    ("`m`:floatSeries EXISTS", {"r1", "r2", "r3"}),
    ("`e` EXISTS", set()),  # a series without committed points does not exist
    ("`e` NOT EXISTS", ALL),
    ("`f`:fileRef EXISTS", {"r2"}),
    ("`h` EXISTS", {"r2"}),
    ("`flag`:bool != true", {"r3"}),
    # strings: exact, code-point order, case-sensitive substring, unanchored regex
    ('`s` > "Z"', {"r1", "r2", "r3", "r4"}),
    ('`s` < "é"', {"r1", "r2", "r5"}),
    ('`s`:string >= "😀"', {"r4"}),
    ('`sys/name` CONTAINS "blobfish"', {"r2"}),
    ('`sys/name` MATCHES "(?i)^blob"', {"r1", "r2"}),
    (r'`sys/name` MATCHES "exp-\d+$"', {"r4"}),
    ('`sys/name` = ""', {"r3", "r5"}),
    ('`ss` CONTAINS "rror"', {"r3"}),
    ('last(`ss`) = "fine"', {"r1"}),
    ('`ss`:stringSeries MATCHES "^E"', {"r3"}),
    # anchored patterns are pre-filtered on their literal prefix, with the same answers
    ('`sys/name` MATCHES "^blob"', {"r2"}),
    ('`sys/name` MATCHES "^Blobx?fish"', {"r1"}),
    ('`sys/name` MATCHES "^exp|fish$"', {"r1", "r2", "r4"}),
    ('`s` MATCHES "^😀"', {"r4"}),
    ('`sys/tags` CONTAINS "a,b" AND `sys/name` MATCHES "^Blob"', {"r1"}),
    # string sets: exact elements
    ('`sys/tags` CONTAINS "b\\"q"', {"r1"}),
    ('`sys/tags` CONTAINS "日本"', {"r1"}),
    ('`sys/tags` CONTAINS "b"', {"r3"}),
    ('`sys/tags` NOT CONTAINS "b"', {"r1", "r2", "r4", "r5"}),
    ('`t` CONTAINS "x"', {"r4"}),
    ("`sys/tags`:stringSet EXISTS", ALL),
    # datetimes at millisecond precision, nullable sys columns, sys/state
    ('`sys/creation_time` > "2024-01-01T00:00:00Z"', {"r1"}),
    ('`sys/creation_time`:datetime = "2024-01-01T00:00:00.0019Z"', {"r1"}),
    ('`d` = "2024-01-01T09:00:00+09:00"', {"r4"}),
    ('`sys/experiment/name`:string != "exp-12"', {"r1", "r2"}),
    ('NOT `sys/experiment/name` = "exp-12"', {"r1", "r2", "r3", "r5"}),
    ("`sys/experiment/name` NOT EXISTS", {"r3", "r5"}),
    ("`sys/forking/parent` EXISTS", set()),
    ("`sys/forking/step` < 1", set()),
    ("`sys/state` = running", {"r2"}),
    ("`sys/state` != running", {"r1", "r3", "r4", "r5"}),
    ("`sys/state` = succeeded", set()),
    ("`sys/state` != succeeded", ALL),
]


@pytest.fixture(scope="module")
def dataset(nql_location: str, nql_home: Path) -> Iterator[Dataset]:
    data = open_dataset(nql_location, nql_home, RUNS)
    yield data
    data.close()


@pytest.mark.parametrize(("text", "expected"), SEMANTICS)
def test_semantics(dataset: Dataset, text: str, expected: set[str] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="non-finite"):
            dataset.select(text, NOW)
        return
    assert dataset.select(text, NOW) == expected
    by_reference = {
        run.run_id for run in dataset.runs if evaluate(text, dataset.view(run, NOW), NOW)
    }
    assert by_reference == expected


def test_runs_on_the_session_backend(dataset: Dataset) -> None:
    """The datasets live in the backend of the session (``DESPINA_TEST_STORE``)."""
    assert dataset.store is not None
    assert dataset.store.dialect == backend()
