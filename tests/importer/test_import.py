"""Round trips of neptune-exporter exports: import, read back through the store and through
``despina.query``, compare with the values written (exporter-format.md §7)."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from export_data import T0, THREE, TWO, Export, write_export

import despina.query as nq
from despina.cli import cli
from despina.importer import ImportReport, import_neptune_export
from despina.importer.layout import discover, sanitize
from despina.query import runs as qruns
from despina.store import Store
from despina.store.blobs import blob_path
from despina.store.runs import RunSpec, create_run


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return write_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def imported(export: Export, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImportReport]:
    home = tmp_path_factory.mktemp("home")
    report = import_neptune_export(export.data, export.files, home=home)
    return home, report


@pytest.fixture()
def query_home(imported: tuple[Path, ImportReport]) -> Iterator[Path]:
    nq.set_home(imported[0])
    yield imported[0]
    nq.set_home(None)


def by_run(report: ImportReport) -> dict[str, Any]:
    return {r.run_id: r for r in report.runs}


def codes(report: ImportReport, run_id: str) -> dict[tuple[str, str | None], int]:
    return {(i.code, i.path): i.count for i in by_run(report)[run_id].issues}


# -- discovery and the report ----------------------------------------------------------------


def test_sanitize_matches_the_exporter() -> None:
    assert sanitize("org/proj").startswith("org_proj-")
    assert len(sanitize("org/proj")) == len("org_proj-") + 16
    assert sanitize("Zürich run/1").startswith("Zürich_run_1-")  # Unicode-aware isalnum


def test_report_statuses_and_skipped_runs(imported: tuple[Path, ImportReport]) -> None:
    _, report = imported
    assert {r.run_id: r.status for r in report.runs} == {
        "base": "imported",
        "fork-1": "imported",
        "fork-2": "imported",
        "orphan": "imported",
        "cyc-a": "imported",
        "cyc-b": "imported",
        "solo": "imported",
        "TWO-1": "imported",
        "custom-2": "imported",
    }
    skipped = {s.name.split("/")[-1].rsplit("-", 1)[0]: s for s in report.skipped}
    assert skipped["incomplete"].kind == "incomplete"
    assert any(f.endswith("_part_1.parquet") for f in skipped["incomplete"].files)
    assert skipped["corrupt"].kind == "unreadable"
    assert "not a readable Parquet file" in skipped["corrupt"].reason
    assert "corrupt" in skipped["corrupt"].files[0]
    assert "lacks the column(s) histogram_value" in skipped["noschema"].reason
    assert any(s.kind == "models" for s in report.skipped)
    assert not report.ok  # unreadable files make the import not clean


def test_parents_are_imported_before_children(imported: tuple[Path, ImportReport]) -> None:
    order = [r.run_id for r in imported[1].runs]
    assert order.index("base") < order.index("fork-1") < order.index("fork-2")


def test_skipped_items_are_reported_by_name(imported: tuple[Path, ImportReport]) -> None:
    _, report = imported
    base = codes(report, "base")
    assert base[("STEP_DUPLICATE", "metrics/acc")] == 1
    assert base[("VALUE_MISSING", "params/none")] == 1
    assert base[("FILE_MISSING", "files/missing")] == 1
    assert codes(report, "fork-1")[("STEP_NOT_AFTER_FORK_POINT", "metrics/loss")] == 1
    assert codes(report, "solo")[("TYPE_UNSUPPORTED", "params/weird")] == 1
    assert ("FORK_PARENT_NOT_IN_EXPORT", None) in codes(report, "orphan")
    assert ("FORK_CYCLE", None) in codes(report, "cyc-a")
    assert ("FILE_SET_SPLIT", "source_code/files") in codes(report, "custom-2")
    run = by_run(report)["base"]
    assert run.rows == 238 and run.points == 211 and run.files == 4


# -- values read back ------------------------------------------------------------------------


def test_float_series_round_trip_through_the_query_api(query_home: Path, export: Export) -> None:
    for (run, path), points in export.metrics.items():
        project = TWO if run in ("TWO-1", "custom-2") else THREE
        frame = qruns.fetch_metrics(
            project=project,
            runs=[run],
            attributes=[path],
            lineage_to_the_root=False,
            include_time="absolute",
        )
        steps = [float(s) for s, _, _ in points]
        assert frame.index.get_level_values("step").tolist() == steps, (run, path)
        got = frame[(path, "value")].to_numpy()
        want = np.array([v for _, v, _ in points])
        np.testing.assert_array_equal(got, want)  # NaN and ±inf kept
        stamps = frame[(path, "absolute_time")]
        assert [int(t.timestamp() * 1000) for t in stamps] == [t for _, _, t in points]


def test_forks_inherit_their_parents_history(query_home: Path, export: Export) -> None:
    frame = qruns.fetch_metrics(project=THREE, runs=["fork-2"], attributes=["metrics/loss"])
    got = frame["metrics/loss"].droplevel("run")
    base = [(float(s), v) for s, v, _ in export.metrics[("base", "metrics/loss")] if s <= 25]
    fork1 = [(float(s), v) for s, v, _ in export.metrics[("fork-1", "metrics/loss")] if s <= 40.5]
    own = [(float(s), v) for s, v, _ in export.metrics[("fork-2", "metrics/loss")]]
    want = pd.Series(dict(base + fork1 + own))
    assert got.index.tolist() == want.index.tolist()
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    table = qruns.fetch_runs_table(
        project=THREE,
        runs=["base", "fork-1", "fork-2", "orphan"],
        attributes=["sys/forking/parent", "sys/forking/step", "sys/forking/depth"],
        sort_by="sys/creation_time",
        sort_direction="asc",
    )
    parents = table["sys/forking/parent"]
    assert pd.isna(parents.iloc[0]) and parents.tolist()[1:3] == ["base", "fork-1"]
    assert table["sys/forking/step"].tolist()[1:3] == [25.0, 40.5]
    assert table["sys/forking/depth"].tolist() == [0, 1, 2, 0]


def test_aggregates_cover_the_lineage(imported: tuple[Path, ImportReport], export: Export) -> None:
    store = Store.open(imported[0])
    row = (
        store.connection()
        .execute(
            "SELECT a.count, a.fmin, a.fmax, a.fcount, a.last_step, a.num FROM attributes a "
            "JOIN runs r ON r.id = a.run_id WHERE r.run_id = 'fork-1' AND a.path = 'metrics/loss'"
        )
        .fetchone()
    )
    store.close()
    inherited = [v for s, v, _ in export.metrics[("base", "metrics/loss")] if s <= 25]
    own = [v for _, v, _ in export.metrics[("fork-1", "metrics/loss")]]
    values = np.array(inherited + own)
    finite = values[np.isfinite(values)]
    assert row[0] == len(values)
    assert row[1:4] == (finite.min(), finite.max(), len(finite))
    assert row[4] == 54_500_000 and row[5] == own[-1]


def test_single_values_and_sys_fields(query_home: Path, export: Export) -> None:
    table = qruns.fetch_runs_table(project=THREE, attributes=r"^(params|sys/)")
    for run, values in export.singles.items():
        if run in ("TWO-1", "custom-2"):
            continue
        for path, value in values.items():
            assert table.loc[run, path] == value, (run, path)
    base = table.loc["base"]
    assert math.isnan(base["params/nan"])
    assert base["params/when"] == pd.Timestamp(T0 + 123, unit="ms", tz="UTC")
    assert base["sys/owner"] == "alice"
    assert base["sys/description"] == "the base run"
    assert base["sys/tags"] == {"t1", "t2"} and base["sys/group_tags"] == {"g"}
    assert base["sys/id"] == "THR-1"
    assert base["sys/creation_time"] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert base["sys/modification_time"] == pd.Timestamp(T0 + 500_000, unit="ms", tz="UTC")
    assert base["sys/ping_time"] == pd.Timestamp(T0 + 400_000, unit="ms", tz="UTC")
    assert base["sys/diagnostics/attributes/float_series_count"] == 2
    assert table.loc["orphan", "sys/forking/recorded_parent"] == "not-exported"
    assert table.loc["orphan", "sys/forking/recorded_step"] == 5.0
    assert table.loc["cyc-a", "sys/forking/recorded_parent"] == "cyc-b"
    assert pd.isna(table.loc["orphan", "sys/forking/parent"])


def test_experiments_and_heads(query_home: Path) -> None:
    assert nq.list_experiments(project=THREE) == ["exp-a"]
    heads = nq.fetch_experiments_table(project=THREE, attributes=["sys/custom_run_id"])
    assert heads.loc["exp-a", "sys/custom_run_id"] == "fork-1"  # marked is_head
    assert nq.list_experiments(project=TWO) == ["train"]  # 2.x runs sharing a display name
    heads = nq.fetch_experiments_table(project=TWO, attributes=["sys/custom_run_id"])
    assert heads.loc["train", "sys/custom_run_id"] == "custom-2"  # newest, none marked


def test_nql_filters_work_on_imported_runs(query_home: Path) -> None:
    assert qruns.list_runs(project=THREE, runs=nq.Filter.eq("params/name", "resnet")) == ["base"]
    found = qruns.list_runs(
        project=THREE,
        runs=nq.Filter.nql('metrics/loss:float_series > 0.0 AND sys/owner = "alice"'),
    )
    assert set(found) == {"base", "fork-1", "fork-2", "orphan"}
    failed = qruns.list_runs(project=TWO, runs=nq.Filter.eq("sys/failed", True))
    assert set(failed) == {"TWO-1", "custom-2"}


def test_string_histogram_and_file_series(query_home: Path, export: Export) -> None:
    frame = qruns.fetch_series(
        project=THREE, runs=["base"], attributes=["logs/stdout", "hist/w", "preds/img"]
    )
    lines = frame["logs/stdout"].dropna()
    assert list(zip(lines.index.get_level_values("step"), lines, strict=True)) == [
        (float(s), v) for s, v in export.strings[("base", "logs/stdout")]
    ]
    hist = frame["hist/w"].dropna().tolist()
    assert (hist[0].type, hist[0].edges, hist[0].values) == ("COUNTING", [0.0, 1.0, 2.0], [3, 4])
    assert (hist[1].type, hist[1].edges, hist[1].values) == ("DENSITY", [0.0, 0.5], [0.25])
    files = frame["preds/img"].dropna().tolist()
    assert [f.mime_type for f in files] == ["image/png"] * 3
    assert [f.size_bytes for f in files] == [5, 5, 5]


def _blob(home: Path, project: str, key: str) -> bytes:
    store = Store.open(home)
    workspace, name = project.split("/")
    sha = (
        store.connection()
        .execute(
            "SELECT b.sha256 FROM blobs b JOIN projects p ON p.id = b.project_id "
            "WHERE p.workspace = ? AND p.name = ? AND b.path = ?",
            (workspace, name, key),
        )
        .fetchone()[0]
    )
    data = blob_path(store.blobs_dir, sha).read_bytes()
    store.close()
    return data


def test_files_are_copied_into_the_store(query_home: Path, export: Export) -> None:
    table = qruns.fetch_runs_table(project=TWO, attributes=r"^(source_code|artifacts|images)")
    one = table.loc["TWO-1"]
    assert (
        _blob(query_home, TWO, one["source_code/files"].path)
        == export.blobs[("TWO-1", "source_code/files")]
    )
    artifact = one["artifacts/data"]
    assert artifact.mime_type == "application/json"
    assert _blob(query_home, TWO, artifact.path) == export.blobs[("TWO-1", "artifacts/data")]
    for member in ("a.py", "b.py"):
        ref = table.loc["custom-2", f"source_code/files/{member}"]
        assert _blob(query_home, TWO, ref.path) == member.encode()
    series = qruns.fetch_series(project=TWO, runs=["TWO-1"], attributes=["images/x"])
    refs = series["images/x"]
    assert refs.index.get_level_values("step").tolist() == [0.0, 1.0]  # 2.x: the file index
    assert [_blob(query_home, TWO, r.path) for r in refs] == [b"img 0", b"img 1"]
    config = qruns.fetch_runs_table(project=THREE, runs=["base"], attributes=["files/config"])
    ref = config.loc["base", "files/config"]
    assert ref.path.startswith("base-") and ref.path.endswith(".yaml")
    assert _blob(query_home, THREE, ref.path) == b"lr: 0.01\n"


def test_2x_runs(query_home: Path) -> None:
    table = qruns.fetch_runs_table(project=TWO, attributes=r"^sys/")
    assert table.loc["custom-2", "sys/id"] == "TWO-2"  # custom run id is the run id
    assert table.loc["TWO-1", "sys/id"] == "TWO-1"
    assert table.loc["TWO-1", "sys/hostname"] == "gpu-box"  # 2.x-only values kept read-only
    assert table.loc["TWO-1", "sys/running_time"] == 12.5
    assert table.loc["TWO-1", "sys/size"] == 2048
    assert table.loc["TWO-1", "sys/failed"]


def test_id_counter_continues_above_imported_numbers(imported: tuple[Path, ImportReport]) -> None:
    store = Store.open(imported[0])
    created = create_run(store, RunSpec(THREE, "logged-later"))
    row = (
        store.connection()
        .execute("SELECT short_no FROM runs WHERE id = ?", (created.pk,))
        .fetchone()
    )
    store.close()
    assert row[0] > 7


# -- idempotency, interruption, options ------------------------------------------------------


def snapshot(home: Path) -> list[tuple[Any, ...]]:
    """The store's content without what is random per import (row ids, uuids, file keys)."""
    store = Store.open(home)
    conn = store.connection()
    runs = conn.execute(
        "SELECT r.run_id, p.workspace || '/' || p.name, r.short_no, r.experiment_name, "
        "r.is_head, r.owner, r.creation_ms, r.failed, pr.run_id, r.fork_step, r.depth "
        "FROM runs r JOIN projects p ON p.id = r.project_id LEFT JOIN runs pr "
        "ON pr.id = r.parent_id WHERE r.run_id != 'logged-later' ORDER BY 1"
    ).fetchall()
    attrs = conn.execute(
        "SELECT r.run_id, a.path, a.type, CASE WHEN a.type LIKE 'file%' THEN NULL ELSE a.num "
        "END, CASE WHEN a.type LIKE 'file%' THEN NULL ELSE a.text END, a.count, a.last_step, "
        "a.fmin, a.fmax, a.fsum, a.fcount FROM attributes a JOIN runs r ON r.id = a.run_id "
        "WHERE r.run_id != 'logged-later' ORDER BY 1, 2"
    ).fetchall()
    chunks = conn.execute(
        "SELECT r.run_id, a.path, c.id & 16777215, c.n, c.steps, c.vals, c.ts FROM chunks c "
        "JOIN attributes a ON a.id = c.id >> 24 JOIN runs r ON r.id = a.run_id ORDER BY 1, 2, 3"
    ).fetchall()
    points = conn.execute(
        "SELECT r.run_id, a.path, p.step, p.ts, CASE WHEN a.type = 'file_series' THEN NULL "
        "ELSE p.value END FROM points p JOIN attributes a ON a.id = p.attr_id "
        "JOIN runs r ON r.id = a.run_id ORDER BY 1, 2, 3"
    ).fetchall()
    store.close()
    return [tuple(row) for row in [*runs, *attrs, *chunks, *points]]


