"""Differential test: random queries over random small datasets select the same runs through the
compiled SQL (on a real store) as through the pure-Python reference evaluator."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st
from nql_strategies import expressions
from nql_testdata import Attr, Dataset, RunSpec, insert_runs, ms, open_store

from despina.nql import NqlError, evaluate, render
from despina.nql import ast as nql
from despina.nql.reference import RunAttributes
from despina.nql.resolve import resolve

NOW = ms("2024-06-01T00:00:00Z")
NAN, INF = float("nan"), float("inf")

FLOATS = [0.0, 0.5, 1.0, -1.0, 2.5, 1e-3, NAN, INF, -INF]
INTS = [0, 1, 2, -1, 10_000]
STRINGS = ["", "a", "b", "ab", "A", "1", "0.5", "é", "true", "nan", "2024-01-01", 'q"']
TIMES = [ms("2024-01-01"), ms("2024-05-31T23:00:00Z"), ms("2023-06-01"), NOW - 60_000]
TAGS = ["a", "b", "t 1", 'q"', "日本"]
PATHS = ["a", "b", "c/d"]

numeric_values = st.one_of(
    st.builds(Attr, st.just("float"), st.sampled_from(FLOATS)),
    st.builds(Attr, st.just("int"), st.sampled_from(INTS)),
    st.builds(Attr, st.just("float_series"), st.lists(st.sampled_from(FLOATS), max_size=4)),
)
text_values = st.one_of(
    st.builds(Attr, st.just("string"), st.sampled_from(STRINGS)),
    st.builds(Attr, st.just("string_set"), st.sets(st.sampled_from(TAGS), max_size=3)),
    st.builds(Attr, st.just("string_series"), st.lists(st.sampled_from(STRINGS), max_size=3)),
)
attr_values = st.one_of(
    numeric_values,
    text_values,
    st.builds(Attr, st.just("bool"), st.booleans()),
    st.builds(Attr, st.just("datetime"), st.sampled_from(TIMES)),
    st.builds(Attr, st.just("file"), st.just("path/x")),
    st.builds(Attr, st.just("histogram_series"), st.lists(st.just({"v": 1}), max_size=2)),
    st.builds(Attr, st.just("file_series"), st.lists(st.just("f"), max_size=2)),
)
# "a" is mostly numeric and "b" mostly text, so that typed queries often find their type.
VALUES = {
    "a": st.one_of(numeric_values, attr_values),
    "b": st.one_of(text_values, attr_values),
    "c/d": attr_values,
}


@st.composite
def runs(draw: st.DrawFn) -> list[RunSpec]:
    out = []
    for no in range(1, draw(st.integers(3, 7)) + 1):
        ping = draw(st.sampled_from(TIMES))
        out.append(
            RunSpec(
                f"r{no}",
                no,
                experiment_name=draw(st.sampled_from([None, "exp-a", "b", ""])),
                owner=draw(st.sampled_from(["jackie", "bob", ""])),
                creation_ms=draw(st.sampled_from(TIMES)),
                ping_ms=ping,
                closed=draw(st.booleans()),
                failed=draw(st.booleans()),
                archived=draw(st.booleans()),
                size_bytes=draw(st.sampled_from([0, 800_000, 800_001, 10**8])),
                tags=draw(st.sets(st.sampled_from(TAGS), max_size=3)),
                attrs={
                    path: draw(values)
                    for path, values in VALUES.items()
                    if draw(st.integers(0, 4))  # present four times out of five
                },
            )
        )
    return out


TYPES = [None, "float", "int", "bool", "string", "datetime", "stringSet", "floatSeries",
         "stringSeries", "histogramSeries", "fileRef", "fileRefSeries", "integer", "FLOAT",
         "string_set", "experimentState", "artifact", "gitRef"]  # fmt: skip
NUMBERS = ["0", "1", "0.5", "-1", "2.5", "1e-3", "800kb", "10000", "nan"]
DATES = ["2024-01-01", "2024-05-31T23:00:00Z", "2024-01-01T02:00:00+02", "-2h", "-1M", "-1y"]
STATES = ["running", "inactive", "idle", "Active", "failed", "done"]
LITERALS = [*NUMBERS, *DATES, *STRINGS, *TAGS, *STATES, "False", "^a", "a|b", "(?i)A", "jackie"]
# Per path: the types it is queried with (mostly those the data has) and, untyped, its literals.
PATH_TYPES: dict[str, tuple[list[str | None], list[str]]] = {
    "a": ([None, "float", "int", "floatSeries", "FLOAT", "integer"], NUMBERS),
    "b": ([None, "string", "stringSet", "stringSeries", "string_set"], STRINGS + TAGS),
    "c/d": (TYPES, LITERALS),
    "zz": ([None, "float", "string"], LITERALS),
    "sys/name": ([None, "string"], ["exp-a", "b", "", "a", "^exp", "(?i)B", "xp"]),
    "sys/tags": ([None, "stringSet"], TAGS),
    "sys/failed": ([None, "bool"], ["true", "False"]),
    "sys/creation_time": ([None, "datetime"], DATES),
    "sys/size": ([None, "float", "int"], NUMBERS),
    "sys/state": ([None, "experimentState"], STATES),
    "sys/experiment/name": ([None, "string"], ["exp-a", "b", "", "^e"]),
    "sys/owner": ([None, "string"], ["jackie", "bob", "", "ja", "B"]),
    "sys/id": ([None, "string"], ["NLI-1", "NLI-2", "NLI-", "-3$"]),
}
CMP = list(nql.COMPARISON_OPERATORS)
ANY_OP = [*CMP, "contains", "matches", "exists"]
# Per kind of type: literals and operators that mostly resolve, so that few examples are errors.
BY_KIND: dict[str, tuple[list[str], list[str]]] = {
    "number": (NUMBERS, [*CMP, "exists"]),
    "bool": (["true", "False", "TRUE"], ["==", "!=", "exists"]),
    "string": (STRINGS + LITERALS, ANY_OP),
    "datetime": (DATES, [*CMP, "exists"]),
    "stringSet": (TAGS, ["contains", "exists"]),
    "experimentState": (STATES, ["==", "!="]),
    "artifact": (LITERALS, ["==", "!=", "exists"]),
    "gitRef": (LITERALS, ANY_OP),
    "exists": (LITERALS, ["exists"]),
}
KIND = {"float": "number", "int": "number", "integer": "number", "FLOAT": "number",
        "floatSeries": "number", "stringSeries": "string", "string_set": "stringSet",
        "histogramSeries": "exists", "fileRef": "exists", "fileRefSeries": "exists"}  # fmt: skip


def _predicate(operand: nql.Operand, op: str, literal: nql.Literal, negated: bool) -> nql.Expr:
    if op in CMP:
        return nql.Comparison(operand, op, literal)
    if op == "contains":
        return nql.Contains(operand, literal, negated)
    if op == "matches":
        return nql.Matches(operand, literal, negated)
    return nql.Exists(operand, negated)


def _literal(draw: st.DrawFn, pool: list[str]) -> nql.Literal:
    text = draw(st.sampled_from(pool if draw(st.integers(0, 9)) else LITERALS))
    bare_ok = text != "" and not any(ch in text for ch in ' "():=!<>`')
    return nql.Literal(text, quoted=not bare_ok or draw(st.booleans()))


@st.composite
def leaves(draw: st.DrawFn) -> nql.Expr:
    negated = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:  # an aggregate
        inner = nql.Attribute(
            draw(st.sampled_from(PATHS)),
            draw(st.sampled_from([None, "floatSeries", "stringSeries"])),
        )
        outer = draw(st.sampled_from([None, "float", "string"]))
        operand = nql.Aggregate(draw(st.sampled_from(nql.AGGREGATES)), inner, outer)
        pool = STRINGS if "string" in (inner.type or outer or "").lower() else NUMBERS
        return _predicate(operand, draw(st.sampled_from(CMP)), _literal(draw, pool), negated)
    path = draw(st.sampled_from(list(PATH_TYPES)))
    types, pool = PATH_TYPES[path]
    type_name = draw(st.sampled_from(types if draw(st.integers(0, 9)) else TYPES))
    ops = ANY_OP
    if type_name is not None:
        pool, ops = BY_KIND[KIND.get(type_name, type_name)]
    if draw(st.integers(0, 9)) == 0:
        ops = ANY_OP  # sometimes an operator the type does not support
    attribute = nql.Attribute(path, type_name)
    return _predicate(attribute, draw(st.sampled_from(ops)), _literal(draw, pool), negated)


queries = expressions(leaves(), max_leaves=3)


@pytest.fixture(scope="module")
def conn(nql_location: str, nql_home: Path) -> Iterator[Any]:
    """A connection to this module's store (either backend), outside any transaction."""
    store = open_store(nql_location, nql_home)
    yield store.connection()
    store.close()


