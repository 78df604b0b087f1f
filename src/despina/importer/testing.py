"""Writing exports in ``neptune-exporter``'s exact layout and schema, for tests, benchmarks and
trying the importer without a Neptune account.

>>> rows = [row("sys/custom_run_id", "string", "run-1"), row("metrics/loss", "float_series",
...         0.5, step=1, timestamp=1_700_000_000_000)]
>>> write_run(tmp / "data", "ws/proj", "run-1", [export_table("ws/proj", "run-1", rows)])
... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from despina.importer.layout import EXPORT_SCHEMA, sanitize

__all__ = ["export_table", "float_series_table", "row", "write_run"]

_VALUE_COLUMN = {
    "float": "float_value",
    "float_series": "float_value",
    "int": "int_value",
    "string": "string_value",
    "string_series": "string_value",
    "bool": "bool_value",
    "datetime": "datetime_value",
    "string_set": "string_set_value",
    "file": "file_value",
    "file_series": "file_value",
    "file_set": "file_value",
    "artifact": "file_value",
    "histogram_series": "histogram_value",
}
_MICRO = Decimal("0.000001")


def row(
    path: str,
    type_: str,
    value: Any = None,
    *,
    step: float | str | Decimal | None = None,
    timestamp: int | datetime | None = None,
    column: str | None = None,
) -> dict[str, Any]:
    """One export row. ``value`` goes into the column of ``type_`` (or ``column``): file types
    take the path relative to the files directory, histograms a dict (type, edges, values),
    datetimes epoch ms or an aware datetime."""
    out: dict[str, Any] = {"attribute_path": path, "attribute_type": type_}
    if step is not None:
        out["step"] = Decimal(str(step)).quantize(_MICRO)
    if timestamp is not None:
        out["timestamp"] = timestamp
    target = column or _VALUE_COLUMN.get(type_)
    if target is not None and value is not None:
        out[target] = {"path": value} if target == "file_value" else value
    return out


def export_table(project: str, run_id: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """A table in the exporter's schema from :func:`row` dicts."""
    rows = list(rows)
    columns: dict[str, list[Any]] = {name: [] for name in EXPORT_SCHEMA.names}
    for item in rows:
        for name in EXPORT_SCHEMA.names:
            columns[name].append(item.get(name))
    columns["project_id"] = [item.get("project_id", project) for item in rows]
    columns["run_id"] = [item.get("run_id", run_id) for item in rows]
    return pa.table(
        [pa.array(columns[f.name], type=f.type) for f in EXPORT_SCHEMA], schema=EXPORT_SCHEMA
    )


def _decimal_array(micro: npt.NDArray[np.int64]) -> pa.Array:
    words = np.empty((len(micro), 2), dtype="<i8")
    words[:, 0] = micro
    words[:, 1] = micro >> 63  # sign extension into the high word
    return pa.Array.from_buffers(
        pa.decimal128(18, 6), len(micro), [None, pa.py_buffer(words.tobytes())]
    )


def _constant(value: str, n: int) -> pa.Array:
    indices = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value])).cast(pa.string())


def float_series_table(
    project: str,
    run_id: str,
    paths: Sequence[str],
    path_index: npt.NDArray[np.int64],
    steps_micro: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    timestamps_ms: npt.NDArray[np.int64],
) -> pa.Table:
    """Float-series rows built straight from numpy columns (row ``i`` is a point of
    ``paths[path_index[i]]``), for exports of millions of points."""
    n = len(path_index)
    columns: dict[str, pa.Array] = {f.name: pa.nulls(n, f.type) for f in EXPORT_SCHEMA}
    columns["project_id"] = _constant(project, n)
    columns["run_id"] = _constant(run_id, n)
    columns["attribute_type"] = _constant("float_series", n)
    columns["attribute_path"] = pa.DictionaryArray.from_arrays(
        pa.array(path_index.astype(np.int32)), pa.array(list(paths), type=pa.string())
    ).cast(pa.string())
    columns["step"] = _decimal_array(steps_micro.astype(np.int64))
    columns["timestamp"] = pa.array(timestamps_ms.astype(np.int64)).cast(
        pa.timestamp("ms", tz="UTC")
    )
    columns["float_value"] = pa.array(values.astype(np.float64))
    return pa.table([columns[f.name] for f in EXPORT_SCHEMA], schema=EXPORT_SCHEMA)


def write_run(
    data_dir: Path,
    project: str,
    run_id: str,
    parts: Sequence[pa.Table | Sequence[pa.Table]],
    *,
    complete: bool = True,
    row_group_size: int | None = None,
) -> list[Path]:
    """Write a run's parts as the exporter does: ``<data_dir>/<sanitize(project)>/
    <sanitize(run_id)>_part_<n>.parquet``, Snappy-compressed with ``ParquetWriter``.

    A part given as a list of tables is written one table at a time (each becomes its own
    row groups, as the exporter's record batches do). ``complete=False`` leaves the run as an
    interrupted export leaves it: every part but ``part_0`` renamed into place, ``part_0``
    still a ``.tmp`` file.
    """
    directory = data_dir / sanitize(project)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for number, part in enumerate(parts):
        name = f"{sanitize(run_id)}_part_{number}.parquet"
        if number == 0 and not complete:
            name += ".tmp"
        path = directory / name
        tables = [part] if isinstance(part, pa.Table) else list(part)
        with pq.ParquetWriter(path, EXPORT_SCHEMA, compression="snappy") as writer:
            for table in tables:
                writer.write_table(table.cast(EXPORT_SCHEMA), row_group_size=row_group_size)
        written.append(path)
    return written
