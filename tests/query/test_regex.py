"""The query API matches user patterns with RE2 (issue #12, finding 1): a catastrophic pattern
over long names answers at once, and what RE2 does not support is refused naming the pattern."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from query_data import QUIET

import despina
import despina.query as nq
from despina.query import runs as nq_runs
from despina.query.exceptions import NeptuneUnexpectedResponseError

P = "ws/regex"
RUN_ID = "r" * 27
NAME = "params/" + "a" * 20
"""27 characters each: Python's ``re`` needed 16-40 s per ``(.*)*!`` search over them."""


@pytest.fixture()
def long_names(tmp_path: Path) -> Iterator[Path]:
    run = despina.Run(project=P, run_id=RUN_ID, home=tmp_path, **QUIET)  # type: ignore[arg-type]
    run.log_configs({NAME: 1})
    run.close()
    nq.set_home(tmp_path)
    yield tmp_path
    nq.set_home(None)


def test_catastrophic_patterns_answer_at_once(long_names: Path) -> None:
    start = time.monotonic()
    assert nq_runs.list_attributes(project=P, attributes="(.*)*!") == []
    assert nq_runs.list_attributes(project=P, attributes="^params/(a+)+$") == [NAME]
    assert nq_runs.list_runs(project=P, runs="(.*)*!") == []
    assert nq_runs.list_runs(project=P, runs="^(r+)+$") == [RUN_ID]
    assert time.monotonic() - start < 5.0


def test_unsupported_patterns_are_refused_naming_them(long_names: Path) -> None:
    with pytest.raises(NeptuneUnexpectedResponseError, match=r"'\(\?=x\)'.*lookahead"):
        nq_runs.list_attributes(project=P, attributes="(?=x)")
    with pytest.raises(NeptuneUnexpectedResponseError, match=r"\(\?=x\).*lookahead"):
        nq_runs.list_runs(project=P, runs="(?=x)")
    with pytest.raises(NeptuneUnexpectedResponseError, match="limited to 1,000 characters"):
        nq_runs.list_attributes(project=P, attributes="a" * 1001)
