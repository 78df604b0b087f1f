"""Where the two databases differ underneath, NQL must not: ints beyond 2^53 against ints, floats
and doubles, NaN (NULL in both stores, and computed NaN), text order, RE2 patterns (PostgreSQL's
own regular expressions are another dialect), errors. Each query runs on the session's backend
(``DESPINA_TEST_STORE``) and is checked against a fixed answer and the reference evaluator; the
PostgreSQL dialect's SQL is also checked in shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nql_testdata import Attr, Dataset, RunSpec, ms, open_dataset

from despina.errors import NqlError
from despina.nql import evaluate
from despina.nql.resolve import resolve
from despina.store.nql import compile_filter
from despina.store.nql.postgres import PostgresFilterCompiler

NOW = ms("2024-06-01T00:00:00Z")
NAN, INF = float("nan"), float("inf")
EXACT = 2**53  # the last of the ints every double holds
# texts around the 64 characters of a text PostgreSQL's filter index holds (attributes.text_head)
X62Y, X63, X64, X65, X70 = "x" * 62 + "y", "x" * 63, "x" * 64, "x" * 65, "x" * 70
E30, E32, E40 = "é" * 30, "é" * 32, "é" * 40
BELOW_2_512 = 1.3407807929942596e154  # the double below 2^512: its square is the largest double
RUNS = [
    RunSpec(
        "r1",
        1,
        experiment_name="exp-1",
        attrs={
            "i": Attr("int", EXACT + 1),
            "f": Attr("float", float(EXACT)),
            "s": Attr("string", "a cat sat"),
            "m": Attr("float_series", [1.0, float(EXACT)]),
            "w": Attr("string_series", ["x", "catalogue"]),
            "v": Attr("float_series", [1e200, 1e200]),  # sum of squares overflows: variance NaN
            "u": Attr("float_series", [5e-324, 0.0]),  # the average underflows to 0
            "h": Attr("string", "x" * 63),  # texts around PostgreSQL's 64-character head
        },
        tags={"t", "x" * 70},
    ),
    RunSpec(
        "r2",
        2,
        experiment_name="Exp-22",
        attrs={
            "i": Attr("int", 2**63 - 1),
            "f": Attr("float", NAN),
            "s": Attr("string", "concat"),
            "m": Attr("float_series", [NAN, NAN]),  # no finite value: no aggregates
            "w": Attr("string_series", ["cat"]),
            "v": Attr("float_series", [1.0, 3.0]),
            "u": Attr("float_series", [1e-170]),  # its square underflows to 0
            "h": Attr("string", "x" * 64),
        },
        tags={"t"},
    ),
    RunSpec(
        "r3",
        3,
        attrs={
            "i": Attr("int", -(EXACT + 1)),
            "f": Attr("float", 0.1),
            "s": Attr("string", "cat"),
            "m": Attr("float_series", [-float(EXACT), 0.5]),
            "w": Attr("string_series", ["B"]),
            "u": Attr("float_series", [BELOW_2_512, BELOW_2_512]),  # squares near overflow
            "h": Attr("string", "x" * 65),
        },
    ),
    RunSpec(
        "r4",
        4,
        experiment_name="exp-٣",
        attrs={
            "i": Attr("int", 3),
            "f": Attr("float", INF),
            "s": Attr("string", "B"),
            "u": Attr("float_series", [-1e-160, 1e-160]),
            "h": Attr("string", "x" * 63 + "é"),  # 64 characters, 65 bytes
        },
    ),
    RunSpec(
        "r5",
        5,
        attrs={
            "s": Attr("string", "é"),
            "f": Attr("float", 2.5),
            "u": Attr("float_series", [1e-155, 3e-155]),
            "h": Attr("string", "é" * 40),
        },
    ),
]
ALL = {"r1", "r2", "r3", "r4", "r5"}

QUERIES = [
    # ints beyond 2^53: exact against ints, against floats and against doubles
    (f"`i`:int = {EXACT + 1}", {"r1"}),
    (f"`i`:int = {EXACT}", set()),
    (f"`i`:int > {EXACT}", {"r1", "r2"}),
    (f"`i`:float > {EXACT}.0", {"r1", "r2"}),
    (f"`i`:int < -{EXACT}", {"r3"}),
    ("`i`:int = 9223372036854775807", {"r2"}),
    ("`i`:int < 9223372036854775808.0", {"r1", "r2", "r3", "r4"}),
    (f"`f`:float = {EXACT + 1}", set()),
    (f"`f`:float != {EXACT + 1}", {"r1", "r3", "r4", "r5"}),
    (f"`f`:float < {EXACT + 1}", {"r1", "r3", "r5"}),
    (f"`f`:float <= {EXACT - 1}", {"r3", "r5"}),
    (f"`f`:float >= {EXACT + 1}", {"r4"}),
    (f"`f`:float = {EXACT}", {"r1"}),
    (f"max(`m`:floatSeries) < {EXACT + 1}", {"r1", "r3"}),
    (f"max(`m`:floatSeries) = {EXACT + 1}", set()),
    (f"max(`m`:floatSeries) != {EXACT + 1}", {"r1", "r3"}),
    (f"max(`m`:floatSeries) > {EXACT + 1}", set()),
    (f"min(`m`:floatSeries) <= -{EXACT + 1}", set()),
    (f"min(`m`:floatSeries) > -{EXACT + 1}", {"r1", "r3"}),
    (f"min(`m`:floatSeries) = -{EXACT}", {"r3"}),
    # floats compare as floats: 0.1 is the double nearest 0.1, on both sides
    ("`f`:float = 0.1", {"r3"}),
    ("`f`:float > 0.1", {"r1", "r4", "r5"}),
    ("`f`:float < 0.10000000000000002", {"r3"}),
    ("`f`:float > 1e308", {"r4"}),
    # NaN never compares true: stored NaN, a series without finite values, computed NaN
    ("`f`:float < 0", set()),
    ("NOT `f`:float >= 0", {"r2"}),
    ("`f`:float EXISTS", ALL),
    ("average(`m`:floatSeries) > -1e300", {"r1", "r3"}),
    ("variance(`m`:floatSeries) >= 0", {"r1", "r3"}),
    ("variance(`v`:floatSeries) >= 0", {"r2"}),
    ("NOT variance(`v`:floatSeries) >= 0", ALL - {"r2"}),
    ("variance(`v`:floatSeries) = 1", {"r2"}),
    ("average(`v`:floatSeries) = 1e200", {"r1"}),
    # IEEE arithmetic where PostgreSQL's would raise errors (underflow to 0, overflow to inf)
    ("average(`u`:floatSeries) = 0", {"r1", "r4"}),
    ("average(`u`:floatSeries) > 0", {"r2", "r3", "r5"}),
    ("variance(`u`:floatSeries) = 0", {"r1", "r2"}),
    ("variance(`u`:floatSeries) > 1e308", {"r3"}),
    ("variance(`u`:floatSeries) > 0", {"r3", "r4", "r5"}),
    ("variance(`u`:floatSeries) < 1e-315", {"r1", "r2", "r4"}),
    # text in code point order, whatever the database's locale
    ('`s`:string < "a"', {"r4"}),
    ('`s`:string > "concat"', {"r5"}),
    ('`s`:string >= "B"', ALL),
    # texts longer than the head PostgreSQL's index holds (64 characters) and values around it
    (f'`h`:string = "{X63}"', {"r1"}),
    (f'`h`:string = "{X64}"', {"r2"}),
    (f'`h`:string != "{X63}"', ALL - {"r1"}),
    (f'`h`:string > "{X63}"', {"r2", "r3", "r4", "r5"}),
    (f'`h`:string < "{X64}"', {"r1"}),
    (f'`h`:string <= "{X64}"', {"r1", "r2"}),
    (f'`h`:string > "{X62Y}"', {"r5"}),
    (f'`h`:string = "{E40}"', {"r5"}),
    (f'`h` MATCHES "^{X64}"', {"r2", "r3"}),
    (f'`h` MATCHES "^{X63}"', {"r1", "r2", "r3", "r4"}),
    (f'`h` MATCHES "^{X64}$"', {"r2"}),
    (f'`h` MATCHES "^{X63}é$"', {"r4"}),
    (f'`h` MATCHES "^{E30}"', {"r5"}),
    (f'`h` MATCHES "^{E40}$"', {"r5"}),
    # string sets: the element looked up by path and run, driving or probed, negated
    ('`sys/tags` CONTAINS "t"', {"r1", "r2"}),
    (f'`sys/tags` CONTAINS "{X70}"', {"r1"}),
    ('`sys/tags` CONTAINS "t" AND `f`:float > 0', {"r1"}),
    (f'`sys/tags` CONTAINS "t" AND `sys/tags` CONTAINS "{X70}"', {"r1"}),
    ('`f`:float > 0 AND NOT `sys/tags` CONTAINS "t"', {"r3", "r4", "r5"}),
    ('`sys/tags` CONTAINS "t" OR `i`:int = 3', {"r1", "r2", "r4"}),
    ('`sys/group_tags` CONTAINS "t"', set()),
    # RE2 on both backends: \b is a word boundary, \d is ASCII, flags, anchors, lookaround-free
    (r'`s` MATCHES "\\bcat\\b"', {"r1", "r3"}),
    (r'`s` NOT MATCHES "\\bcat\\b"', {"r2", "r4", "r5"}),
    (r'`s` MATCHES "cat\\b"', {"r1", "r2", "r3"}),
    (r'last(`w`) MATCHES "^cat\\B"', {"r1"}),
    (r'`w`:stringSeries MATCHES "^(?i)[bc]"', {"r1", "r2", "r3"}),
    (r'`sys/name` MATCHES "^exp-\\d+$"', {"r1"}),
    (r'`sys/name` MATCHES "(?i)^exp-\\d"', {"r1", "r2"}),
    (r'`sys/name` MATCHES "^exp-\\pN$"', {"r1", "r4"}),
    (r'`sys/experiment/name` NOT MATCHES "\\d$"', {"r3", "r4", "r5"}),
    ('`s` MATCHES "^é$"', {"r5"}),
    ('`s` MATCHES "^..$"', set()),
    ('`s` MATCHES "^.$"', {"r4", "r5"}),
    ('`s` MATCHES "(?s)a.c"', {"r1"}),
    # literal patterns (plain string tests in SQL on PostgreSQL)
    ('`s` MATCHES "cat"', {"r1", "r2", "r3"}),
    ('`s` MATCHES "^cat"', {"r3"}),
    ('`s` MATCHES "sat$"', {"r1"}),
    ('`s` MATCHES "^cat$"', {"r3"}),
    ('`s` MATCHES ""', ALL),
    ('`s` NOT MATCHES "$"', set()),
    ('`sys/experiment/name` MATCHES "-"', {"r1", "r2", "r4"}),
    ('NOT `sys/experiment/name` MATCHES "^"', {"r3", "r5"}),
    # regular expressions inside the plan: driver, probe, under OR and NOT
    (r'`s` MATCHES "\\bcat" AND `f`:float > 0', {"r1", "r3"}),
    (r'`s` MATCHES "\\bcat" OR `i`:int = 3', {"r1", "r3", "r4"}),
    (r'NOT (`s` MATCHES "\\bcat" OR `f`:float > 1)', {"r2"}),
]


@pytest.fixture(scope="module")
def dataset(nql_location: str, nql_home: Path) -> Iterator[Dataset]:
    data = open_dataset(nql_location, nql_home, RUNS)
    yield data
    data.close()


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_same_answers_on_every_backend(dataset: Dataset, query: str, expected: set[str]) -> None:
    views = {run.run_id: dataset.view(run, NOW) for run in dataset.runs}
    assert {rid for rid, view in views.items() if evaluate(query, view, NOW)} == expected
    assert dataset.select(query, NOW) == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ('`s` MATCHES "cat(?=s)"', "lookahead and lookbehind"),
        ('`sys/name` MATCHES "(?<!x)exp"', "lookahead and lookbehind"),
        (r'`s` MATCHES "(c)\\1"', "backreferences"),
    ],
)
def test_refused_patterns_are_positioned_errors(dataset: Dataset, query: str, reason: str) -> None:
    with pytest.raises(NqlError, match=reason) as caught:
        dataset.select(query, NOW)
    assert caught.value.start == query.index('"')


def test_other_projects_change_nothing(dataset: Dataset) -> None:
    """A second project with matching values: the filter's answers stay those of its project,
    whether its compilation is told the projects (PostgreSQL then reads only their values) or
    not."""
    assert dataset.store is not None
    with dataset.store.write() as conn:
        project = conn.execute(
            "INSERT INTO projects (workspace, name, project_key, uuid, created_ms) "
            "VALUES ('ws', 'other', 'OTH', 'other-uuid', 0)"
        ).lastrowid
        run = conn.execute(
            "INSERT INTO runs (project_id, run_id, short_no, uuid, family, creation_ms, "
            "modification_ms, ping_ms) VALUES (?, 'o1', 1, 'o1', 'o1', 0, 0, 0)",
            (project,),
        ).lastrowid
        conn.execute(
            "INSERT INTO attributes (run_id, path, type, text) VALUES (?, 's', 'string', 'cat')",
            (run,),
        )
    query = r'`s` MATCHES "\\bcat\\b" AND NOT `sys/name` MATCHES "^e.p-\\d"'
    assert dataset.select(query, NOW) == {"r3"}  # compiled for the dataset's project
    sql, params = compile_filter(dataset.conn, query, now_ms=NOW)  # for every project
    rows = dataset.conn.execute(
        f"SELECT r.run_id FROM runs r JOIN projects p ON p.id = r.project_id WHERE {sql}", params
    ).fetchall()
    assert {row[0] for row in rows} == {"r3", "o1"}


# -- the PostgreSQL dialect's SQL ------------------------------------------------------------


def _pg(query: str) -> tuple[str, list[Any]]:
    return PostgresFilterCompiler(NOW, None, None).compile(resolve(query, now_ms=NOW))


@pytest.mark.parametrize(
    ("query", "fragment", "param"),
    [
        (f"max(`m`:floatSeries) < {EXACT + 1}", "a.fmax <= ?", float(EXACT)),
        (f"max(`m`:floatSeries) <= {EXACT + 1}", "a.fmax <= ?", float(EXACT)),
        (f"max(`m`:floatSeries) > {EXACT + 1}", "a.fmax >= ?", float(EXACT + 2)),
        (f"min(`m`:floatSeries) > -{EXACT + 1}", "a.fmin >= ?", -float(EXACT)),
        (f"min(`m`:floatSeries) < -{EXACT + 1}", "a.fmin <= ?", -float(EXACT + 2)),
        (f"max(`m`:floatSeries) = {EXACT + 1}", "FALSE", None),
        (f"max(`m`:floatSeries) != {EXACT + 1}", "(a.fmax IS NOT NULL)", None),
        (f"`i`:int = {EXACT + 1}", "a.num = ?", EXACT + 1),  # numeric: exact as it is
        ('`s`:string < "b"', 'a.text_head COLLATE "C" < ?', "b"),
        ('`s`:string = "b"', "a.text_head = ?", "b"),
        (f'`s`:string = "{X63}"', "a.text_head = ?", "x" * 63),
        (f'`s`:string = "{X64}"', "a.text = ?", "x" * 64),
        (f'`s`:string = "{E32}"', "a.text = ?", "é" * 32),
        ('`s` CONTAINS "b"', "strpos(a.text, ?) > 0", "b"),
        ('`s` MATCHES "^b"', "starts_with(a.text_head, ?)", "b"),
        (f'`s` MATCHES "^{X64}"', "starts_with(a.text_head, ?)", "x" * 64),
        (f'`s` MATCHES "^{X65}"', "starts_with(a.text, ?)", "x" * 65),
        ('`s` MATCHES "b$"', "right(a.text, 1) = ?", "b"),
        ('`s` MATCHES "^b$"', "a.text_head = ?", "b"),
        (f'`s` MATCHES "^{X64}$"', "a.text = ?", "x" * 64),
        ('`t`:stringSet CONTAINS "b"', "m.value = ? AND m.path = ?", "t"),
        ("`sys/forking/step` > 1", "(r.fork_step::float8 / 1000000.0::float8) > ?", 1),
        ("average(`m`) > 1", "THEN a.fsum / NULLIF(a.fcount, 0) WHEN", 1),
    ],
)
def test_postgres_sql(query: str, fragment: str, param: object) -> None:
    sql, params = _pg(query)
    assert fragment in sql
    assert sql.count("?") == len(params)
    if param is not None:
        assert params[-1] == param and type(params[-1]) is type(param)


def test_postgres_truth_values_and_driver() -> None:
    assert _pg("")[0] == "TRUE"
    assert _pg("`sys/state` = succeeded")[0] == "FALSE"
    sql, _ = _pg("`x`:float > 1 AND `y`:float > 2")
    assert sql.startswith("(r.id IN (SELECT a.run_id FROM attributes a WHERE a.path = ? ")
    sql, _ = _pg('`x`:float > 1 AND `t`:stringSet CONTAINS "x"')  # a set's element drives
    assert sql.startswith("(r.id IN (SELECT m.run_id FROM set_members m WHERE m.value = ? ")
    sql, _ = _pg('`x`:float > 1 AND NOT `t`:stringSet CONTAINS "x"')  # a negated set is probed
    assert "AND r.id IN (SELECT a.run_id FROM attributes a WHERE a.path = ? " in sql
    assert "NOT (EXISTS (SELECT 1 FROM set_members m WHERE m.value = ? AND m.path = ?" in sql
    assert "COALESCE(" in _pg('`sys/experiment/name` = "e"')[0]
    assert ", FALSE)" in _pg('`sys/experiment/name` = "e"')[0]