def _load(conn: Any, data: list[RunSpec]) -> Dataset:
    conn.execute("BEGIN")
    for table in ("attributes", "runs", "projects"):
        conn.execute(f"DELETE FROM {table}")
    project_id, ids = insert_runs(conn, data)
    conn.execute("COMMIT")
    return Dataset(conn, project_id, data, ids)


def _leaves(tree: nql.Expr) -> Iterator[nql.Expr]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, nql.And | nql.Or):
            stack += [node.left, node.right]
        elif isinstance(node, nql.Not):
            stack.append(node.clause)
        else:
            yield node


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=runs(), trees=st.lists(queries, min_size=1, max_size=5))
def test_sql_agrees_with_reference(conn: Any, data: list[RunSpec], trees: list[nql.Expr]) -> None:
    dataset = _load(conn, data)
    views: dict[str, RunAttributes] = {run.run_id: dataset.view(run, NOW) for run in data}
    splits = 0
    # Each tree, and each of its predicates alone: one dataset serves many queries.
    for query in [q for tree in trees for q in (tree, *_leaves(tree))]:
        try:
            resolved = resolve(query, now_ms=NOW)
        except NqlError:
            continue  # a semantic error: nothing to compare (errors are tested on their own)
        expected = {rid for rid, view in views.items() if evaluate(resolved, view, NOW)}
        splits += 0 < len(expected) < len(data)
        assert dataset.select(resolved, NOW) == expected, render(query)
    # Steer the search towards queries that split the runs: they discriminate best.
    target(float(splits), label="queries that split the runs")


