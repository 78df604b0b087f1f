"""Resolver: types and aliases, aggregates, literal coercion, operators per type, and the
semantic errors of ``spec/nql.md`` §9.2."""

from __future__ import annotations

import pytest
from nql_testdata import ms

from despina.nql import NQLSemanticError
from despina.nql.ast import Attribute, Comparison, Literal
from despina.nql.literals import (
    NonFinite,
    NotCoercible,
    coerce_bool,
    coerce_datetime,
    coerce_number,
    coerce_state,
)
from despina.nql.resolve import (
    AllOf,
    AnyOf,
    AttrTest,
    Branch,
    Cond,
    Const,
    NotOf,
    Resolved,
    StateTest,
    SysTest,
    canonical_type,
    resolve,
)
from despina.store.sysattrs import SYS_COLUMNS

NOW = ms("2024-03-31T12:34:56.789Z")
NUMERIC = frozenset({"int", "float"})


def r(text: str) -> Resolved:
    return resolve(text, now_ms=NOW)


# -- types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("float", "float"),
        ("FLOAT", "float"),
        ("integer", "int"),
        ("Boolean", "bool"),
        ("stringset", "stringSet"),
        ("string_set", "stringSet"),
        ("float_series", "floatSeries"),
        ("FloatSeries", "floatSeries"),
        ("file", "fileRef"),
        ("file_series", "fileRefSeries"),
        ("histogram_series", "histogramSeries"),
        ("EXPERIMENTSTATE", "experimentState"),
        ("gitref", "gitRef"),
        ("flaot", None),
    ],
)
def test_type_names(written: str, canonical: str | None) -> None:
    assert canonical_type(written) == canonical


# -- tests produced ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("`x`:float > 1", AttrTest("x", (Branch(NUMERIC, Cond("value", ">", 1)),))),
        ("`x`:integer = 1.5", AttrTest("x", (Branch(NUMERIC, Cond("value", "==", 1.5)),))),
        (
            "`x`:float EXISTS",
            AttrTest("x", (Branch(frozenset({"float"}), Cond("value", "exists")),)),
        ),
        (
            "`x`:bool = TRUE",
            AttrTest("x", (Branch(frozenset({"bool"}), Cond("value", "==", True)),)),
        ),
        (
            '`t`:stringSet NOT CONTAINS "a"',
            AttrTest("t", (Branch(frozenset({"string_set"}), Cond("value", "member", "a")),), True),
        ),
        (
            '`s`:string CONTAINS "a"',
            AttrTest("s", (Branch(frozenset({"string"}), Cond("value", "contains", "a")),)),
        ),
        (
            '`s`:stringSeries MATCHES "a"',
            AttrTest("s", (Branch(frozenset({"string_series"}), Cond("value", "matches", "a")),)),
        ),
        (
            "`d`:datetime > -2h",
            AttrTest("d", (Branch(frozenset({"datetime"}), Cond("value", ">", NOW - 7_200_000)),)),
        ),
        (
            "`m`:floatSeries < 0.1",
            AttrTest("m", (Branch(frozenset({"float_series"}), Cond("value", "<", 0.1)),)),
        ),
        (
            "average(`m`:floatSeries) > 1",
            AttrTest("m", (Branch(frozenset({"float_series"}), Cond("average", ">", 1)),)),
        ),
        (
            "variance(`m`):float > 1",
            AttrTest("m", (Branch(frozenset({"float_series"}), Cond("variance", ">", 1)),)),
        ),
        (
            'last(`m`):string = "a"',
            AttrTest("m", (Branch(frozenset({"string_series"}), Cond("value", "==", "a")),)),
        ),
        (
            "last(`m`) > 1",
            AttrTest(
                "m",
                (
                    Branch(frozenset({"float_series"}), Cond("value", ">", 1)),
                    Branch(frozenset({"string_series"}), Cond("value", ">", "1")),
                ),
            ),
        ),
        ("min(`m`) > x", Const(False)),  # untyped, not a number: false, no error
        ("last(`m`) EXISTS", Const(False)),
        ("`sys/size`:float > 10MB", SysTest(SYS_COLUMNS["sys/size"], Cond("value", ">", 10**7))),
        ("`sys/size`:float EXISTS", Const(False)),  # EXISTS stays strict
        ("`sys/size`:int EXISTS", SysTest(SYS_COLUMNS["sys/size"], Cond("value", "exists"))),
        ("`sys/name`:int = 1", Const(False)),
        ("`sys/name`:int != 1", Const(False)),
        ("`sys/name`:float NOT EXISTS", Const(True)),
        ('`sys/name` = "a"', SysTest(SYS_COLUMNS["sys/name"], Cond("value", "==", "a"))),
        ("`sys/failed` = yes", Const(False)),
        ("`sys/failed` NOT CONTAINS a", Const(True)),
        ('`sys/state`:experimentState = "Active"', StateTest("running", "==")),
        ("`sys/state` != IDLE", StateTest("inactive", "!=")),
        ("`sys/state` = failed", StateTest(None, "==")),
        ("`sys/state` = nonsense", Const(False)),
        ("`sys/state` EXISTS", Const(False)),
        ('`other`:experimentState = "running"', Const(False)),
        ("`sys/state`:string = running", Const(False)),
        (
            "`v`:artifact = 9a11",
            AttrTest("v", (Branch(frozenset({"artifact"}), Cond("value", "==", "9a11")),)),
        ),
        (
            "`v`:artifact NOT EXISTS",
            AttrTest("v", (Branch(frozenset({"artifact"}), Cond("value", "exists")),), True),
        ),
        ("`v`:gitRef > 1", Const(False)),
        ("`v`:gitRef NOT EXISTS", Const(True)),
        ("NOT `v`:gitRef = 1", Const(True)),
        (
            "`v`:gitRef = 1 OR `x`:float > 1",
            AttrTest("x", (Branch(NUMERIC, Cond("value", ">", 1)),)),
        ),
        ("", Const(True)),
    ],
)
def test_resolved_tests(text: str, expected: Resolved) -> None:
    assert r(text) == expected


