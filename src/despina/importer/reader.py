"""Reading the Parquet parts of one exported run (exporter-format.md §3, §5, §7.2).

Two passes over each run: :func:`read_header` reads only the few ``sys/`` rows that order runs
and create them (the row groups holding no such row are not decoded), :func:`read_run` reads
everything when the run's turn comes, so one large run at a time is in memory. Small runs are
read whole in the first pass and kept (their number bounded by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from despina.errors import DespinaError
from despina.importer.columns import dictionary_codes
from despina.importer.layout import EXPORT_SCHEMA, RunFiles

__all__ = [
    "COLUMNS",
    "HEADER_PATHS",
    "ExportFormatError",
    "RunHeader",
    "read_header",
    "read_run",
    "row_value",
]

COLUMNS = tuple(EXPORT_SCHEMA.names)
"""The columns read; any other column of a file is ignored."""

_DICTIONARY_COLUMNS = ["project_id", "run_id", "attribute_path", "attribute_type"]
_VALUE_COLUMN = {
    "float": "float_value",
    "int": "int_value",
    "string": "string_value",
    "bool": "bool_value",
    "datetime": "datetime_value",
    "string_set": "string_set_value",
}

HEADER_PATHS = (
    "sys/custom_run_id",
    "sys/id",
    "sys/name",
    "sys/experiment/is_head",
    "sys/forking/parent",
    "sys/forking/step",
    "sys/creation_time",
)
"""The ``sys/`` rows that identify, order and create a run (§5)."""

_HEADER_MIN = min(HEADER_PATHS)
_HEADER_MAX = max(HEADER_PATHS)
_HEADER_COLUMNS = (
    "attribute_path",
    "attribute_type",
    "int_value",
    "float_value",
    "string_value",
    "bool_value",
    "datetime_value",
)


class ExportFormatError(DespinaError, ValueError):
    """A file of the export cannot be read or does not follow the exporter's format."""


@dataclass(frozen=True, slots=True)
class RunHeader:
    """What identifies a run and places it among the others, read before its data."""

    files: RunFiles
    project_id: str
    run_id: str
    """The ``run_id`` column: 3.x custom run id, 2.x short id (``SAN-1``)."""
    rows: int
    values: dict[str, Any]
    """The :data:`HEADER_PATHS` rows found, by path (the last row read wins)."""

    @property
    def sys_id(self) -> str | None:
        value = self.values.get("sys/id")
        return value if isinstance(value, str) and value else None

    @property
    def custom_run_id(self) -> str | None:
        value = self.values.get("sys/custom_run_id")
        return value if isinstance(value, str) and value else None

    @property
    def is_2x(self) -> bool:
        """2.x-style: the ``sys/id`` row equals ``run_id`` (§7.2 step 4)."""
        return self.sys_id == self.run_id

    @property
    def target_run_id(self) -> str:
        """despina's ``sys/custom_run_id`` for the run (§7.2 step 4)."""
        if self.is_2x:
            return self.custom_run_id or self.run_id
        return self.run_id

    @property
    def name(self) -> str | None:
        value = self.values.get("sys/name")
        return value if isinstance(value, str) and value else None

    @property
    def is_head(self) -> bool:
        return self.values.get("sys/experiment/is_head") is True

    @property
    def fork_parent(self) -> str | None:
        value = self.values.get("sys/forking/parent")
        return value if isinstance(value, str) and value else None

    @property
    def fork_step(self) -> float | None:
        value = self.values.get("sys/forking/step")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    @property
    def creation_ms(self) -> int | None:
        value = self.values.get("sys/creation_time")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- schema ----------------------------------------------------------------------------------


def _type_problem(name: str, found: pa.DataType) -> str | None:
    """Why ``found`` cannot stand for the exporter's type of column ``name`` (None: it can)."""
    if pa.types.is_dictionary(found):
        found = found.value_type
    expected = EXPORT_SCHEMA.field(name).type
    if found == expected:
        return None
    ok = False
    if pa.types.is_string(expected):
        ok = pa.types.is_string(found) or pa.types.is_large_string(found)
    elif pa.types.is_decimal(expected):
        ok = pa.types.is_decimal(found) and found.scale <= 6
    elif pa.types.is_timestamp(expected):
        ok = pa.types.is_timestamp(found)
    elif name == "int_value":
        ok = pa.types.is_integer(found)
    elif name == "float_value":
        ok = pa.types.is_floating(found)
    elif name == "string_set_value":
        ok = (pa.types.is_list(found) or pa.types.is_large_list(found)) and (
            pa.types.is_string(found.value_type) or pa.types.is_large_string(found.value_type)
        )
    elif pa.types.is_struct(expected):
        ok = pa.types.is_struct(found) and all(found.get_field_index(f.name) >= 0 for f in expected)
    if ok:
        return None
    return f"column {name!r} has type {found}, expected {expected}"