def test_reference_takes_text_and_trees() -> None:
    run: RunAttributes = {"x": ("float", 1.0, None)}
    assert evaluate("`x` > 0.5", run, NOW)
    assert evaluate(nql.Exists(nql.Attribute("x", "float")), run, NOW)
    assert not evaluate(resolve("`x` < 0.5", now_ms=NOW), run, NOW)


def _fixed_runs() -> list[RunSpec]:
    """A deterministic, varied dataset: every value pool appears in some run."""
    rng = random.Random(20240601)
    choices: dict[str, list[Attr]] = {
        "a": [Attr("float", v) for v in FLOATS]
        + [Attr("int", v) for v in INTS]
        + [Attr("float_series", [v, w]) for v, w in zip(FLOATS, reversed(FLOATS), strict=True)]
        + [Attr("float_series", []), Attr("float_series", [0.5, 1.0, 2.5])],
        "b": [Attr("string", v) for v in STRINGS]
        + [Attr("string_set", set(rng.sample(TAGS, k))) for k in range(4)]
        + [Attr("string_series", [v, w]) for v, w in zip(STRINGS, reversed(STRINGS), strict=True)],
        "c/d": [Attr("bool", True), Attr("bool", False), Attr("datetime", TIMES[0]),
                Attr("datetime", TIMES[1]), Attr("file", "f"), Attr("histogram_series", [{}]),
                Attr("file_series", ["f"]), Attr("string", "A"), Attr("int", 1)],
    }  # fmt: skip
    out = []
    for no in range(1, 25):
        out.append(
            RunSpec(
                f"r{no}",
                no,
                experiment_name=rng.choice([None, "exp-a", "b", "", "Exp-B"]),
                owner=rng.choice(["jackie", "bob", "", "Bob"]),
                creation_ms=rng.choice(TIMES),
                ping_ms=rng.choice(TIMES),
                closed=rng.random() < 0.5,
                failed=rng.random() < 0.5,
                size_bytes=rng.choice([0, 800_000, 800_001, 10**8]),
                tags=set(rng.sample(TAGS, rng.randint(0, 3))),
                attrs={p: rng.choice(c) for p, c in choices.items() if rng.random() < 0.85},
            )
        )
    return out


def _all_leaves() -> Iterator[nql.Expr]:
    for path, (types, pool) in PATH_TYPES.items():
        for type_name in {*types, "gitRef", "fileRef"}:
            kind_pool = pool if type_name is None else BY_KIND[KIND.get(type_name, type_name)][0]
            for text in kind_pool:
                literal = nql.Literal(text)
                attribute = nql.Attribute(path, type_name)
                for op in ANY_OP:
                    yield _predicate(attribute, op, literal, False)
                    if op in ("contains", "matches", "exists"):
                        yield _predicate(attribute, op, literal, True)
    for func in nql.AGGREGATES:
        for path in PATHS:
            for inner in (None, "floatSeries", "stringSeries"):
                for outer in (None, "float", "string"):
                    operand = nql.Aggregate(func, nql.Attribute(path, inner), outer)
                    for text in NUMBERS + STRINGS:
                        for op in CMP:
                            yield _predicate(operand, op, nql.Literal(text), False)


def test_every_leaf_on_a_fixed_dataset(conn: Any) -> None:
    """Each predicate shape over each pool value: systematic where the random test is not."""
    data = _fixed_runs()
    dataset = _load(conn, data)
    views = {run.run_id: dataset.view(run, NOW) for run in data}
    mismatches, checked = [], 0
    for leaf in _all_leaves():
        for query in (leaf, nql.Not(leaf)):
            try:
                resolved = resolve(query, now_ms=NOW)
            except NqlError:
                continue
            checked += 1
            expected = {rid for rid, view in views.items() if evaluate(resolved, view, NOW)}
            if dataset.select(resolved, NOW) != expected:
                mismatches.append(render(query))
    assert checked > 5000
    assert mismatches[:10] == []