def test_untyped_reference_gets_a_branch_per_suitable_type() -> None:
    got = r('`x` == "1"')
    assert got == AttrTest(
        "x",
        (
            Branch(frozenset({"float", "int", "float_series"}), Cond("value", "==", 1)),
            Branch(frozenset({"string", "string_series"}), Cond("value", "==", "1")),
            Branch(frozenset({"artifact"}), Cond("value", "==", "1")),
        ),
    )
    assert r("`x` = true") == AttrTest(
        "x",
        (
            Branch(frozenset({"bool"}), Cond("value", "==", True)),
            Branch(frozenset({"string", "string_series"}), Cond("value", "==", "true")),
            Branch(frozenset({"artifact"}), Cond("value", "==", "true")),
        ),
    )
    when = r('`x` >= "2024-01-01"')
    assert isinstance(when, AttrTest)
    assert Branch(frozenset({"datetime"}), Cond("value", ">=", ms("2024-01-01"))) in when.branches
    assert r('`x` CONTAINS "a"') == AttrTest(
        "x",
        (
            Branch(frozenset({"string", "string_series"}), Cond("value", "contains", "a")),
            Branch(frozenset({"string_set"}), Cond("value", "member", "a")),
        ),
    )
    exists = r("`x` EXISTS")
    assert isinstance(exists, AttrTest) and len(exists.branches) == 2
    assert len(exists.branches[0].types) == 11
    assert exists.branches[1].types == {"artifact"}


def test_untyped_non_finite_only_compares_strings() -> None:
    assert r('`x` > "nan"') == AttrTest(
        "x", (Branch(frozenset({"string", "string_series"}), Cond("value", ">", "nan")),)
    )


