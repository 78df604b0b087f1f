"""``despina.query.filters``: exact NQL renderings (``spec/query-api.md`` §5.3, ``nql.md``
§8.1), trees equal to parsing that text, validation messages, extended regex, AttributeFilter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import neptune_query.filters as nqf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from despina.nql import NQLSyntaxError, parse, render
from despina.nql import ast as nql
from despina.query.filters import (
    KNOWN_TYPES,
    Attribute,
    AttributeFilter,
    BaseAttributeFilter,
    Filter,
    all_of,
    any_of,
    ers_match,
    parse_ers,
)


@pytest.fixture
def tz_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


F, A = Filter, Attribute

# query-api.md §5.3 (TZ=UTC) and the filters behind nql.md §8.1.
RENDERINGS: list[tuple[Filter, str]] = [
    (F.eq("config/lr", 0.01), '`config/lr` == "0.01"'),
    (F.eq(A("config/bs", type="int"), 64), '`config/bs`:int == "64"'),
    (F.lt(A("loss", type="float_series"), 0.1), '`loss`:floatSeries < "0.1"'),
    (F.eq("s", 'he said "hi" \\ ok'), '`s` == "he said \\"hi\\" \\\\ ok"'),
    (F.matches("sys/name", "abc"), '((`sys/name` MATCHES "abc"))'),
    (
        F.matches("sys/name", "a.* & !b | c"),
        '((`sys/name` MATCHES "a.*") AND (`sys/name` NOT MATCHES "b")) OR '
        '((`sys/name` MATCHES "c"))',
    ),
    (F.matches("sys/name", "a|b"), '((`sys/name` MATCHES "a|b"))'),
    (F.matches("sys/name", r"a\x20|\x20b"), '((`sys/name` MATCHES "a | b"))'),
    (F.name("exp-1"), '((`sys/name`:string MATCHES "exp-1"))'),
    (F.name(["a", "b"]), '(`sys/name`:string == "a") OR (`sys/name`:string == "b")'),
    (F.contains_all("sys/tags", "t1"), '(`sys/tags` CONTAINS "t1")'),
    (
        F.contains_all("sys/tags", ["t1", "t2"]),
        '(`sys/tags` CONTAINS "t1") AND (`sys/tags` CONTAINS "t2")',
    ),
    (
        F.contains_none("sys/tags", ["t1", "t2"]),
        '(`sys/tags` NOT CONTAINS "t1") AND (`sys/tags` NOT CONTAINS "t2")',
    ),
    (F.exists(A("f", type="file")), "`f`:fileRef EXISTS"),
    (~F.eq("a", 1), 'NOT (`a` == "1")'),
    (
        (F.eq("a", 1) & F.eq("b", 2)) | ~F.exists("c"),
        '((`a` == "1") AND (`b` == "2")) OR (NOT (`c` EXISTS))',
    ),
    (
        F.eq("a", 1) & F.eq("b", 2) & F.eq("c", 3),
        '((`a` == "1") AND (`b` == "2")) AND (`c` == "3")',
    ),
    (
        F.exists(A("x", type="string_set"))
        & F.exists(A("y", type="string_series"))
        & F.exists(A("z", type="file_series"))
        & F.exists(A("w", type="histogram_series")),
        "(((`x`:stringSet EXISTS) AND (`y`:stringSeries EXISTS)) AND "
        "(`z`:fileRefSeries EXISTS)) AND (`w`:histogramSeries EXISTS)",
    ),
    # nql.md §8.1
    (F.name(["exp-a", "exp-b"]),
     '(`sys/name`:string == "exp-a") OR (`sys/name`:string == "exp-b")'),
    (F.name("^exp-(a|b)$"), '((`sys/name`:string MATCHES "^exp-(a|b)$"))'),
    (
        F.matches(A("sys/custom_run_id", type="string"), "abc.* & !foo | bar"),
        '((`sys/custom_run_id`:string MATCHES "abc.*") AND '
        '(`sys/custom_run_id`:string NOT MATCHES "foo")) OR '
        '((`sys/custom_run_id`:string MATCHES "bar"))',
    ),
    (
        F.matches("sys/name", "a.* & !b | c"),
        '((`sys/name` MATCHES "a.*") AND (`sys/name` NOT MATCHES "b")) OR '
        '((`sys/name` MATCHES "c"))',
    ),
    (F.eq("params/lr", 0.1), '`params/lr` == "0.1"'),
    (F.eq(A("config/bs", type="int"), 64), '`config/bs`:int == "64"'),
    (F.ne(A("sys/archived", type="bool"), True), '`sys/archived`:bool != "True"'),
    (F.eq(A("params/flag", type="bool"), True), '`params/flag`:bool == "True"'),
    (
        F.contains_all("sys/tags", ["a", 'b"q']),
        '(`sys/tags` CONTAINS "a") AND (`sys/tags` CONTAINS "b\\"q")',
    ),
    (F.contains_none("sys/tags", "x"), '(`sys/tags` NOT CONTAINS "x")'),
    (F.exists("dataset_version"), "`dataset_version` EXISTS"),
    (~F.exists("x") | F.lt("a", 2), '(NOT (`x` EXISTS)) OR (`a` < "2")'),
    (
        ~F.exists(A("metrics/acc", type="float_series"))
        | F.lt(A("metrics/acc", type="float_series"), 0.5),
        '(NOT (`metrics/acc`:floatSeries EXISTS)) OR (`metrics/acc`:floatSeries < "0.5")',
    ),
    (
        F.gt(A("metrics/loss", type="float_series"), 0.09)
        & F.exists(A("sys/tags", type="string_set")),
        '(`metrics/loss`:floatSeries > "0.09") AND (`sys/tags`:stringSet EXISTS)',
    ),
    (F.gt(A("metrics/m_0", type="float_series"), float("-inf")),
     '`metrics/m_0`:floatSeries > "-inf"'),
    (F.eq(A("file", type="file"), "x"), '`file`:fileRef == "x"'),
    (F.eq(A("nope", type="string"), 1), '`nope`:string == "1"'),
    (F.ge("x", 1e-10), '`x` >= "1e-10"'),
    (F.le("x", float("nan")), '`x` <= "nan"'),
    (F.matches("sys/name", ""), '((`sys/name` MATCHES ""))'),
    (F.matches("sys/name", "!!"), '((`sys/name` NOT MATCHES "!"))'),
    (F.matches("sys/name", "( a & b )"),
     '((`sys/name` MATCHES "( a") AND (`sys/name` MATCHES "b )"))'),
]  # fmt: skip


@pytest.mark.parametrize(("filter_", "text"), RENDERINGS)
def test_renderings(tz_utc: None, filter_: Filter, text: str) -> None:
    assert str(filter_) == text
    assert filter_.to_ast() == parse(text)


@pytest.mark.parametrize(
    ("tz", "value", "text"),
    [
        ("UTC", datetime(2025, 1, 1, tzinfo=UTC), "2025-01-01T00:00:00+00:00"),
        ("America/New_York", datetime(2025, 1, 1, tzinfo=UTC), "2024-12-31T19:00:00-05:00"),
        ("UTC", datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
         "2025-01-01T12:00:00.123456+00:00"),
        ("UTC", datetime(2024, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))),
         "2024-01-01T00:00:00+00:00"),
        ("Asia/Tokyo", datetime(2024, 1, 1, 9), "2024-01-01T09:00:00+09:00"),  # naive: local
    ],
)  # fmt: skip
def test_datetime_values_render_in_the_local_zone(
    monkeypatch: pytest.MonkeyPatch, tz: str, value: datetime, text: str
) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        f = F.ge(A("sys/creation_time", type="datetime"), value)
        assert str(f) == f'`sys/creation_time`:datetime >= "{text}"'
        assert f.to_ast() == parse(str(f))
    finally:
        monkeypatch.undo()
        time.tzset()


# -- against neptune_query itself --------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="`\\"), max_size=6)
types = st.none() | st.sampled_from(KNOWN_TYPES)
values = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
    st.datetimes(timezones=st.just(UTC)),
)  # fmt: skip
patterns = st.text(st.sampled_from(["a", "!", " ", "&", "|", "\\", "x", "2", "0"]), max_size=10)
strings = st.lists(st.text(max_size=4), min_size=1, max_size=3)


@st.composite
def filter_pairs(draw: st.DrawFn, depth: int = 0) -> tuple[Filter, nqf.Filter]:
    """The same filter built with despina and with neptune_query."""
    name, type_ = draw(names), draw(types)
    ours, theirs = A(name, type=type_), nqf.Attribute(name, type=type_)
    kind = draw(st.integers(0, 7 if depth < 2 else 4))
    if kind == 0:
        op = draw(st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]))
        value = draw(values)
        return getattr(F, op)(ours, value), getattr(nqf.Filter, op)(theirs, value)
    if kind == 1:
        pattern = draw(patterns)
        return F.matches(ours, pattern), nqf.Filter.matches(theirs, pattern)
    if kind == 2:
        vals = draw(strings)
        method = draw(st.sampled_from(["contains_all", "contains_none"]))
        return getattr(F, method)(ours, vals), getattr(nqf.Filter, method)(theirs, vals)
    if kind == 3:
        return F.exists(ours), nqf.Filter.exists(theirs)
    if kind == 4:
        arg = draw(patterns | strings)
        return F.name(arg), nqf.Filter.name(arg)
    left = draw(filter_pairs(depth + 1))
    if kind == 5:
        return ~left[0], ~left[1]
    right = draw(filter_pairs(depth + 1))
    if kind == 6:
        return left[0] & right[0], left[1] & right[1]
    return left[0] | right[0], left[1] | right[1]


@given(filter_pairs())
def test_renders_like_neptune_query(pair: tuple[Filter, nqf.Filter]) -> None:
    ours, theirs = pair
    assert str(ours) == str(theirs)
    assert ours.to_ast() == parse(str(ours))
    assert parse(render(ours.to_ast())) == ours.to_ast()


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: F.eq("a", None), TypeError,
         "Invalid value type: NoneType. Expected int, float, str, or datetime."),
        (lambda: F.gt("a", [1]), TypeError,
         "Invalid value type: list. Expected int, float, str, or datetime."),
        (lambda: F.name([]), ValueError,
         "At least one filter must be provided to combine with OR."),
        (lambda: F.contains_all("a", []), ValueError, "Invalid value for `contains_all` filter. "
         "Expected str, or non-empty list of str, but got an empty list"),
        (lambda: F.contains_none("a", []), ValueError, "Invalid value for `contains_none` filter. "
         "Expected str, or non-empty list of str, but got an empty list"),
        (lambda: A("a", type="floatSeries"), ValueError,  # type: ignore[arg-type]
         "type must be one of: ['bool', 'datetime', 'file', 'file_series', 'float', "
         "'float_series', 'histogram_series', 'int', 'string', 'string_series', 'string_set']"),
        (lambda: AttributeFilter(type="floatSeries"), ValueError,  # type: ignore[arg-type]
         "type must be a list of valid values: ['bool', 'datetime', 'file', 'file_series', "
         "'float', 'float_series', 'histogram_series', 'int', 'string', 'string_series', "
         "'string_set'] (got ['floatSeries'])"),
        (lambda: AttributeFilter(name=3), ValueError,  # type: ignore[arg-type]
         "name must be a string or list of strings"),
        (lambda: AttributeFilter(name=["a", 1]), ValueError,  # type: ignore[list-item]
         "name must be a string or list of strings"),
        (lambda: F.nql("`a` = "), NQLSyntaxError, None),
        (lambda: F.nql("  "), ValueError, "Filter.nql() needs a non-empty query"),
    ],
)  # fmt: skip
def test_validation(make: object, error: type[Exception], message: str | None) -> None:
    with pytest.raises(error) as info:
        make()  # type: ignore[operator]
    if message is not None:
        assert str(info.value) == message


def test_the_same_messages_as_neptune_query() -> None:
    for ours, theirs in [
        (lambda: F.eq("a", None), lambda: nqf.Filter.eq("a", None)),
        (lambda: A("a", type="x"), lambda: nqf.Attribute("a", type="x")),
        (lambda: AttributeFilter(type="x"), lambda: nqf.AttributeFilter(type="x")),
        (lambda: F.contains_all("a", []), lambda: nqf.Filter.contains_all("a", [])),
    ]:
        with pytest.raises(Exception) as mine:
            ours()  # type: ignore[no-untyped-call]
        with pytest.raises(Exception) as reference:
            theirs()  # type: ignore[no-untyped-call]
        assert (type(mine.value).__name__, str(mine.value)) == (
            type(reference.value).__name__,
            str(reference.value),
        )


def test_public_surface() -> None:
    for absent in ("all", "any", "negate", "not_matches", "matches_all", "matches_none"):
        assert not hasattr(Filter, absent)
    f = F.eq("a", 1)
    assert f != F.eq("a", 1) and f == f  # no __eq__: identity
    assert tuple(nqf.KNOWN_TYPES) == KNOWN_TYPES
    assert str(A("a/b", type="float_series")) == "`a/b`:floatSeries"
    assert repr(A("a/b")) == "Attribute(name='a/b', type=None)"


def test_attribute_is_snapshotted() -> None:
    attribute = A("x", type="int")
    f = F.eq(attribute, 1)
    attribute.type = "float"
    assert str(f) == '`x`:int == "1"'


# -- extensions: types, trees, raw NQL, helpers -----------------------------------------------


def test_with_types_and_attributes() -> None:
    f = (F.eq("cfg/lr", 0.1) & ~F.exists("nope")) | F.eq(A("cfg/bs", type="int"), 64)
    assert [a.name for a in f.attributes()] == ["cfg/lr", "nope", "cfg/bs"]
    typed = f.with_types({"cfg/lr": "float", "nope": "string", "cfg/bs": "float"})
    assert str(typed) == (
        '((`cfg/lr`:float == "0.1") AND (NOT (`nope`:string EXISTS))) OR (`cfg/bs`:int == "64")'
    )
    assert str(f) == '((`cfg/lr` == "0.1") AND (NOT (`nope` EXISTS))) OR (`cfg/bs`:int == "64")'
    assert typed.to_ast() == parse(str(typed))
    with pytest.raises(ValueError, match="type must be one of"):
        f.with_types({"nope": "floatSeries"})


def test_nql_filters_combine() -> None:
    raw = F.nql("last(`m`):float > 0.5 OR `x` EXISTS")
    combined = raw & F.eq("a", 1)
    assert str(combined) == '(last(`m`):float > 0.5 OR `x` EXISTS) AND (`a` == "1")'
    assert combined.to_ast() == parse(str(combined))
    assert combined.attributes() == [A("a")]
    assert str(combined.with_types({"x": "int"})) == str(combined)


def test_helpers_for_the_query_service() -> None:
    fs = [F.eq("a", 1), F.eq("b", 2), F.eq("c", 3)]
    assert str(any_of(fs)) == '(`a` == "1") OR (`b` == "2") OR (`c` == "3")'
    assert str(all_of(fs)) == '(`a` == "1") AND (`b` == "2") AND (`c` == "3")'
    tree = all_of(fs).to_ast()
    assert tree == nql.And(nql.And(fs[0].to_ast(), fs[1].to_ast()), fs[2].to_ast())


def test_names_with_backquotes_keep_their_value_in_the_tree() -> None:
    f = F.eq("a`b\\c", 1)
    assert str(f) == '`a`b\\c` == "1"'  # as neptune-query renders it, unescaped
    assert f.to_ast() == nql.Comparison(nql.Attribute("a`b\\c"), "==", nql.Literal("1"))
    assert parse(render(f.to_ast())) == f.to_ast()


# -- extended regex (query-api.md §4) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "parsed"),
    [
        ("", [([""], [])]),
        ("a & b | c & d", [(["a", "b"], []), (["c", "d"], [])]),
        ("! a", [([], ["a"])]),
        ("!!", [([], ["!"])]),
        ("( a & b )", [(["( a", "b )"], [])]),
        ("& & & &", [(["&", "& &"], [])]),
        (r"\x21a\x20b", [(["!a b"], [])]),
        ("  a|b  ", [(["a|b"], [])]),
        ("!b & a", [(["a"], ["b"])]),
        ("a\t|\nb", [(["a"], []), (["b"], [])]),
    ],
)
def test_parse_ers(pattern: str, parsed: list[tuple[list[str], list[str]]]) -> None:
    assert parse_ers(pattern) == parsed


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        ("", "anything", True),
        ("test_alpha", "test_alpha_1", True),
        ("sys/.*id$", "sys/diagnostics/run_uuid", True),
        ("sys/.*id$", "sys/id2", False),
        ("loss & !val", "train/loss", True),
        ("loss & !val", "val/loss", False),
        ("^a | ^b", "b/x", True),
        ("^a | ^b", "c/a", False),
        ("LOSS", "loss", False),
    ],
)
def test_ers_match(pattern: str, name: str, matched: bool) -> None:
    assert ers_match(parse_ers(pattern), name) is matched


# -- AttributeFilter (query-api.md §5.4) ------------------------------------------------------


def test_attribute_filter_normalises_types() -> None:
    assert AttributeFilter().type == list(KNOWN_TYPES)
    assert AttributeFilter(type="float_series").type == ["float_series"]
    assert AttributeFilter(name=["a"], type=["int", "float"]).types() == ["int", "float"]


def test_attribute_filter_union() -> None:
    a = AttributeFilter("loss", type="float_series")
    b = AttributeFilter(["acc"], type=["float_series", "float"])
    c = AttributeFilter(type="string")
    union = a | b | c
    assert isinstance(union, BaseAttributeFilter)
    assert union.leaves() == [a, b, c]
    assert AttributeFilter.any(a, b).leaves() == [a, b]
    assert a.any(b).leaves() == [a, b]
    assert union.accepts("train/loss", "float_series")
    assert not union.accepts("train/loss", "float")
    assert union.accepts("acc", "float") and not union.accepts("acc2", "float")
    assert union.accepts("anything", "string")
    assert AttributeFilter("!^sys/ & .").accepts("cfg/x", "int")
    assert not AttributeFilter("!^sys/ & .").accepts("sys/id", "string")