def test_importing_twice_changes_nothing(
    imported: tuple[Path, ImportReport], export: Export, tmp_path: Path
) -> None:
    home = tmp_path / "twice"
    import_neptune_export(export.data, export.files, home=home)
    before = snapshot(home)
    again = import_neptune_export(export.data, export.files, home=home)
    assert {r.status for r in again.runs} == {"exists"}
    assert snapshot(home) == before
    assert by_run(again)["base"].sys_id == "THR-1"


def test_interrupted_import_completes_when_repeated(
    imported: tuple[Path, ImportReport],
    export: Export,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import despina.importer.neptune_export as module

    real = module.import_run
    calls = {"n": 0}

    def explode(*args: Any) -> None:
        raise KeyboardInterrupt

    def dying(store: Store, run: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:  # the run's chunks are written when the process dies
            monkeypatch.setattr("despina.store.imports._write_series", explode)
        return real(store, run, **kwargs)

    monkeypatch.setattr(module, "import_run", dying)
    home = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        import_neptune_export(export.data, export.files, home=home)
    store = Store.open(home)
    present = {r for (r,) in store.connection().execute("SELECT run_id FROM runs")}
    store.close()
    assert len(present) == 3  # the fourth run is not half there: it is not there at all
    monkeypatch.undo()
    rerun = import_neptune_export(export.data, export.files, home=home)
    assert sorted(r.status for r in rerun.runs).count("imported") == 6
    assert snapshot(home) == snapshot(imported[0])


def test_dry_run_writes_nothing(export: Export, tmp_path: Path) -> None:
    home = tmp_path / "dry"
    report = import_neptune_export(export.data, export.files, home=home, dry_run=True)
    assert not home.exists()
    assert {r.status for r in report.runs} == {"would import"}
    assert by_run(report)["base"].points == 211
    assert ("FILE_MISSING", "files/missing") in codes(report, "base")


def test_overwrite_replaces_runs(export: Export, tmp_path: Path) -> None:
    home = tmp_path / "overwrite"
    import_neptune_export(export.data, export.files, home=home)
    before = snapshot(home)
    report = import_neptune_export(export.data, export.files, home=home, overwrite=True)
    assert {r.status for r in report.runs} == {"imported"}
    assert snapshot(home) == before


def test_project_mapping_and_id_remapping(export: Export, tmp_path: Path) -> None:
    home = tmp_path / "mapped"
    store = Store.open(home)
    store.create_project("team/vision", key="VIS")
    create_run(store, RunSpec("team/vision", "already-here"))
    report = import_neptune_export(
        export.data, export.files, store=store, project={THREE: "team/vision"}
    )
    store.close()
    base = by_run(report)["base"]
    assert base.project == "team/vision"
    assert base.sys_id is not None and base.sys_id.startswith("VIS-")
    assert base.remapped and ("SYS_ID_REMAPPED", "sys/id") in codes(report, "base")
    assert by_run(report)["TWO-1"].project == TWO  # unmapped projects keep their ids
    nq.set_home(home)
    try:
        assert "base" in qruns.list_runs(project="team/vision")
    finally:
        nq.set_home(None)


def test_one_project_directory_and_the_default_files_directory(
    export: Export, tmp_path: Path
) -> None:
    project_dir = export.data / sanitize(TWO)
    report = import_neptune_export(project_dir, home=tmp_path / "one")
    assert {r.run_id for r in report.runs} == {"TWO-1", "custom-2"}
    assert by_run(report)["TWO-1"].files == 4  # found in ../../files, the exporter's default
    alone = tmp_path / "alone" / sanitize(TWO)
    shutil.copytree(project_dir, alone)
    report = import_neptune_export(alone, home=tmp_path / "two", dry_run=True)
    assert ("FILES_DIRECTORY_MISSING", "images/x") in codes(report, "TWO-1")
    assert len(discover(alone).runs) == 2


def test_exporter_errors_are_listed(export: Export, tmp_path: Path) -> None:
    errors = tmp_path / "neptune_exporter_errors.jsonl"
    entry = {
        "project_id": THREE,
        "run_id": "base",
        "attribute_path": "x",
        "attribute_type": "file",
        "exception": "Timeout",
    }
    errors.write_text(json.dumps(entry) + "\nnot json\n")
    report = import_neptune_export(
        export.data / sanitize(TWO), home=tmp_path / "e", dry_run=True, exporter_errors=errors
    )
    assert report.exporter_errors[0] == entry
    assert report.exporter_errors[1]["unparsed"] == "not json"


def test_ambiguous_project_option_is_refused(export: Export, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="map each one with --project SOURCE=TARGET"):
        import_neptune_export(export.data, home=tmp_path / "x", project="ws/merged")


# -- command line ----------------------------------------------------------------------------


def test_cli(export: Export, tmp_path: Path) -> None:
    home = tmp_path / "cli"
    report = tmp_path / "report.json"
    runner = CliRunner()
    args = ["import", "neptune-export", str(export.data), "--files", str(export.files)]
    result = runner.invoke(cli, [*args, "--home", str(home), "--report", str(report), "--quiet"])
    assert result.exit_code == 1, result.output  # the damaged files are reported: not clean
    assert "runs imported" in result.output
    assert "corrupt" in result.output and "incomplete run" in result.output
    saved = json.loads(report.read_text())
    assert len(saved["runs"]) == 9 and len(saved["skipped"]) == 4
    clean = runner.invoke(
        cli,
        [
            "import",
            "neptune-exporter",
            "--data-path",
            str(export.data / sanitize(TWO)),
            "--files-path",
            str(export.files),
            "--home",
            str(home),
            "--quiet",
        ],
    )
    assert clean.exit_code == 0, clean.output
    assert "runs exists" in clean.output
    missing = runner.invoke(cli, ["import", "neptune-export", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0
