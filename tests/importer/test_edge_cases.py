"""Edge cases of the format: odd column types, stray parts, bad rows, unusual forks and ids."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from despina.importer import ImportReport, import_neptune_export
from despina.importer.columns import decimal_micro, dictionary_codes
from despina.importer.layout import EXPORT_SCHEMA, discover, sanitize
from despina.importer.testing import export_table, row, write_run
from despina.store import Store
from despina.store.series import lineage, read_float_lineage, read_float_points

P = "ws/p"
T0 = 1_700_000_000_000


def header(run: str, **extra: Any) -> list[dict[str, Any]]:
    rows = [row("sys/custom_run_id", "string", run), row("sys/creation_time", "datetime", T0)]
    return rows + [row(path, "string", value) for path, value in extra.items()]


def run_import(tmp_path: Path, **kwargs: Any) -> tuple[ImportReport, Store]:
    home = tmp_path / "home"
    report = import_neptune_export(tmp_path / "data", tmp_path / "files", home=home, **kwargs)
    return report, Store.open(home)


def issues(report: ImportReport, run_id: str) -> dict[tuple[str, str | None], int]:
    for run in report.runs:
        if run.run_id == run_id:
            return {(i.code, i.path): i.count for i in run.issues}
    raise AssertionError(f"no run {run_id}")


def float_points(store: Store, run_id: str, path: str) -> tuple[list[int], list[float], list[int]]:
    conn = store.connection()
    (pk,) = conn.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    points = read_float_lineage(conn, lineage(conn, pk), path)
    return points.steps.tolist(), points.values.tolist(), points.timestamps.tolist()


def test_decimal_steps_are_read_exactly() -> None:
    values = ["0", "0.000001", "-3.5", "999999999999.999999", "1.1", None]
    array = pa.array([None if v is None else Decimal(v) for v in values], pa.decimal128(18, 6))
    steps, valid = decimal_micro(pa.chunked_array([array.slice(1), array.slice(0, 1)]))
    assert steps[:4].tolist() == [1, -3_500_000, 999_999_999_999_999_999, 1_100_000]
    assert valid.tolist() == [True, True, True, True, False, True]
    assert steps[5] == 0


def test_dictionary_codes_with_nulls_and_several_dictionaries() -> None:
    registry: dict[str, int] = {}
    first = pa.array(["a", None, "b"]).dictionary_encode()
    second = pa.array(["b", "c"]).dictionary_encode()
    codes = dictionary_codes(pa.chunked_array([first, second]), registry)
    assert codes.tolist() == [0, -1, 1, 1, 2]
    assert registry == {"a": 0, "b": 1, "c": 2}


def test_stray_parts_and_gaps(tmp_path: Path) -> None:
    table = export_table(P, "r", header("r"))
    paths = write_run(tmp_path / "data", P, "r", [table, table, table])
    paths[1].unlink()  # part_1 lost: the others are imported, the gap reported
    (paths[0].parent / (paths[0].name + ".tmp")).write_bytes(b"leftover")
    layout = discover(tmp_path / "data")
    assert [len(r.parts) for r in layout.runs] == [2] and layout.runs[0].missing_parts == (1,)
    assert layout.ignored_files and layout.ignored_files[0].name.endswith(".tmp")
    report, _ = run_import(tmp_path)
    assert ("PARTS_MISSING", None) in issues(report, "r")


def test_other_column_types_are_accepted(tmp_path: Path) -> None:
    rows = [
        *header("r"),
        row("m", "float_series", 1.0, step=1, timestamp=T0),
        row("m", "float_series", 2.0, step=2, timestamp=T0 + 1),
    ]
    table = export_table(P, "r", rows)
    odd = pa.schema(
        [
            pa.field(f.name, pa.large_string())
            if f.type == pa.string()
            else pa.field(f.name, pa.decimal128(20, 3))
            if f.name == "step"
            else pa.field(f.name, pa.timestamp("us", tz="UTC"))
            if f.name == "timestamp"
            else f
            for f in EXPORT_SCHEMA
        ]
    )
    table = table.cast(odd).append_column("extra", pa.array([1] * table.num_rows))
    directory = tmp_path / "data" / sanitize(P)
    directory.mkdir(parents=True)
    pq.write_table(table, directory / f"{sanitize('r')}_part_0.parquet")
    report, store = run_import(tmp_path)
    assert report.ok, report.to_json()
    assert float_points(store, "r", "m") == ([1_000_000, 2_000_000], [1.0, 2.0], [T0, T0 + 1])


def test_a_part_of_another_run_rejects_the_run(tmp_path: Path) -> None:
    good = export_table(P, "r", header("r"))
    other = export_table(P, "other", header("other"))
    write_run(tmp_path / "data", P, "r", [good, other])
    report, store = run_import(tmp_path)
    [run] = report.runs
    assert run.status == "failed"
    [issue] = run.issues
    assert "_part_1.parquet" in issue.message and "'other'" in issue.message
    assert store.connection().execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_bad_rows_are_skipped_and_reported(tmp_path: Path) -> None:
    rows = [
        *header("r"),
        row("m", "float_series", 1.0, step=2, timestamp=T0),
        row("m", "float_series", 3.0, step=1),  # no timestamp: the creation time
        row("m", "float_series", 4.0, step=-1, timestamp=T0),
        row("m", "float_series", None, step=5, timestamp=T0),
        row("m", "float_series", 5.0, timestamp=T0),  # no step
        row("m", "float", 1.0),  # the path is a series: conflicting type
        row("s", "string_series", None, step=1, timestamp=T0),
        row("s", "string_series", "ok", step=2, timestamp=T0),
        row("v", "int", 1),
        row("v", "int", 2),  # repeated single value: the last row wins
        row(
            "h",
            "histogram_series",
            {"type": "WEIRD", "edges": [0.0, 1.0], "values": [1.0]},
            step=0,
            timestamp=T0,
        ),
        row("f", "file", "../../outside.txt"),
        {"attribute_path": None, "attribute_type": "int", "int_value": 3},
    ]
    write_run(tmp_path / "data", P, "r", [export_table(P, "r", rows)])
    (tmp_path / "files" / sanitize(P)).mkdir(parents=True)
    report, store = run_import(tmp_path)
    found = issues(report, "r")
    assert found[("TIMESTAMP_MISSING", "m")] == 1
    assert found[("STEP_NEGATIVE", "m")] == 1
    assert found[("VALUE_MISSING", "m")] == 1
    assert found[("STEP_MISSING", "m")] == 1
    assert found[("FIELD_TYPE_CONFLICTING", "m")] == 1
    assert found[("VALUE_MISSING", "s")] == 1
    assert found[("VALUE_REPEATED", "v")] == 1
    assert found[("HISTOGRAM_TYPE_UNKNOWN", "h")] == 1
    assert found[("FILE_PATH_OUTSIDE_EXPORT", "f")] == 1
    assert found[("ROW_WITHOUT_PATH", None)] == 1
    assert float_points(store, "r", "m") == ([1_000_000, 2_000_000], [3.0, 1.0], [T0, T0])
    v = store.connection().execute("SELECT num FROM attributes WHERE path = 'v'").fetchone()
    assert v == (2,)


def test_duplicate_steps_across_parts_keep_the_first_part(tmp_path: Path) -> None:
    first = export_table(
        P, "r", [*header("r"), row("m", "float_series", 1.0, step=1, timestamp=T0)]
    )
    second = export_table(P, "r", [row("m", "float_series", 9.0, step=1, timestamp=T0)])
    write_run(tmp_path / "data", P, "r", [first, second])
    report, store = run_import(tmp_path)
    assert issues(report, "r")[("STEP_DUPLICATE", "m")] == 1
    assert float_points(store, "r", "m")[1] == [1.0]


def test_child_of_an_unreadable_parent_becomes_a_root(tmp_path: Path) -> None:
    write_run(tmp_path / "data", P, "parent", [export_table(P, "parent", header("parent"))])
    child = [
        *header("child"),
        row("sys/forking/parent", "string", "parent"),
        row("sys/forking/step", "float", 3.0),
        row("m", "float_series", 1.0, step=1, timestamp=T0),  # kept: the run is a root now
    ]
    write_run(tmp_path / "data", P, "child", [export_table(P, "child", child)])
    broken = tmp_path / "data" / sanitize(P) / f"{sanitize('parent')}_part_1.parquet"
    broken.write_bytes(b"garbage")
    report, store = run_import(tmp_path)
    assert ("FORK_PARENT_NOT_IMPORTED", None) in issues(report, "child")
    assert [r.status for r in report.runs] == ["failed", "imported"]
    row_ = store.connection().execute(
        "SELECT parent_id, (SELECT text FROM attributes a WHERE a.run_id = r.id AND "
        "a.path = 'sys/forking/recorded_parent') FROM runs r WHERE run_id = 'child'"
    )
    assert row_.fetchone() == (None, "parent")
    assert float_points(store, "child", "m")[0] == [1_000_000]


def test_2x_runs_sharing_a_custom_run_id(tmp_path: Path) -> None:
    for short in ("K-1", "K-2"):
        rows = [
            row("sys/id", "string", short),
            row("sys/custom_run_id", "string", "same"),
            row("sys/name", "string", "n"),
        ]
        write_run(tmp_path / "data", P, short, [export_table(P, short, rows)])
    report, _ = run_import(tmp_path, name_experiments=False)
    assert sorted(r.run_id for r in report.runs) == ["K-2", "same"]
    replaced = next(r for r in report.runs if r.run_id == "K-2")
    assert replaced.issues[0].code == "RUN_ID_REPLACED"
    store = Store.open(tmp_path / "home")
    names = store.connection().execute("SELECT experiment_name FROM runs").fetchall()
    assert names == [(None,), (None,)]  # --no-name-experiments


def test_unsorted_rows_of_many_series(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = [*header("r")]
    expected: dict[str, list[int]] = {}
    for j in range(5):
        steps = rng.choice(1000, size=50, replace=False)
        expected[f"m{j}"] = sorted(int(s) * 1_000_000 for s in steps)
        rows += [row(f"m{j}", "float_series", float(s), step=int(s), timestamp=T0) for s in steps]
    order = rng.permutation(len(rows))
    write_run(tmp_path / "data", P, "r", [export_table(P, "r", [rows[i] for i in order])])
    report, store = run_import(tmp_path)
    assert report.ok
    conn = store.connection()
    for path, steps in expected.items():
        (attr,) = conn.execute("SELECT id FROM attributes WHERE path = ?", (path,)).fetchone()
        points = read_float_points(conn, attr)
        assert points.steps.tolist() == steps
        assert points.values.tolist() == [s / 1e6 for s in steps]


@pytest.mark.parametrize("bad", ["", "a/b"])
def test_unusable_run_ids_fall_back_to_the_short_id(tmp_path: Path, bad: str) -> None:
    rows = [row("sys/custom_run_id", "string", bad), row("sys/id", "string", "SHORT-3")]
    write_run(tmp_path / "data", P, "SHORT-3", [export_table(P, "SHORT-3", rows)])
    report, _ = run_import(tmp_path)
    assert [r.run_id for r in report.runs] == ["SHORT-3"]


def test_symlinks_in_file_sets_are_refused(tmp_path: Path) -> None:
    """A file set (or artifact directory) holding a symlink does not read through it: the link
    is reported by name and the rest of the set is imported."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the export")
    root = tmp_path / "files" / sanitize(P)
    (root / "set").mkdir(parents=True)
    (root / "set" / "a.txt").write_bytes(b"inside")
    (root / "set" / "leak.txt").symlink_to(secret)
    (root / "set" / "passwd").symlink_to("/etc/passwd")
    (root / "art").mkdir()
    (root / "art" / "files_list.json").symlink_to(secret)
    rows = [
        *header("r"),
        row("code", "file_set", "set"),
        row("data", "artifact", "art"),
        row("n", "int", 1),
    ]
    write_run(tmp_path / "data", P, "r", [export_table(P, "r", rows)])
    report, store = run_import(tmp_path)
    run = next(r for r in report.runs if r.run_id == "r")
    refused = [i for i in run.issues if i.code == "FILE_SYMLINK"]
    messages = " ".join(i.message for i in refused)
    assert str(root / "set" / "leak.txt") in messages
    assert str(root / "set" / "passwd") in messages
    assert str(root / "art" / "files_list.json") in messages
    paths = {p for (p,) in store.connection().execute("SELECT path FROM attributes")}
    assert {"code", "n"} <= paths and "data" not in paths
    stored = [p.read_bytes() for p in (tmp_path / "home" / "blobs").rglob("*") if p.is_file()]
    assert stored == [b"inside"]