def test_boolean_structure_is_flattened_and_folded() -> None:
    a = AttrTest("a", (Branch(NUMERIC, Cond("value", "==", 1)),))
    b = AttrTest("b", (Branch(NUMERIC, Cond("value", "==", 1)),))
    c = AttrTest("c", (Branch(NUMERIC, Cond("value", "==", 1)),))
    assert r("a:int = 1 AND b:int = 1 AND c:int = 1") == AllOf((a, b, c))
    assert r("(a:int = 1 OR b:int = 1) OR c:int = 1") == AnyOf((a, b, c))
    assert r("NOT NOT a:int = 1") == a
    assert r("NOT a:int = 1") == NotOf(a)
    assert r("a:int = 1 AND `v`:gitRef = 1") == Const(False)
    assert r("a:int = 1 AND `v`:gitRef NOT EXISTS") == a


def test_tree_and_text_resolve_alike() -> None:
    tree = Comparison(Attribute("sys/size", "float"), ">", Literal("10MB"))
    assert resolve(tree, now_ms=NOW) == r('`sys/size`:float > "10MB"')


# -- literals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.85", 0.85),
        ("1", 1),
        ("-3", -3),
        ("+3", 3),
        ("1.", 1.0),
        (".5", 0.5),
        ("1e-10", 1e-10),
        ("2E3", 2000.0),
        (" 7 ", 7),
        ("800kb", 800_000),
        ("800 kb", 800_000),
        ("800KB", 800_000),
        ("50MB", 50_000_000),
        ("2gb", 2_000_000_000),
        ("1.5kb", 1500),
        ("0.0001kb", 0.1),
        ("1e3kb", 1_000_000),
        ("99999999999999999999", 1e20),
    ],
)
def test_numbers(text: str, value: float) -> None:
    got = coerce_number(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "text", ["abc", "", "1_000", "0x10", "1kib", "1 2", "--1", "1e", "e3", "1e400"]
)
def test_not_numbers(text: str) -> None:
    with pytest.raises(NotCoercible):
        coerce_number(text)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "+inf", "-inf", "Infinity", "-INFINITY"])
def test_non_finite_numbers(text: str) -> None:
    with pytest.raises(NonFinite):
        coerce_number(text)


def test_booleans_and_states() -> None:
    assert coerce_bool("True") is True and coerce_bool("FALSE") is False
    for bad in ("yes", "1", "t", ""):
        with pytest.raises(NotCoercible):
            coerce_bool(bad)
    assert coerce_state("RUNNING") == coerce_state("active") == "running"
    assert coerce_state("Inactive") == coerce_state("idle") == "inactive"
    assert coerce_state("succeeded") is coerce_state("aborted") is coerce_state("failed") is None
    with pytest.raises(NotCoercible):
        coerce_state("done")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-02-06T05:00:00Z", ms("2024-02-06T05:00:00+00:00")),
        ("2024-02-06T05:00:00+09", ms("2024-02-05T20:00:00+00:00")),
        ("2024-02-06T05:00:00+0930", ms("2024-02-05T19:30:00+00:00")),
        ("2025-01-01T00:00:00+00:00", ms("2025-01-01T00:00:00+00:00")),
        ("2024-12-31T19:00:00-05:00", ms("2025-01-01T00:00:00+00:00")),
        ("2024-05-01T10:00:00.000Z", ms("2024-05-01T10:00:00+00:00")),
        ("2024-05-01T12:00:00.123456+00:00", ms("2024-05-01T12:00:00+00:00") + 123),
        ("2024-05-01T12:00:00.9", ms("2024-05-01T12:00:00+00:00") + 900),
        ("2024-05-01 12:00", ms("2024-05-01T12:00:00+00:00")),
        ("2024-05-01", ms("2024-05-01T00:00:00+00:00")),
        ("1969-12-31T23:59:59.999Z", -1),
        ("-2h", NOW - 2 * 3_600_000),
        ("-5d", NOW - 5 * 86_400_000),
        ("-1w", NOW - 7 * 86_400_000),
        ("-1M", ms("2024-02-29T12:34:56.789Z")),  # March 31 → clamped to Feb 29 (leap year)
        ("-13M", ms("2023-02-28T12:34:56.789Z")),
        ("-1y", ms("2023-03-31T12:34:56.789Z")),
        ("-0h", NOW),
    ],
)
def test_datetimes(text: str, expected: int) -> None:
    assert coerce_datetime(text, NOW) == expected