def _check_schema(path: Path, schema: pa.Schema) -> list[str]:
    """The columns to cast to the exporter's types; raises on a missing or unusable column."""
    missing = [name for name in COLUMNS if schema.get_field_index(name) < 0]
    if missing:
        raise ExportFormatError(
            f"{str(path)!r} lacks the column(s) {', '.join(missing)} of the neptune-exporter "
            "schema; it was not written by neptune-exporter (or by a version this importer "
            "does not know); re-export the run or remove the file"
        )
    casts = []
    for name in COLUMNS:
        found = schema.field(name).type
        problem = _type_problem(name, found)
        if problem is not None:
            raise ExportFormatError(f"{str(path)!r}: {problem}; re-export the run")
        base = found.value_type if pa.types.is_dictionary(found) else found
        if base != EXPORT_SCHEMA.field(name).type:
            casts.append(name)
    return casts


def _open(path: Path) -> tuple[pq.ParquetFile, list[str]]:
    try:
        parquet = pq.ParquetFile(path, read_dictionary=_DICTIONARY_COLUMNS)
    except (pa.ArrowException, OSError) as exc:
        raise ExportFormatError(
            f"{str(path)!r} is not a readable Parquet file ({exc}); the export may be "
            "damaged: re-export the run"
        ) from None
    return parquet, _check_schema(path, parquet.schema_arrow)


def _cast(table: pa.Table, casts: list[str]) -> pa.Table:
    for name in casts:
        index = table.schema.get_field_index(name)
        if index < 0:
            continue
        column = table.column(index)
        if pa.types.is_dictionary(column.type):
            continue
        target = EXPORT_SCHEMA.field(name).type
        column = _cast_struct(column, target) if pa.types.is_struct(target) else column.cast(target)
        table = table.set_column(index, name, column)
    return table


def _cast_struct(column: pa.ChunkedArray, target: pa.StructType) -> pa.ChunkedArray:
    chunks = []
    for chunk in column.chunks:
        fields = [chunk.field(f.name).cast(f.type) for f in target]
        chunks.append(pa.StructArray.from_arrays(fields, fields=list(target), mask=chunk.is_null()))
    return pa.chunked_array(chunks, type=target)


# -- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FilePlan:
    """What the footer statistics of a file tell before anything is decoded."""

    null_columns: frozenset[str]
    """Columns without a single value in the file: not read."""
    constants: dict[str, str]
    """``project_id`` / ``run_id`` when every row group has that one value: not read."""


def _plan(parquet: pq.ParquetFile) -> _FilePlan:
    meta = parquet.metadata
    nulls = set(COLUMNS)
    constants: dict[str, set[str] | None] = {"project_id": set(), "run_id": set()}
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for j in range(row_group.num_columns):
            chunk = row_group.column(j)
            top = chunk.path_in_schema.split(".", 1)[0]
            stats = chunk.statistics
            known = stats is not None and stats.has_null_count
            if top in nulls and not (known and stats.null_count == chunk.num_values):
                nulls.discard(top)
            if top in constants and constants[top] is not None:
                if known and stats.null_count == 0 and stats.has_min_max:
                    low, high = stats.min, stats.max
                    if isinstance(low, bytes):
                        low, high = low.decode("utf-8", "replace"), high.decode("utf-8", "replace")
                    if low == high and isinstance(low, str):
                        constants[top].add(low)  # type: ignore[union-attr]
                        continue
                constants[top] = None
    single = {
        name: next(iter(found)) for name, found in constants.items() if found and len(found) == 1
    }
    return _FilePlan(frozenset(nulls), single)


