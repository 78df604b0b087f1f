"""despina's frames against ``neptune_query``'s own builders fed the same data.

For each call, the data is read once more through the query service and handed to
``neptune_query.internal.output_format``; any difference in values, index, columns, names or
dtypes fails (``assert_frame_equal``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import query_reference as reference
from pandas.testing import assert_frame_equal

import despina.query as nq
from despina.query import api, runs
from despina.query.download import target_path
from despina.query.filters import AttributeFilter, Filter
from despina.query.points import StepRange
from despina.query.resolve import (
    EXPERIMENTS,
    FETCH_SERIES_TYPES,
    RUNS,
    Kind,
    infer_filter_types,
    resolve_attributes,
    resolve_containers,
    resolve_sort_by,
    restrict_types,
)
from despina.query.warnings import ExperimentalWarning

RICH = "ws/rich"
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.set_index")


def _matched(snap: Any, kind: Kind, containers: Any, **sort: Any) -> list[Any]:
    filter_ = infer_filter_types(resolve_containers(containers, kind), snap.attribute_types)
    return snap.search(kind=kind.name, nql=filter_, **sort)


TABLE_CASES = [
    (EXPERIMENTS, None, r"^cfg/(float|int|bool|str|dt|set|big)$|^m/|^log|^h/|^f/|sys/tags", True),
    (RUNS, None, r"^cfg/(float|int|bool|str|dt|set|big)$|^m/|^log|^h/|^f/|sys/tags", False),
    (RUNS, None, r"cfg/mixed|cfg/text", True),
    (RUNS, ["b1", "c1"], r"cfg|sys/(name|id|creation_time|failed|forking)", False),
    (RUNS, "a", AttributeFilter(type=["file", "file_series", "histogram_series"]), False),
    (EXPERIMENTS, ["alpha"], ["cfg/float", "m/loss", "nope"], False),
    (RUNS, ["nope"], ["cfg/float"], False),
    (RUNS, None, [], False),
]


@pytest.mark.parametrize(("kind", "containers", "attributes", "suffix"), TABLE_CASES)
def test_tables(
    home: Path, local_snapshot: Any, kind: Kind, containers: Any, attributes: Any, suffix: bool
) -> None:
    fetch = nq.fetch_experiments_table if kind is EXPERIMENTS else runs.fetch_runs_table
    kwargs = {"experiments" if kind is EXPERIMENTS else "runs": containers}
    got = fetch(project=RICH, attributes=attributes, type_suffix_in_column_names=suffix, **kwargs)
    with local_snapshot(RICH) as snap:
        matched = _matched(snap, kind, containers)
        data = snap.table(matched, restrict_types(resolve_attributes(attributes), None))
    expected = reference.table(data, kind=kind.name, type_suffix=suffix)
    assert_frame_equal(reference.normalize(got), reference.normalize(expected))


def test_global_table(home: Path, local_snapshot: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        from despina.query import experimental

        got = experimental.fetch_runs_table_global(
            attributes=r"^cfg/(float|lr)$|loss",
            type_suffix_in_column_names=True,
            sort_by=nq.Attribute("sys/custom_run_id", type="string"),
            sort_direction="asc",
        )
    assert got.index.names == ["project", "run"]
    assert [r for _, r in got.index][:3] == ["a1", "a2", "b1"]
    parts = []
    from despina.query.service import TableData

    for project in ("ws/proj", "ws/rich", "ws/seed"):
        with local_snapshot(project) as snap:
            matched = snap.search(
                kind="run",
                sort_by=resolve_sort_by(nq.Attribute("sys/custom_run_id", type="string")),
                direction="asc",
            )
            parts.append(
                snap.table(
                    matched, restrict_types(resolve_attributes(r"^cfg/(float|lr)$|loss"), None)
                )
            )
    order = sorted(
        (
            (c.sort_key, c.project, i, j)
            for i, part in enumerate(parts)
            for j, c in enumerate(part.containers)
        ),
        key=lambda t: (t[0], t[1]),
    )
    assert [c[0] for c in order] == [r for _, r in got.index]
    # One project at a time against the multiproject reference builder.
    one = experimental.fetch_runs_table_global(
        runs=Filter.eq(nq.Attribute("sys/name", type="string"), "alpha"),
        attributes=r"^cfg/(float|lr)$|loss",
        type_suffix_in_column_names=True,
    )
    with local_snapshot(RICH) as snap:
        matched = snap.search(
            kind="run", nql=Filter.eq(nq.Attribute("sys/name", type="string"), "alpha")
        )
        data = snap.table(
            matched, restrict_types(resolve_attributes(r"^cfg/(float|lr)$|loss"), None)
        )
    expected = reference.table(
        TableData(data.containers, data.columns), kind="run", type_suffix=True, global_=True
    )
    assert_frame_equal(reference.normalize(one), reference.normalize(expected))


METRIC_CASES = [
    (EXPERIMENTS, ".*", "m/", {}),
    (EXPERIMENTS, ".*", "m/", {"include_time": "absolute"}),
    (EXPERIMENTS, ".*", "m/", {"include_point_previews": True}),
    (EXPERIMENTS, ".*", "m/", {"include_time": "absolute", "include_point_previews": True}),
    (EXPERIMENTS, ".*", "m/|^step$|^value$", {"type_suffix_in_column_names": True}),
    (EXPERIMENTS, ["alpha"], "m/", {"lineage_to_the_root": False, "step_range": (10, 30.5)}),
    (RUNS, None, "m/", {"lineage_to_the_root": False, "tail_limit": 4}),
    (
        RUNS,
        ".*",
        "m/loss",
        {"tail_limit": 3, "include_point_previews": True, "include_time": "absolute"},
    ),
    (RUNS, ["a2", "c1"], ["m/loss", "m/once", "nope"], {"step_range": (None, 22.0)}),
    (RUNS, ["a2"], ["m/acc"], {"step_range": (21, None)}),
    (EXPERIMENTS, ["nope"], "m/", {"include_time": "absolute", "include_point_previews": True}),
    (EXPERIMENTS, ["nope"], "m/", {}),
]


@pytest.mark.parametrize(("kind", "containers", "attributes", "options"), METRIC_CASES)
def test_metrics(
    home: Path,
    local_snapshot: Any,
    kind: Kind,
    containers: Any,
    attributes: Any,
    options: dict[str, Any],
) -> None:
    fetch = nq.fetch_metrics if kind is EXPERIMENTS else runs.fetch_metrics
    key = "experiments" if kind is EXPERIMENTS else "runs"
    got = fetch(project=RICH, attributes=attributes, **{key: containers}, **options)
    previews = options.get("include_point_previews", False)
    with local_snapshot(RICH) as snap:
        matched = _matched(snap, kind, containers)
        series = snap.series(
            matched,
            restrict_types(resolve_attributes(attributes), ["float_series"]),
            with_empty=previews,
        )
        batch = snap.float_series(
            series,
            mode=api.lineage_mode(kind, options.get("lineage_to_the_root", True)),
            step_range=StepRange(*options.get("step_range", (None, None))),
            tail_limit=options.get("tail_limit"),
            previews=previews,
        )
    expected = reference.metrics(
        matched,
        series,
        batch,
        kind=kind.name,
        include_time=options.get("include_time") == "absolute",
        previews=previews,
        type_suffix=options.get("type_suffix_in_column_names", False),
    )
    assert_frame_equal(got, expected)


SERIES_CASES = [
    (EXPERIMENTS, ".*", ".*", {}),
    (EXPERIMENTS, ".*", "log/", {"include_time": "absolute"}),
    (EXPERIMENTS, ".*", ".*", {"include_time": "absolute", "tail_limit": 2}),
    (RUNS, None, "h/|f/", {"lineage_to_the_root": False, "step_range": (10, 30)}),
    (RUNS, ".*", "log/", {}),
    (RUNS, ["nope"], "log/", {"include_time": "absolute"}),
]


@pytest.mark.parametrize(("kind", "containers", "attributes", "options"), SERIES_CASES)
def test_series(
    home: Path,
    local_snapshot: Any,
    kind: Kind,
    containers: Any,
    attributes: Any,
    options: dict[str, Any],
) -> None:
    fetch = nq.fetch_series if kind is EXPERIMENTS else runs.fetch_series
    key = "experiments" if kind is EXPERIMENTS else "runs"
    got = fetch(project=RICH, attributes=attributes, **{key: containers}, **options)
    with local_snapshot(RICH) as snap:
        matched = _matched(snap, kind, containers)
        series = snap.series(
            matched, restrict_types(resolve_attributes(attributes), list(FETCH_SERIES_TYPES))
        )
        rows = snap.point_series(
            series,
            mode=api.lineage_mode(kind, options.get("lineage_to_the_root", True)),
            step_range=StepRange(*options.get("step_range", (None, None))),
            tail_limit=options.get("tail_limit"),
        )
    expected = reference.series_frame(
        matched,
        series,
        rows,
        kind=kind.name,
        include_time=options.get("include_time") == "absolute",
    )
    assert_frame_equal(reference.normalize(got), reference.normalize(expected))


BUCKET_CASES = [
    (".*", "m/", 5, {}),
    (".*", "m/", 1000, {}),
    (".*", "m/", 1, {}),
    (".*", "m/loss", 7, {"include_point_previews": True}),
    (["alpha"], "m/", 13, {"lineage_to_the_root": False}),
    (["beta"], ["m/loss", "step"], 3, {}),
    (["nope"], "m/", 10, {}),
]


@pytest.mark.parametrize(("containers", "y", "limit", "options"), BUCKET_CASES)
def test_buckets(
    home: Path, local_snapshot: Any, containers: Any, y: Any, limit: int, options: dict[str, Any]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        got = nq.fetch_metric_buckets(
            project=RICH, experiments=containers, y=y, limit=limit, **options
        )
    previews = options.get("include_point_previews", False)
    with local_snapshot(RICH) as snap:
        matched = _matched(snap, EXPERIMENTS, containers)
        series = snap.series(
            matched, restrict_types(resolve_attributes(y), ["float_series"]), with_empty=previews
        )
        found = snap.buckets(
            series,
            limit=limit,
            mode=api.lineage_mode(EXPERIMENTS, options.get("lineage_to_the_root", True)),
            previews=previews,
        )
    expected = reference.buckets(matched, series, found)
    assert_frame_equal(got, expected)


@pytest.mark.parametrize("kind", [EXPERIMENTS, RUNS])
def test_download_files(home: Path, tmp_path: Path, kind: Kind) -> None:
    fetch_series = nq.fetch_series if kind is EXPERIMENTS else runs.fetch_series
    fetch_table = nq.fetch_experiments_table if kind is EXPERIMENTS else runs.fetch_runs_table
    download = nq.download_files if kind is EXPERIMENTS else runs.download_files
    key = "experiments" if kind is EXPERIMENTS else "runs"
    series = fetch_series(project=RICH, attributes="f/", **{key: ".*"})
    table = fetch_table(project=RICH, attributes="f/file", **{key: ".*"})
    files = api.resolve_files(series) + api.resolve_files(table)
    got = download(files=[*files, "not a file"], destination=tmp_path / "out")
    results = {}
    for f in files:
        results[f] = target_path((tmp_path / "out").resolve(), f)
    expected = reference.files(results, kind.name)
    assert_frame_equal(got, expected)
    for f, path in results.items():
        assert path.exists() and path.stat().st_size == f.size_bytes
    label = "alpha" if kind is EXPERIMENTS else "a1"
    assert (tmp_path / "out" / label / "f" / "file.txt").read_bytes() == b"hello world!"
