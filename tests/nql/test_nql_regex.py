"""NQL ``MATCHES`` runs on RE2 (issue #12, finding 1): linear time, positioned errors for what
RE2 does not support, a bound on pattern length, and the reference evaluator agreeing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nql_testdata import Attr, Dataset, RunSpec, ms, open_dataset

from despina.errors import NqlError
from despina.nql import compile_query, evaluate
from despina.userregex import MAX_PATTERN_LENGTH

NOW = ms("2024-06-01T00:00:00Z")
LONG = "a" * 27
"""Under Python's ``re``, ``(.*)*!`` over 27 characters backtracks for 16-40 s (doubling per
character: the issue measured 4.1 s at 25); RE2 answers in microseconds."""

RUNS = [
    RunSpec(LONG, 1, attrs={"s": Attr("string", LONG), "series": Attr("string_series", [LONG])}),
    RunSpec("exp-1", 2, attrs={"s": Attr("string", "my-exp-1!")}),
    RunSpec("other", 3, attrs={"s": Attr("string", "Line\nEND")}),
    RunSpec("nl", 4, attrs={"s": Attr("string", "tail\n")}),
]


@pytest.fixture(scope="module")
def dataset(nql_location: str, nql_home: Path) -> Iterator[Dataset]:
    data = open_dataset(nql_location, nql_home, RUNS)
    yield data
    data.close()


CATASTROPHIC = [
    '`sys/custom_run_id`:string MATCHES "(.*)*!"',
    '`s`:string MATCHES "(.*)*!"',
    '`s` MATCHES "(a|aa)+$!"',
    'last(`series`:stringSeries) MATCHES "(a+)+b"',
    '`sys/custom_run_id` NOT MATCHES "(.*)*!"',
]


@pytest.mark.parametrize("query", CATASTROPHIC)
def test_catastrophic_pattern_is_linear(dataset: Dataset, query: str) -> None:
    """Run in a thread: the query finishes within a generous bound and the main thread keeps
    running meanwhile (Python's ``re`` held the GIL for the whole backtracking search)."""
    found: list[set[str]] = []
    worker = threading.Thread(target=lambda: found.append(dataset.select(query, NOW)), daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(timeout=5.0)
    elapsed = time.monotonic() - start
    assert not worker.is_alive() and elapsed < 5.0, f"{query} took {elapsed:.1f} s"
    assert found and found[0] == _reference(dataset, query)


def _reference(dataset: Dataset, query: str) -> set[str]:
    """The run ids the reference evaluator selects."""
    return {r.run_id for r in RUNS if evaluate(query, dataset.view(r, NOW), NOW)}


SEMANTICS = [
    ('`s` MATCHES "exp"', {"exp-1"}),  # unanchored search
    ('`s` MATCHES "^exp"', set()),
    ('`s` MATCHES "1!$"', {"exp-1"}),
    ('`s` MATCHES "EXP"', set()),  # case-sensitive
    ('`s` MATCHES "(?i)EXP"', {"exp-1"}),
    ('`s` MATCHES "^END"', set()),  # ^ is the start of the text ...
    ('`s` MATCHES "(?m)^END$"', {"other"}),  # ... and of every line with (?m)
    ('`s` MATCHES "Line$"', set()),  # $ is the end of the text
    ('`s` MATCHES "tail$"', set()),  # even before a final newline (Python's re differs)
    ('`s` MATCHES "tail\\n$"', {"nl"}),
    ('`s` MATCHES "Line.END"', set()),  # . stops at a newline ...
    ('`s` MATCHES "(?s)Line.END"', {"other"}),  # ... unless (?s)
    ('`s` MATCHES "\\\\d"', {"exp-1"}),
    ('`s` MATCHES "a{27}"', {LONG}),
    ('`s` MATCHES "^a{28}"', set()),
    ('`s` MATCHES ""', {LONG, "exp-1", "other", "nl"}),
    ('`sys/custom_run_id` MATCHES "^exp-\\\\d$"', {"exp-1"}),
]


@pytest.mark.parametrize(("query", "expected"), SEMANTICS)
def test_semantics_engine_and_reference_agree(
    dataset: Dataset, query: str, expected: set[str]
) -> None:
    assert dataset.select(query, NOW) == expected
    assert _reference(dataset, query) == expected


UNSUPPORTED = [
    ('`s` MATCHES "(?=x)"', "lookahead"),
    ('`s` MATCHES "a(?<!b)"', "lookbehind"),
    ('`s`:string MATCHES "(a)\\\\1"', "backreferences"),
    ('`s` MATCHES "(?P<n>a)(?P=n)"', "backreferences"),
    ('`s` MATCHES "a++"', "possessive"),
    ('`s` MATCHES "a\\\\Z"', r"write \z"),
    ('`s` MATCHES "(?x) a"', "flags are i, m, s and U"),
    ('`s` MATCHES "a(b"', "missing )"),
    ('NOT `s` MATCHES "a{2000}"', "at most 1,000"),
]


@pytest.mark.parametrize(("query", "reason"), UNSUPPORTED)
def test_unsupported_construct_is_a_positioned_error(query: str, reason: str) -> None:
    literal = query.index('"')
    for check in (lambda: evaluate(query, {}, NOW), lambda: compile_query(query, now_ms=NOW)):
        with pytest.raises(NqlError) as info:
            check()
        error = info.value
        assert (error.start, error.end) == (literal, len(query))
        assert "invalid regular expression" in error.description and reason in error.description


def test_pattern_over_the_length_bound_is_refused() -> None:
    at_bound = "a" * MAX_PATTERN_LENGTH
    assert evaluate(f'`s` MATCHES "{at_bound}"', {}, NOW) is False
    query = f'`x`:string = "1" AND `s` MATCHES "{at_bound}b"'
    with pytest.raises(NqlError) as info:
        compile_query(query, now_ms=NOW)
    assert info.value.start == query.index('"', 20)
    assert f"limited to {MAX_PATTERN_LENGTH:,} characters" in info.value.description
    assert f"{MAX_PATTERN_LENGTH + 1:,} characters long" in info.value.description
