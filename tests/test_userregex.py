"""User regular expressions (``despina.userregex``) and every place outside NQL that matches one:
the query API's name filters, the retrieval endpoints' name filter and the UI's ``metric=``."""

from __future__ import annotations

import random
import re
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from despina.errors import InvalidQuery
from despina.query.catalog import compile_name_filter
from despina.query.filters import AttributeFilter, ers_match, parse_ers
from despina.server.ui.charts import pick_metrics
from despina.userregex import (
    MAX_PATTERN_LENGTH,
    InvalidPattern,
    UserRegex,
    compile_user_regex,
    user_search,
)

LONG = "a" * 27
"""Python's ``re`` needs 16-40 s for ``(.*)*!`` over these 27 characters; RE2 microseconds."""


def test_search_semantics() -> None:
    assert user_search("exp", "my-exp-1")  # unanchored
    assert not user_search("EXP", "exp") and user_search("(?i)EXP", "exp")
    assert not user_search("a$", "a\n") and user_search("(?m)a$", "a\nb")
    assert user_search("", "") and user_search("^$", "") and not user_search("^$", "x")
    assert user_search(r"\d", "7") and not user_search(r"\d", "٣")  # RE2 classes are ASCII
    assert user_search(r"\pN", "٣") and user_search("(?i)straße", "STRASSE") is False
    assert user_search("é.x", "éüx")  # UTF-8 throughout, '.' is one character


def test_compiled_patterns_are_cached() -> None:
    first = compile_user_regex("^run-(1|2)$")
    assert isinstance(first, UserRegex) and compile_user_regex("^run-(1|2)$") is first
    assert first.search("run-2") and not first.search("run-12")


# Literal patterns take a plain string test instead of RE2; both must agree.
literal = st.text(alphabet="ab-/^$\n", max_size=6)


@given(pattern=literal, text=st.text(alphabet="ab-/\n", max_size=8))
def test_literal_fast_path_agrees_with_re2(pattern: str, text: str) -> None:
    try:
        fast = compile_user_regex(pattern).search(text)
    except InvalidPattern:
        return
    wrapped = compile_user_regex(f"(?:{pattern})").search(text)  # never literal: RE2 answers
    assert fast == wrapped, (pattern, text)


TEXT = "".join(random.Random(1).choices("ab", k=1_000_000))


@pytest.mark.parametrize(
    "pattern", ["(.*)*!", "(a+)+b", "(a|aa)+$!", "(x+x+)+y", "(a|b)*a(a|b){20}c", "^(\\w+\\s?)*$!"]
)
def test_pathological_patterns_are_linear(pattern: str) -> None:
    regex = compile_user_regex(pattern)
    start = time.monotonic()
    assert not regex.search(LONG)
    regex.search(TEXT)
    assert time.monotonic() - start < 5.0


def test_matching_releases_the_gil() -> None:
    """Another Python thread keeps running while RE2 searches a long text."""
    regex = compile_user_regex("a[ab]{200}c")  # too many DFA states: ~0.3 s per call here
    done = threading.Event()

    def search() -> None:
        regex.search(TEXT[:200_000])
        done.set()

    ticks = 0
    worker = threading.Thread(target=search)
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    assert ticks >= 10  # with the GIL held for the whole search, this loop would not run at all


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(?=x)", "lookahead"),
        ("(?<!x)y", "lookbehind"),
        ("(a)\\1", "backreferences"),
        ("(?P<n>a)(?P=n)", "backreferences"),
        ("(?>a)", "atomic groups"),
        ("a*+", "possessive"),
        ("a\\Z", "write \\z"),
        ("\\u263a", "\\x{263A}"),
        ("(?x)a b", "flags are i, m, s and U"),
        ("a(b", "missing )"),
        ("a{1001}", "at most 1,000"),
        ("\\pL{500}", "KiB limit"),
        ("\ud800", "lone surrogate"),
        ("a" * (MAX_PATTERN_LENGTH + 1), f"limited to {MAX_PATTERN_LENGTH:,} characters"),
    ],
)
def test_unsupported_patterns_are_refused_with_a_reason(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidPattern) as info:
        compile_user_regex(pattern)
    error = info.value
    assert isinstance(error, InvalidQuery) and isinstance(error, ValueError)
    assert error.status == 400 and error.pattern == pattern
    assert reason in error.reason and reason in str(error)
    if len(pattern) < 100:
        assert repr(pattern) in str(error)


def test_pattern_at_the_bound_is_accepted() -> None:
    assert compile_user_regex("a" * MAX_PATTERN_LENGTH).search("a" * MAX_PATTERN_LENGTH)


def test_query_name_filters_use_re2() -> None:
    start = time.monotonic()
    assert not ers_match(parse_ers("(.*)*!"), LONG)
    assert not AttributeFilter(name="(.*)*! | ^zz").accepts(LONG, "float")
    assert time.monotonic() - start < 5.0
    with pytest.raises(InvalidPattern, match="lookahead"):
        ers_match(parse_ers("a & (?=b)"), "ab")


def test_retrieval_name_filter_uses_re2() -> None:
    predicate = compile_name_filter([(["(.*)*!"], []), (["^sys/"], ["(a+)+b"])])
    start = time.monotonic()
    assert not predicate(LONG) and predicate("sys/" + LONG)
    assert time.monotonic() - start < 5.0
    with pytest.raises(InvalidPattern, match=r"'\(a\)\\\\1'.*backreferences"):
        compile_name_filter([(["x"], ["(a)\\1"])])


def test_ui_metric_patterns_use_re2() -> None:
    names = [LONG, "train/loss", "val/loss"]
    start = time.monotonic()
    assert pick_metrics(names, ["(.*)*!", "loss$"]) == ["train/loss", "val/loss"]
    assert time.monotonic() - start < 5.0
    with pytest.raises(InvalidQuery, match=r"metric pattern '\(\?=x\)'.*lookahead"):
        pick_metrics(names, ["(?=x)"])


_PY_OR = re.compile(r"[ \t\r\n]+\|[ \t\r\n]+")
_PY_AND = re.compile(r"[ \t\r\n]+&[ \t\r\n]+")


_PY_NOT = re.compile(r"![ \t\r\n]*")


def _parse_ers_with_re(pattern: str) -> list[tuple[list[str], list[str]]]:
    """``parse_ers`` as it was, on Python's ``re``."""
    out = []
    for alternative in _PY_OR.split(pattern.strip()):
        parts = _PY_AND.split(alternative)
        negated = [_PY_NOT.sub("", p, count=1) for p in parts if _PY_NOT.match(p)]
        out.append(([p for p in parts if not _PY_NOT.match(p)], negated))
    return out


@given(st.text(alphabet=" \t\n|&!ab", max_size=14))
def test_extended_regex_splits_as_before(pattern: str) -> None:
    """The splits moved from Python's re to RE2 (linear time); the result is unchanged."""
    assert parse_ers(pattern) == _parse_ers_with_re(pattern)


def test_extended_regex_parsing_is_linear() -> None:
    start = time.monotonic()
    assert parse_ers("a" + " " * 200_000 + "b") == [(["a" + " " * 200_000 + "b"], [])]
    assert time.monotonic() - start < 1.0  # Python's re: quadratic, about 3 minutes