def test_year_arithmetic_clamps_leap_day() -> None:
    assert coerce_datetime("-1y", ms("2024-02-29T00:00:00Z")) == ms("2023-02-28T00:00:00Z")


@pytest.mark.parametrize(
    "text",
    [
        "soon",
        "2024-13-01",
        "2024-02-30",
        "2024-02-06T25:00",
        "2024-02-06T05:00:00+24",
        "24-02-06",
        "2024-02-06T05",
        "+2h",
        "-2",
        "-3m",
        "-3s",
        "-3H",
        "-99999y",
        "-999999999999d",
    ],
)
def test_not_datetimes(text: str) -> None:
    with pytest.raises(NotCoercible):
        coerce_datetime(text, NOW)


# -- semantic errors --------------------------------------------------------------------------

SEMANTIC = [
    ("`a`:flaot = 1", 4, "unknown type 'flaot' (did you mean 'float'?)"),
    ("`a`:floatseris = 1", 4, "unknown type 'floatseris' (did you mean 'floatSeries'?)"),
    ("`a`:stringset_ = 1", 4, "unknown type 'stringset_' (did you mean 'stringSet'?)"),
    (
        "`a`:qqq = 1",
        4,
        "unknown type 'qqq'; known types: float, int, bool, string, datetime, "
        "stringSet, floatSeries, stringSeries, histogramSeries, fileRef, fileRefSeries, "
        "experimentState, artifact, fileSet, gitRef, notebookRef",
    ),
    ('`f`:fileRef == "x"', 12, "operator '==' is not supported for fileRef (supported: EXISTS)"),
    (
        '`t`:stringSet = "a"',
        14,
        "operator '=' is not supported for stringSet (supported: CONTAINS, EXISTS)",
    ),
    ('`b`:bool > "true"', 9, "operator '>' is not supported for bool (supported: ==, !=, EXISTS)"),
    (
        '`x`:float  NOT   CONTAINS "a"',
        11,
        "operator NOT CONTAINS is not supported for float "
        "(supported: ==, !=, <, <=, >, >=, EXISTS)",
    ),
    ("`h`:histogramSeries EXISTS", None, None),
    (
        '`sys/state`:experimentState > "running"',
        28,
        "operator '>' is not supported for experimentState (supported: ==, !=)",
    ),
    (
        '`v`:artifact CONTAINS "x"',
        13,
        "operator CONTAINS is not supported for artifact (supported: ==, !=, EXISTS)",
    ),
    (
        '`x`:float > "abc"',
        12,
        '"abc" is not a valid float value: expected a number such as 0.5, -3, 1e-3 or 50MB',
    ),
    (
        "`x`:int > abc",
        10,
        "abc is not a valid int value: expected a number such as 0.5, -3, 1e-3 or 50MB",
    ),
    ('`b`:bool = "yes"', 11, '"yes" is not a valid bool value: expected true or false'),
    (
        '`d`:datetime > "soon"',
        15,
        '"soon" is not a valid datetime value: expected an ISO 8601 '
        "datetime such as 2024-01-31T12:00:00Z or a relative time such as -2h",
    ),
    (
        '`sys/state`:experimentState = "done"',
        30,
        '"done" is not a valid experimentState value: expected running, active, inactive or idle',
    ),
    (
        '`m`:floatSeries > "-inf"',
        18,
        '"-inf" is not a finite number: filtering by non-finite values is not supported',
    ),
    (
        "`x`:float == NaN",
        13,
        "NaN is not a finite number: filtering by non-finite values is not supported",
    ),
    (
        '`sys/creation_time`:datetime < "-3m"',
        31,
        "\"-3m\": unknown relative-time unit 'm': use "
        "h, d, w, M (months) or y ('m' is ambiguous between minutes and months)",
    ),
    (
        '`sys/creation_time`:datetime < "-3s"',
        31,
        "\"-3s\": unknown relative-time unit 's': use h, d, w, M (months) or y",
    ),
    (
        '`s`:string MATCHES "a(b"',
        19,
        'invalid regular expression "a(b": missing ): a(b (RE2 syntax, see docs/nql.md)',
    ),
    (
        '`s` MATCHES "*"',
        12,
        'invalid regular expression "*": no argument for repetition operator: * '
        "(RE2 syntax, see docs/nql.md)",
    ),
    ("last(`x`:float) > 1", 0, "aggregate last applies to floatSeries or stringSeries, not float"),
    (
        "average(`s`:stringSeries) > 1",
        0,
        "aggregate average applies to floatSeries only, not stringSeries",
    ),
    ("min(`s`:fileRef) > 1", 0, "aggregate min applies to floatSeries only, not fileRef"),
    (
        'last(`m`:floatSeries):string = "a"',
        22,
        "the result of last on a floatSeries is float, not string",
    ),
    (
        'last(`m`:stringSeries):float = "a"',
        23,
        "the result of last on a stringSeries is string, not float",
    ),
    ("max(`m`):string = 1", 9, "the result of max is float, not string"),
    ("last(`m`):int = 1", 10, "the result of last is float or string, not int"),
    ("last(`m`):flot = 1", 10, "unknown type 'flot' (did you mean 'float'?)"),
    (
        "average(`m`:floatSeries) EXISTS",
        25,
        "operator EXISTS is not supported for an aggregate "
        "of floatSeries (supported: ==, !=, <, <=, >, >=)",
    ),
    (
        'min(`m`):float CONTAINS "1"',
        15,
        "operator CONTAINS is not supported for an aggregate (supported: ==, !=, <, <=, >, >=)",
    ),
    (
        "average(`m`:floatSeries) > x",
        27,
        "x is not a valid floatSeries value: expected a number such as 0.5, -3, 1e-3 or 50MB",
    ),
    # several problems: the first in the text wins
    ('`x`:flaot MATCHES "a("', 4, "unknown type 'flaot' (did you mean 'float'?)"),
    (
        '`x`:float MATCHES "a("',
        10,
        "operator MATCHES is not supported for float (supported: ==, !=, <, <=, >, >=, EXISTS)",
    ),
    ('min(`x`:fileref) MATCHES "a("', 0, "aggregate min applies to floatSeries only, not fileRef"),
    (
        "`ok`:int = 1 AND\n  `x`:float > y",
        31,
        "y is not a valid float value: expected a number such as 0.5, -3, 1e-3 or 50MB",
    ),
]