def _may_hold_header(parquet: pq.ParquetFile, group: int) -> bool:
    """Whether the row group's ``attribute_path`` range can include a header path."""
    row_group = parquet.metadata.row_group(group)
    for j in range(row_group.num_columns):
        chunk = row_group.column(j)
        if chunk.path_in_schema != "attribute_path":
            continue
        stats = chunk.statistics
        if stats is None or not stats.has_min_max:
            return True
        low, high = stats.min, stats.max
        if isinstance(low, bytes):
            low, high = low.decode("utf-8", "replace"), high.decode("utf-8", "replace")
        return not (high < _HEADER_MIN or low > _HEADER_MAX)
    return True


# -- values ----------------------------------------------------------------------------------


def row_value(table: pa.Table, row: int, type_: str) -> Any:
    """The Python value of a single-value row of ``type_`` (datetimes as epoch ms); None when
    the row has no value or the column was left out (see :func:`read_run`)."""
    column = _VALUE_COLUMN[type_]
    if table.schema.get_field_index(column) < 0:  # left out: null in every row
        return None
    scalar = table.column(column)[row]
    if type_ == "datetime":
        if not scalar.is_valid:
            return None
        return int(scalar.cast(pa.int64()).as_py())
    return scalar.as_py()


# -- reading ---------------------------------------------------------------------------------


def _read_error(path: Path, exc: Exception) -> ExportFormatError:
    return ExportFormatError(
        f"{str(path)!r} could not be read ({exc}); the file is damaged: re-export the run"
    )


def _identity(table: pa.Table, path: Path) -> tuple[str, str]:
    """The one ``project_id`` and ``run_id`` of the rows (§7.2 step 2)."""
    found = []
    for name in ("project_id", "run_id"):
        registry: dict[str, int] = {}
        codes = dictionary_codes(table.column(name), registry)
        if len(codes) == 0:
            raise ExportFormatError(f"{str(path)!r} has no rows")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0:
            raise ExportFormatError(f"{str(path)!r}: column {name!r} has null values")
        if lo != hi:
            words = sorted(w for w, c in registry.items() if c in set(np.unique(codes).tolist()))
            raise ExportFormatError(
                f"{str(path)!r}: column {name!r} holds several values ({', '.join(words[:5])}); "
                "an exported run file holds exactly one run"
            )
        found.append(next(w for w, c in registry.items() if c == lo))
    return found[0], found[1]


_Opened = tuple[Path, pq.ParquetFile, list[str], _FilePlan]


def _open_parts(files: RunFiles) -> list[_Opened]:
    opened = []
    for path in files.parts:
        parquet, casts = _open(path)
        opened.append((path, parquet, casts, _plan(parquet)))
    return opened


def _header_rows(paths: pa.ChunkedArray | pa.Array) -> list[int]:
    """Indices of the rows whose path is one of :data:`HEADER_PATHS` (decided on the
    dictionary, without building Arrow arrays from Python objects)."""
    registry: dict[str, int] = {}
    codes = dictionary_codes(paths, registry)
    wanted = [registry[p] for p in HEADER_PATHS if p in registry]
    if not wanted:
        return []
    return np.flatnonzero(np.isin(codes, wanted)).tolist()


def _header_values(table: pa.Table, values: dict[str, Any], rows: list[int] | None = None) -> None:
    """Add the :data:`HEADER_PATHS` rows of ``table`` to ``values`` (the last row wins)."""
    paths = table.column("attribute_path")
    types = table.column("attribute_type")
    for i in _header_rows(paths) if rows is None else rows:
        type_ = types[i].as_py()
        if type_ in _VALUE_COLUMN:
            values[paths[i].as_py()] = row_value(table, i, type_)


