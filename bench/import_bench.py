"""Import benchmark (issue 7): points/s importing a generated ``neptune-exporter`` export, beside
the raw pyarrow read of the same files in the same process (the floor any importer pays).

The export: RUNS runs × SERIES float series × STEPS steps, each run in two parts, rows grouped by
attribute as the exporter writes them; one more run has its rows shuffled (the sort path).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

Row = tuple[str, float, str]

RUNS = 8
SERIES = 100
STEPS = 5_000
SHUFFLED_STEPS = 1_000
T0 = 1_700_000_000_000
BATCH_ROWS = 100_000
"""Rows per row group, about what the exporter's record batches give."""


def _run_table(
    project: str, run_id: str, steps: int, *, shuffle: bool, seed: int
) -> tuple[pa.Table, pa.Table]:
    from despina.importer.testing import export_table, float_series_table, row

    rng = np.random.default_rng(seed)
    paths = [f"metrics/m{j:03d}" for j in range(SERIES)]
    index = np.repeat(np.arange(SERIES, dtype=np.int64), steps)
    step_micro = np.tile(np.arange(steps, dtype=np.int64) * 1_000_000, SERIES)
    values = rng.standard_normal(SERIES * steps)
    stamps = T0 + np.tile(np.arange(steps, dtype=np.int64) * 10, SERIES)
    if shuffle:
        order = rng.permutation(len(index))
        index, step_micro, values, stamps = (
            index[order],
            step_micro[order],
            values[order],
            stamps[order],
        )
    points = float_series_table(project, run_id, paths, index, step_micro, values, stamps)
    header = export_table(
        project,
        run_id,
        [
            row("sys/custom_run_id", "string", run_id),
            row("sys/name", "string", "bench"),
            row("sys/creation_time", "datetime", T0 + seed),
            row("params/lr", "float", 0.001 * seed),
        ],
    )
    return header, points


def _make_export(root: Path) -> tuple[Path, int, list[Path]]:
    from despina.importer.testing import write_run

    data = root / "data"
    files: list[Path] = []
    points = 0
    for i in range(RUNS + 1):
        shuffled = i == RUNS
        steps = SHUFFLED_STEPS if shuffled else STEPS
        header, table = _run_table("bench/import", f"run-{i}", steps, shuffle=shuffled, seed=i)
        half = table.num_rows // 2  # type: ignore[attr-defined]
        parts = [
            header,
            table.slice(0, half),  # type: ignore[attr-defined]
            table.slice(half),  # type: ignore[attr-defined]
        ]
        import pyarrow as pa

        files += write_run(
            data, "bench/import", f"run-{i}", [pa.concat_tables(parts[:2]), parts[2]]
        )
        points += table.num_rows  # type: ignore[attr-defined]
    return data, points, files


def _raw_read(files: list[Path]) -> tuple[float, float]:
    """Seconds to read the files with a plain ``pq.read_table``, and to read only what the
    importer decodes (dictionary-encoded strings, no all-null columns)."""
    start = time.perf_counter()
    for f in files:
        pq.read_table(f)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    for f in files:
        pq.read_table(
            f,
            columns=["attribute_path", "attribute_type", "step", "timestamp", "float_value"],
            read_dictionary=["attribute_path", "attribute_type"],
        )
    return plain, time.perf_counter() - start


def run() -> list[Row]:
    from despina.importer import import_neptune_export
    from despina.store import Store

    root = Path(tempfile.mkdtemp(prefix="despina-import-bench-"))
    try:
        data, points, files = _make_export(root)
        size = sum(f.stat().st_size for f in files)
        elapsed = rerun = math.inf
        plain = minimal = math.inf
        for attempt in range(2):  # best of two: the machine may be shared
            raw = _raw_read(files)
            plain, minimal = min(plain, raw[0]), min(minimal, raw[1])
            store = Store.open(root / f"home-{attempt}")
            start = time.perf_counter()
            report = import_neptune_export(data, store=store)
            elapsed = min(elapsed, time.perf_counter() - start)
            assert report.points == points and report.ok, (report.points, points)
            start = time.perf_counter()
            again = import_neptune_export(data, store=store)
            rerun = min(rerun, time.perf_counter() - start)
            assert again.count("exists") == RUNS + 1
            store.close()
        db = (root / "home-0" / "despina.db").stat().st_size
        return [
            (
                "import: points/s",
                points / elapsed,
                f"{points:,} points, {RUNS + 1} runs, {elapsed:.2f} s (target ≥ 2M/s)",
            ),
            (
                "baseline: pq.read_table, rows/s",
                points / plain,
                f"same {len(files)} files ({size / 1e6:.0f} MB), all columns, {plain:.2f} s",
            ),
            (
                "baseline: read of the decoded columns, rows/s",
                points / minimal,
                f"5 columns, dictionary strings, {minimal:.2f} s: the decoding floor",
            ),
            ("import time / decoding floor", elapsed / minimal, "reading overlaps writing"),
            ("re-import (every run exists), s", rerun, "idempotent: headers read, nothing written"),
            ("store bytes per point", db / points, "despina.db after import"),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
