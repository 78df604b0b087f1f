"""Every query of ``spec/nql.md`` §8.2 (seed ``004_3efefa2d91bfc471.txt``) and §8.3, run as
compiled SQL over rows inserted straight into the store, and through the reference evaluator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nql_testdata import Attr, Dataset, RunSpec, ms, open_dataset

from despina.nql import NQLSemanticError, evaluate

NOW = ms("2024-06-01T00:00:00Z")

RUNS = [
    RunSpec(
        "r1",
        345,
        experiment_name="cunning-blobfish",
        owner="jackie",
        description="test run on new data",
        tags={"some-tag", "exploration", "tag1", "tag2", "my tag", "tag-name"},
        failed=True,
        creation_ms=ms("2024-02-01T00:00:00Z"),
        ping_ms=ms("2024-02-06T06:00:00Z"),
        size_bytes=150_000_000,
        attrs={
            "f1": Attr("float", 0.9),
            "scores/f1": Attr("float", 0.6),
            "accuracy": Attr("float_series", [0.7, 0.9, 0.95]),
            "metrics/acc": Attr("float_series", [0.5, 0.9]),
            "learning_rate": Attr("float", 0.002),
            "metrics/accuracy": Attr("float_series", [0.8]),
            "model_info/size_MB": Attr("int", 45),
            "test/acc": Attr("float", 0.95),
            "f1_score": Attr("float", 0.4),
            "my_monitoring_namespace/stdout": Attr("string_series", ["ok", "an error here"]),
            "dataset_version": Attr("string", "9a113b799082e5fd628be178bedd52837bac24e91f"),
            "config/foo1": Attr("string", "valfoo1"),
            "config/bar1": Attr("int", 1),
            "backbone": Attr("string", "VGG"),
            "train/loss": Attr("float_series", [0.5, 0.05, 0.2]),
        },
    ),
    RunSpec(
        "r2",
        35,
        experiment_name="blobfish-b",
        owner="bob@ml-team",
        description="another test",
        tags={"tag1"},
        closed=False,  # never closed, but silent for months: inactive
        creation_ms=ms("2024-05-31T23:00:00Z"),
        ping_ms=ms("2024-02-06T04:00:00Z"),
        size_bytes=5_000_000,
        attrs={
            "f1": Attr("float", 0.84),
            "scores/f1": Attr("float", 0.59),
            "accuracy": Attr("float_series", [0.8, 0.8]),
            "metrics/acc": Attr("float_series", [0.9, 0.84]),
            "learning_rate": Attr("float", 0.002),
            "metrics/accuracy": Attr("float_series", [0.9, 0.79]),
            "model_info/size_MB": Attr("float", 51e6),
            "test/acc": Attr("float", 0.99),
            "f1_score": Attr("float", 0.5),
            "my_monitoring_namespace/stdout": Attr("string_series", ["error", "fine"]),
            "config/foo1-unique-id-exp-2": Attr("int", 1),
            "backbone": Attr("string", "ResNet"),
            "train/loss": Attr("float_series", [0.3, 0.2]),
        },
    ),
    RunSpec(
        "r3",
        36,
        owner="jackie",
        tags={"exploration", "tag2", "some-tag"},
        failed=True,
        closed=False,
        creation_ms=ms("2024-03-15T00:00:00Z"),
        ping_ms=NOW - 60_000,  # pinged a minute ago: running
        size_bytes=800_001,
        attrs={
            "f1": Attr("int", 1),  # an int compares with `f1`:float (§4.3)
            "model_info/size_MB": Attr("int", 50_000_000),
            "test/acc": Attr("float", 0.91),
            "f1_score": Attr("float", float("nan")),
            "accuracy": Attr("float_series", [float("nan")]),
            "metrics/acc": Attr("string_series", ["0.99"]),  # not a float series
            "learning_rate": Attr("float", 0.002),
        },
    ),
    RunSpec(
        "r4",
        4,
        experiment_name="exp2",
        owner="alice",
        description="new data sets",
        creation_ms=ms("2023-12-31T23:59:59.999Z"),
        ping_ms=ms("2024-01-01T00:00:00Z"),
        size_bytes=800_000,
        attrs={"config/foo1": Attr("string", "valfoo1")},
    ),
]
ALL = {"r1", "r2", "r3", "r4"}

SEED = [  # §8.2
    ('(`sys/tags`:stringSet CONTAINS "some-tag") AND (`f1`:float >= 0.85)', {"r1", "r3"}),
    ("`scores/f1`:float >= 0.60", {"r1"}),
    ('`sys/tags`:stringSet CONTAINS "my tag"', {"r1"}),
    ("average(`accuracy`:floatSeries) > 0.8", {"r1"}),
    ("(last(`metrics/acc`):float >= 0.85) AND (`learning_rate`:float = 0.002)", {"r1"}),
    ("last(`metrics/accuracy`):float >= 0.80", {"r1"}),
    ('`sys/name`:string NOT CONTAINS "blobfish"', {"r3", "r4"}),
    ('NOT `sys/name`:string CONTAINS "blobfish"', {"r3", "r4"}),
    (
        "NOT (`sys/name`:string CONTAINS blobfish AND `sys/failed`:bool = True)",
        {"r2", "r3", "r4"},
    ),
    ("(`model_info/size_MB`:float <= 50MB) AND (`test/acc`:float > 0.90)", {"r1", "r3"}),
    (
        '(`sys/owner`:string = "jackie") AND (`sys/tags`:stringSet CONTAINS "exploration")',
        {"r1", "r3"},
    ),
    (
        '(sys/creation_time:datetime > "2024-01-01T00:00:00Z") AND (sys/failed:bool = True)',
        {"r1", "r3"},
    ),
    ("`f1_score`:float < 0.50", {"r1"}),
    ('`sys/name`:string = "cunning-blobfish"', {"r1"}),
    ('`sys/name`:string CONTAINS "blobfish"', {"r1", "r2"}),
    ('`my_monitoring_namespace/stdout`:stringSeries CONTAINS "error"', {"r1"}),
    ('`sys/tags`:stringSet CONTAINS "tag-name"', {"r1"}),
    (
        '(`sys/tags`:stringSet CONTAINS "tag1") OR (`sys/tags`:stringSet CONTAINS "tag2")',
        {"r1", "r2", "r3"},
    ),
    ('(`sys/tags`:stringSet CONTAINS "tag1") AND (`sys/tags`:stringSet CONTAINS "tag2")', {"r1"}),
    ('`sys/ping_time`:datetime > "2024-02-06T05:00:00Z"', {"r1", "r3"}),
    ('`sys/ping_time`:datetime > "2024-02-06T05:00:00+09"', {"r1", "r2", "r3"}),
    ('`sys/creation_time`:datetime < "-3M"', {"r1", "r4"}),
    ('`sys/description`:string = "test run on new data"', {"r1"}),
    ('`sys/description`:string CONTAINS "new data"', {"r1", "r4"}),
    ('`sys/id`:string = "NLI-345"', {"r1"}),
    ('(`sys/id`:string = "NLI-35") OR (`sys/id`:string = "NLI-36")', {"r2", "r3"}),
    ('`sys/owner`:string = "jackie"', {"r1", "r3"}),
    ('`sys/owner`:string CONTAINS "@ml-team"', {"r2"}),
    ("`sys/size`:float > 100MB", {"r1"}),
    ("`sys/size`:float > 10MB", {"r1"}),
    ("`sys/size`:float > 800kb", {"r1", "r2", "r3"}),
    ('`sys/size`:float > "800 kb"', {"r1", "r2", "r3"}),
    ("`sys/size`:float > 800000", {"r1", "r2", "r3"}),
    ('`sys/state`:experimentState = "inactive"', {"r1", "r2", "r4"}),
    ("`sys/failed`:bool = True", {"r1", "r3"}),
    ("`dataset_version`:artifact = 9a113b799082e5fd628be178bedd52837bac24e91f", set()),
]

OTHER = [  # §8.3
    (r'`sys/name`:string MATCHES "exp\\d"', {"r4"}),
    ('`config/foo1`:string = "valfoo1" AND `sys/name`:string MATCHES "exp[23]"', {"r4"}),
    ("`config/bar1`:int = 1 OR `config/foo1-unique-id-exp-2`:int = 1", {"r1", "r2"}),
    ('`sys/id`:string =~ "MODEL-.*"', set()),
    ('`sys/id`:string =~ "NLI-3.*"', {"r1", "r2", "r3"}),
    ("(backbone: string = VGG)", {"r1"}),
    (
        '((`sys/trashed`:bool = false) AND ((`sys/id`:string = "SAN-1") OR '
        '(`sys/id`:string = "SAN-2")) AND (`sys/state`:experimentState = "running") AND '
        '(`sys/owner`:string = "bob") AND ((`sys/tags`:stringSet CONTAINS "t1") AND '
        '(`sys/tags`:stringSet CONTAINS "t2")))',
        set(),
    ),
    (  # the same shape, with values of this dataset
        '((`sys/trashed`:bool = false) AND ((`sys/id`:string = "NLI-36") OR '
        '(`sys/id`:string = "NLI-4")) AND (`sys/state`:experimentState = "running") AND '
        '(`sys/owner`:string = "jackie") AND ((`sys/tags`:stringSet CONTAINS "exploration") AND '
        '(`sys/tags`:stringSet CONTAINS "tag2")))',
        {"r3"},
    ),
    ('(`sys/creation_time`:datetime > "2024-05-01T10:00:00.000Z")', {"r2"}),
    ("min(`train/loss`:floatSeries) < 0.1", {"r1"}),
    ("`sys/creation_time`:datetime > -2h", {"r2"}),
    ("`sys/tags` NOT EXISTS", set()),
    ("", ALL),
]

# §8.1 strings as filters render them; the semantic errors are tested in test_nql_resolve.
RENDERED = [
    ('(`sys/name`:string == "cunning-blobfish") OR (`sys/name`:string == "exp2")', {"r1", "r4"}),
    ('((`sys/name`:string MATCHES "^exp-?(2|3)$"))', {"r4"}),
    (
        '((`sys/name` MATCHES "blob.*") AND (`sys/name` NOT MATCHES "^b")) OR '
        '((`sys/name` MATCHES "2"))',
        {"r1", "r4"},
    ),
    ('`learning_rate` == "0.002"', {"r1", "r2", "r3"}),
    ('`config/bar1`:int == "1"', {"r1"}),
    ('`train/loss`:floatSeries < "0.25"', {"r1", "r2"}),
    ('variance(`accuracy`:floatSeries) > "0.001"', {"r1"}),
    ('`sys/archived`:bool != "True"', ALL),
    ('`sys/failed`:bool == "True"', {"r1", "r3"}),
    ('(`sys/tags` CONTAINS "tag1") AND (`sys/tags` CONTAINS "tag2")', {"r1"}),
    ('(`sys/tags` NOT CONTAINS "tag1")', {"r3", "r4"}),
    ("`dataset_version` EXISTS", {"r1"}),
    ('(NOT (`config/foo1` EXISTS)) OR (`f1` < "0.85")', {"r2", "r3"}),
    # r3's accuracy exists but ends with NaN, which compares false
    ('(NOT (`accuracy`:floatSeries EXISTS)) OR (`accuracy`:floatSeries < "0.85")', {"r2", "r4"}),
    ('NOT (`backbone` == "VGG")', {"r2", "r3", "r4"}),
    ('`sys/creation_time`:datetime >= "2024-03-15T00:00:00+00:00"', {"r2", "r3"}),
    ('`sys/creation_time`:datetime >= "2024-03-14T20:00:00-04:00"', {"r2", "r3"}),
    ('`nope`:string == "1"', set()),
]


@pytest.fixture(scope="module")
def dataset(nql_location: str, nql_home: Path) -> Iterator[Dataset]:
    data = open_dataset(nql_location, nql_home, RUNS)
    yield data
    data.close()


def _reference(data: Dataset, query: str) -> set[str]:
    return {run.run_id for run in data.runs if evaluate(query, data.view(run, NOW), NOW)}


@pytest.mark.parametrize(("query", "expected"), SEED + OTHER + RENDERED)
def test_example(dataset: Dataset, query: str, expected: set[str]) -> None:
    assert dataset.select(query, NOW) == expected
    assert _reference(dataset, query) == expected


@pytest.mark.parametrize(
    "query",
    [
        '`metrics/m_0`:floatSeries > "-inf"',
        '`file`:fileRef == "x"',
    ],
)
def test_rendered_semantic_errors(dataset: Dataset, query: str) -> None:
    with pytest.raises(NQLSemanticError):
        dataset.select(query, NOW)