def read_header(files: RunFiles, *, whole_below: int = 0) -> tuple[RunHeader, pa.Table | None]:
    """Read the identity and the :data:`HEADER_PATHS` rows of a run, checking every part's
    schema. Row groups without any header row are not decoded.

    A run of fewer than ``whole_below`` rows is read whole instead, single-threaded (cheaper
    than two reads of a small file), and its table is returned for :func:`read_run` to reuse.

    Raises:
        ExportFormatError: a part is unreadable, has the wrong schema, or the parts disagree on
            the project or run id.
    """
    opened = _open_parts(files)
    rows = sum(parquet.metadata.num_rows for _, parquet, _, _ in opened)
    values: dict[str, Any] = {}
    if 0 < rows < whole_below:
        table, ids = _read_parts(opened, files, None, threads=False)
        _header_values(table, values)
        return RunHeader(files, ids[0], ids[1], rows, values), table
    identity: tuple[str, str] | None = None
    for path, parquet, casts, plan in opened:
        columns = [c for c in _HEADER_COLUMNS if c not in plan.null_columns]
        try:
            for group in range(parquet.num_row_groups):
                if identity is None and parquet.metadata.row_group(group).num_rows:
                    if len(plan.constants) == 2:
                        identity = (plan.constants["project_id"], plan.constants["run_id"])
                    else:
                        ids = parquet.read_row_group(
                            group, columns=["project_id", "run_id"], use_threads=False
                        )
                        identity = _identity(ids.slice(0, 1), path)
                if not _may_hold_header(parquet, group):
                    continue
                paths = parquet.read_row_group(
                    group, columns=["attribute_path"], use_threads=False
                ).column(0)
                hits = _header_rows(paths)
                if not hits:
                    continue
                table = parquet.read_row_group(group, columns=columns, use_threads=False)
                _header_values(_cast(table, casts), values, hits)
        except (pa.ArrowException, OSError) as exc:
            raise _read_error(path, exc) from None
    if identity is None:
        raise ExportFormatError(
            f"run {files.name!r} has no rows in {', '.join(str(p) for p in files.parts)}; "
            "re-export the run"
        )
    return RunHeader(files, identity[0], identity[1], rows, values), None


def read_run(header: RunHeader) -> pa.Table:
    """Every row of a run, parts in order, with the exporter's column types.

    Columns that the footer statistics show to be null in every row are left out of the table
    (materializing millions of nulls costs more than reading the data); so are ``project_id``
    and ``run_id``, after the identity checks of §7.2.

    Raises:
        ExportFormatError: a part is unreadable, has the wrong schema, or holds rows of another
            project or run.
    """
    opened = _open_parts(header.files)
    expected = (header.project_id, header.run_id)
    return _read_parts(opened, header.files, expected, threads=header.rows >= 100_000)[0]


def _read_parts(
    opened: list[_Opened],
    files: RunFiles,
    expected: tuple[str, str] | None,
    *,
    threads: bool,
) -> tuple[pa.Table, tuple[str, str]]:
    tables = []
    for path, parquet, casts, plan in opened:
        columns = [c for c in COLUMNS if c not in plan.null_columns and c not in plan.constants]
        try:
            table = _cast(parquet.read(columns=columns, use_threads=threads), casts)
            if table.num_rows == 0:
                continue
            if len(plan.constants) == 2:
                identity = (plan.constants["project_id"], plan.constants["run_id"])
            else:
                ids = parquet.read(columns=["project_id", "run_id"], use_threads=threads)
                identity = _identity(_cast(ids, casts), path)
        except (pa.ArrowException, OSError) as exc:
            raise _read_error(path, exc) from None
        if expected is None:
            expected = identity
        if identity != expected:
            raise ExportFormatError(
                f"{str(path)!r} holds rows of project {identity[0]!r} run {identity[1]!r}, "
                f"but the run's other parts are project {expected[0]!r} run "
                f"{expected[1]!r}; remove the stray file or re-export the run"
            )
        tables.append(table.drop_columns([c for c in ("project_id", "run_id") if c in columns]))
    if not tables or expected is None:
        raise ExportFormatError(f"run {files.name!r} has no rows; re-export the run")
    if len(tables) == 1:
        return tables[0], expected
    names = [c for c in COLUMNS if any(t.schema.get_field_index(c) >= 0 for t in tables)]
    aligned = []
    for table in tables:
        for name in names:  # a column present in some parts only: nulls for the others
            if table.schema.get_field_index(name) < 0:
                table = table.append_column(
                    pa.field(name, _read_type(name, tables)),
                    pa.nulls(table.num_rows, _read_type(name, tables)),
                )
        aligned.append(table.select(names))
    try:
        return pa.concat_tables(aligned, promote_options="permissive"), expected
    except pa.ArrowException as exc:
        raise ExportFormatError(
            f"the parts of run {files.name!r} have incompatible schemas ({exc}); re-export the run"
        ) from None


def _read_type(name: str, tables: list[pa.Table]) -> pa.DataType:
    """The type column ``name`` was read with (dictionary-encoded for the id columns)."""
    for table in tables:
        index = table.schema.get_field_index(name)
        if index >= 0:
            return table.schema.field(index).type
    return EXPORT_SCHEMA.field(name).type
