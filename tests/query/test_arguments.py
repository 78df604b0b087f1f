"""Argument resolution and validation (spec/query-api.md §1–§4, §6, §8.7–§8.9, §15)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import despina.query as nq
from despina.query import api, runs
from despina.query.exceptions import (
    AttributeTypeInferenceError,
    NeptuneError,
    NeptuneProjectInaccessible,
    NeptuneProjectNotProvided,
    NeptuneUnexpectedResponseError,
    NeptuneUserError,
)
from despina.query.filters import Attribute, AttributeFilter, Filter
from despina.query.resolve import parse_ers, resolve_attributes, restrict_types
from despina.query.types import File, Histogram
from despina.query.warnings import ExperimentalWarning

P = "ws/proj"
RICH = "ws/rich"


def test_public_names() -> None:
    assert nq.__all__ == [
        "download_files",
        "experimental",
        "fetch_experiments_table",
        "fetch_metric_buckets",
        "fetch_metrics",
        "fetch_series",
        "list_attributes",
        "list_experiments",
        "set_api_token",
    ]
    assert set(runs.__all__) == {
        "list_runs",
        "list_attributes",
        "fetch_runs_table",
        "fetch_metrics",
        "fetch_series",
        "download_files",
    }
    assert not hasattr(runs, "fetch_metric_buckets")
    assert nq.filters.Filter is Filter and nq.Filter is Filter and nq.Attribute is Attribute
    code = "import despina.query as q; print(hasattr(q, 'experimental'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "call",
    [nq.list_experiments, nq.list_attributes, nq.fetch_experiments_table, runs.list_runs],
)
def test_project_not_provided(call: Any) -> None:
    with pytest.raises(
        NeptuneProjectNotProvided,
        match=r"^NeptuneProjectNotProvided: The project name was not provided\.",
    ):
        call()


def test_project_not_provided_comes_first() -> None:
    with pytest.raises(NeptuneProjectNotProvided):
        nq.fetch_metrics(experiments=(), attributes="x", tail_limit=0)


def test_project_inaccessible(home: Path) -> None:
    with pytest.raises(NeptuneProjectInaccessible, match="ws/missing"):
        nq.list_experiments(project="ws/missing")


def test_default_project_read_at_import(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEPTUNE_PROJECT", P)
    monkeypatch.setattr(api, "_context", api.Context(api.default_project()))
    assert nq.list_experiments() == ["exp-a", "exp-b"]
    monkeypatch.setenv("NEPTUNE_PROJECT", "ws/other")
    assert nq.list_experiments() == ["exp-a", "exp-b"]  # read once, not per call


def test_container_arguments() -> None:
    message = (
        "Invalid type for `experiments` filter. Expected str, non-empty list of str, or "
        "Filter object, but got an empty list"
    )
    with pytest.raises(ValueError, match=f"^{message}$"):
        nq.list_experiments(project="ws/missing", experiments=[])
    with pytest.raises(ValueError, match=r"but got <class 'tuple'>\.$"):
        nq.list_experiments(project="ws/missing", experiments=("a",))
    with pytest.raises(ValueError, match="Invalid type for `runs` filter"):
        runs.list_runs(project="ws/missing", runs=5)


def test_attribute_arguments() -> None:
    with pytest.raises(
        ValueError,
        match=r"Invalid type for `attributes` filter\. .* but got "
        r"<class 'int'>\.",
    ):
        nq.list_attributes(project="ws/missing", attributes=5)
    with pytest.raises(
        ValueError,
        match=r"^Only float_series type is supported for attribute "
        r"filters in this function and the filter contains types: int$",
    ):
        nq.fetch_metrics(
            project="ws/missing", experiments="a", attributes=AttributeFilter(type="int")
        )
    with pytest.raises(
        ValueError,
        match=r"^Only string_series, file_series or histogram_series "
        r"types are supported .* contains types: float, int$",
    ):
        nq.fetch_series(
            project="ws/missing", experiments="a", attributes=AttributeFilter(type=["float", "int"])
        )
    narrowed = restrict_types(AttributeFilter(type=["int", "float_series"]), ["float_series"])
    assert narrowed.types == frozenset({"float_series"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"step_range": [0, 1]}, "step_range must be a tuple of two values"),
        ({"step_range": (0, 1, 2)}, "step_range must be a tuple of two values"),
        ({"step_range": ("a", 1)}, "step_range start must be None or a number"),
        ({"step_range": (0, "b")}, "step_range end must be None or a number"),
        ({"step_range": (2, 1)}, "step_range start must be less than or equal to end"),
        ({"tail_limit": 1.5}, "tail_limit must be None or an integer"),
        ({"tail_limit": 0}, "tail_limit must be greater than 0"),
        ({"include_time": "relative"}, "include_time must be 'absolute'"),
    ],
)
def test_series_parameters(options: dict[str, Any], message: str) -> None:
    for call in (nq.fetch_metrics, nq.fetch_series):
        with pytest.raises(ValueError, match=f"^{message}$"):
            call(project="ws/missing", experiments="a", attributes="x", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit must be greater than 0"),
        ({"limit": "3"}, "limit must be None or an integer"),
        ({"sort_direction": "up"}, "sort_direction 'up' is invalid; must be 'asc' or 'desc'"),
        (
            {"sort_by": 3},
            "Invalid type for `sort_by`. Expected str or Attribute object, but got <class 'int'>.",
        ),
    ],
)
def test_table_parameters(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        runs.fetch_runs_table(project="ws/missing", **options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 2.0}, "limit must be an integer"),
        ({"limit": 0}, "limit must be a positive integer. Got: 0"),
        ({"limit": 1001}, "limit cannot be greater than 1000. Got: 1001"),
        ({"x": "time"}, "x 'time' is invalid; must be 'step'"),
    ],
)
def test_bucket_parameters(options: dict[str, Any], message: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        with pytest.raises(ValueError) as info:
            nq.fetch_metric_buckets(project="ws/missing", experiments="a", y="x", **options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", [([""], [])]),
        ("a & b | c & d", [(["a", "b"], []), (["c", "d"], [])]),
        ("! a", [([], ["a"])]),
        ("!!", [([], ["!"])]),
        ("( a & b )", [(["( a", "b )"], [])]),
        ("& & & &", [(["&", "& &"], [])]),
        (r"\x21a\x20b", [(["!a b"], [])]),
        ("a|b", [(["a|b"], [])]),
    ],
)
def test_extended_regex(pattern: str, expected: list[tuple[list[str], list[str]]]) -> None:
    assert parse_ers(pattern) == expected


def test_attribute_name_matching() -> None:
    selector = restrict_types(resolve_attributes("loss & !val | ^acc$"), None)
    assert selector.accepts("train/loss", "float_series")
    assert not selector.accepts("val/loss", "float_series")
    assert selector.accepts("acc", "int") and not selector.accepts("acc2", "int")
    assert restrict_types(resolve_attributes("test_alpha"), None).accepts("test_alpha_1", "int")
    assert restrict_types(resolve_attributes("sys/.*id$"), None).accepts(
        "sys/diagnostics/run_uuid", "string"
    )
    exact = restrict_types(resolve_attributes(["a", "b"]), None)
    assert exact.accepts("a", "float") and not exact.accepts("ab", "float")
    assert not restrict_types(resolve_attributes([]), None).accepts("a", "float")
    union = restrict_types(AttributeFilter("x", type="int") | AttributeFilter(["y"]), None)
    assert union.accepts("xx", "int") and not union.accepts("xx", "float")
    assert union.accepts("y", "float")


def test_invalid_regex_is_rejected_at_evaluation(home: Path) -> None:
    with pytest.raises(NeptuneUnexpectedResponseError, match="a\\(b"):
        nq.list_attributes(project=P, attributes="a(b")
    with pytest.raises(NeptuneUnexpectedResponseError):
        nq.list_experiments(project=P, experiments="a(b")


def test_list_attributes_filters(home: Path) -> None:
    assert runs.list_attributes(project=P, attributes="^cfg") == [
        "cfg/bs",
        "cfg/lr",
        "cfg/name",
        "cfg/tags",
    ]
    assert runs.list_attributes(project=P, runs=Filter.eq("cfg/name", "b"), attributes="^cfg") == [
        "cfg/lr",
        "cfg/name",
    ]
    assert runs.list_attributes(project=P, runs=["r2"], attributes=["loss", "msg"]) == [
        "loss",
        "msg",
    ]  # inherited series count as the fork's attributes


def test_sort_and_limit(home: Path) -> None:
    table = runs.fetch_runs_table(
        project=RICH, attributes=["cfg/float"], sort_by="cfg/float", sort_direction="asc"
    )
    # b1 has NaN (missing for sorting): after every run that has the attribute
    assert list(table.index) == ["a1", "a2", "c1", "b1"]
    table = runs.fetch_runs_table(project=RICH, sort_by="cfg/float")
    assert list(table.index) == ["c1", "a1", "a2", "b1"]
    table = runs.fetch_runs_table(project=RICH, sort_by="m/loss", limit=2)
    assert list(table.index) == ["c1", "b1"]
    table = runs.fetch_runs_table(
        project=RICH, sort_by=Attribute("sys/name", "string"), sort_direction="asc"
    )
    assert list(table.index) == ["c1", "a1", "a2", "b1"]  # c1 has no experiment: ""


def test_filters_in_queries(home: Path) -> None:
    assert runs.list_runs(project=RICH, runs=Filter.gt("cfg/int", 5)) == ["a1", "a2"]
    assert runs.list_runs(project=RICH, runs=Filter.contains_all("sys/tags", "t2")) == ["a1", "b1"]
    assert runs.list_runs(
        project=RICH, runs=Filter.exists(Attribute("m/once", "float_series"))
    ) == ["c1"]
    assert runs.list_runs(project=RICH, runs="a & !2 | c") == ["a1", "c1"]
    assert nq.list_experiments(project=RICH, experiments=["alpha", "nope"]) == ["alpha"]
    with pytest.raises(NeptuneUnexpectedResponseError):
        runs.list_runs(project=RICH, runs=Filter.eq(Attribute("f/file", "file"), "x"))


def test_global_tables_need_types(home: Path) -> None:
    from despina.query import experimental

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        with pytest.raises(NeptuneUserError, match="Cannot resolve sort_by attribute type"):
            experimental.fetch_runs_table_global(sort_by="sys/name")  # type: ignore[arg-type]
        with pytest.raises(
            AttributeTypeInferenceError, match="global queries require an explicit type"
        ):
            experimental.fetch_experiments_table_global(experiments=Filter.eq("cfg/lr", 0.1))
        empty = experimental.fetch_runs_table_global(runs=["nope"])
    assert empty.index.names == ["project", "run"] and empty.empty
    from despina.query import warnings as query_warnings

    query_warnings._seen_messages.clear()
    with pytest.warns(ExperimentalWarning, match="despina.query.experimental"):
        experimental.fetch_experiments_table_global(limit=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExperimentalWarning)
        experimental.fetch_experiments_table_global(limit=1)  # once per message per process


def test_set_api_token() -> None:
    with pytest.raises(ValueError, match="API token must be provided"):
        nq.set_api_token("")
    with pytest.raises(Exception) as info:
        nq.set_api_token("not-a-token")
    assert not isinstance(info.value, NeptuneError)
    token = base64.b64encode(json.dumps({"api_url": "http://127.0.0.1:1"}).encode()).decode()
    context = nq.set_api_token(token)
    assert context.api_token == token


def test_types() -> None:
    f = File("ws/p", "exp", None, "a/b", None, "key", 12, "text/plain")
    assert repr(f) == "File(size=12 B, mime_type=text/plain)"
    assert repr(File("ws/p", None, "r", "a", 1.0, "k", 2048, "image/png")) == (
        "File(size=2.00 KB, mime_type=image/png)"
    )
    assert f.container_identifier == "exp"
    with pytest.raises(ValueError, match="Either 'experiment_name' or 'run_id' must be set"):
        File("ws/p", None, None, "a", None, "k", 1, "x")
    with pytest.raises(ValueError, match="Only one of 'experiment_name' or 'run_id'"):
        File("ws/p", "e", "r", "a", None, "k", 1, "x")
    h = Histogram(type="COUNTING", edges=[0.0, 1.0, 2.0], values=[3.0, 4.0])
    assert repr(h) == "Histogram(type='COUNTING', edges=[0.0, 1.0, 2.0], values=[3.0, 4.0])"


def test_download_argument_errors(home: Path, tmp_path: Path) -> None:
    run_file = File("ws/proj", None, "r1", "a", None, "k", 1, "text/plain")
    with pytest.raises(ValueError, match="Invalid type for `files`"):
        nq.download_files(files=3)  # type: ignore[arg-type]
    with pytest.raises(NeptuneUserError, match="don't have associated experiment names"):
        nq.download_files(files=run_file)
    exp_file = File("ws/proj", "exp-a", None, "a", None, "k", 1, "text/plain")
    with pytest.raises(NeptuneUserError, match="don't have associated run IDs"):
        runs.download_files(files=[exp_file])
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    with pytest.raises(NotADirectoryError, match="Destination is not a directory"):
        nq.download_files(files=exp_file, destination=not_dir)
    missing = nq.download_files(files=pd.Series([exp_file, 1]), destination=tmp_path / "new")
    assert missing.loc[("exp-a", float("nan"))] is None or missing.isna().all().all()
    empty = nq.download_files(files=[], destination=tmp_path)
    assert empty.empty and empty.index.names == ["experiment", "step"]