@pytest.mark.parametrize(("text", "position", "reason"), SEMANTIC)
def test_semantic_errors(text: str, position: int | None, reason: str | None) -> None:
    if position is None:
        r(text)  # valid: listed to show the boundary
        return
    with pytest.raises(NQLSemanticError) as info:
        r(text)
    err = info.value
    assert (err.position, err.reason) == (position, reason)
    line = text[:position].count("\n") + 1
    col = position - (text[:position].rfind("\n") + 1) + 1
    assert (err.line, err.col) == (line, col)
    assert str(err).startswith(
        f"NQL error at position {position} (line {line}, column {col}): {reason}\n"
    )
    assert str(err).endswith("\n" + " " * (col - 1) + "^")
    assert err.title == "Invalid query"


def test_errors_in_trees_built_in_code_point_into_the_rendered_text() -> None:
    tree = Comparison(Attribute("metrics/m_0", "floatSeries"), ">", Literal("-inf"))
    with pytest.raises(NQLSemanticError) as info:
        resolve(tree, now_ms=NOW)
    assert info.value.query == '`metrics/m_0`:floatSeries > "-inf"'
    assert info.value.position == 28


@pytest.mark.parametrize(
    "text",
    [
        "`x`:int > " + "1" * 5000,
        "`x`:float > " + "1" * 5000 + "kb",
        '`sys/creation_time`:datetime > "-' + "1" * 5000 + 'd"',
    ],
)
def test_literals_past_the_integer_conversion_limit_are_positioned_errors(text: str) -> None:
    # Python refuses to convert more than 4,300 digits with a plain ValueError
    with pytest.raises(NQLSemanticError) as info:
        r(text)
    assert "digits" in str(info.value)
    assert info.value.start is not None
