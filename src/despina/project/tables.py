"""The tables of ``despina.init_project``, computed over a :class:`~despina.store.Store`.

:func:`fetch_table` is the one function behind ``fetch_runs_table`` / ``fetch_models_table`` /
``fetch_model_versions_table``: the in-process project calls it on its store, and a server runs it
on its own store for a remote project (``despina.server.native.projects``), so both give the same
table.

A :class:`Table` holds its cells column by column (``None``: no value); rows and the pandas frame
are built from them on demand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from despina.errors import InvalidQuery
from despina.store import Store
from despina.store.nql import compile_filter
from despina.store.sql import attribute_reads, table_reads
from despina.store.sysattrs import SYS_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KINDS", "Table", "check_arguments", "fetch_table"]

KINDS = ("run", "model", "model_version")
"""The objects a table lists: runs, registered models, versions of one model."""


class Table:
    """The result of a ``fetch_*_table`` call: one row per object, one column per path.

    ``Table(rows, columns)`` takes rows of ``{path: value}`` (a missing value is absent);
    :meth:`of_columns` takes the cells column by column.
    """

    def __init__(self, rows: list[dict[str, Any]] | None, columns: list[str]) -> None:
        self.columns = list(columns)
        self._rows = rows
        self._data: dict[str, list[Any]] | None = None
        self._length = len(rows) if rows is not None else 0

    @classmethod
    def of_columns(cls, data: dict[str, list[Any]], columns: list[str], length: int) -> Table:
        """The table whose column ``path`` holds ``data[path]`` (``None``: no value; a column
        absent from ``data`` has no value in any row)."""
        table = cls(None, columns)
        table._data = data
        table._length = length
        return table

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            rows: list[dict[str, Any]] = [{} for _ in range(self._length)]
            for name, values in (self._data or {}).items():
                for row, value in zip(rows, values, strict=True):
                    if value is not None:
                        row[name] = value
            self._rows = rows
        return self._rows

    def column(self, name: str) -> list[Any]:
        """The cells of column ``name`` in row order (``None``: no value)."""
        if self._data is not None:
            found = self._data.get(name)
            return list(found) if found is not None else [None] * self._length
        return [row.get(name) for row in self.rows]

    def __len__(self) -> int:
        return self._length

    def to_rows(self) -> list[dict[str, Any]]:
        """The rows as dictionaries (a missing value is absent)."""
        return self.rows

    def to_pandas(self) -> pd.DataFrame:
        """One row per object, one column per attribute path (missing cells are NaN)."""
        import numpy as np
        import pandas as pd

        if self._data is None or not self._length:
            return pd.DataFrame(self.rows, columns=self.columns)
        # Rows as tuples with NaN where a value is missing: pandas infers each column's dtype
        # exactly as from the rows as dictionaries (both fill the gaps with NaN first).
        missing = [np.nan] * self._length
        lists = []
        for name in self.columns:
            values = self._data.get(name)
            if values is None:
                lists.append(missing)
            elif None in values:
                lists.append([np.nan if value is None else value for value in values])
            else:
                lists.append(values)
        return pd.DataFrame(list(zip(*lists, strict=True)), columns=self.columns)

    def __repr__(self) -> str:
        return f"Table({len(self)} rows x {len(self.columns)} columns)"


def check_arguments(
    kind: str, columns: Sequence[str] | str | None, limit: object, sort_by: object
) -> list[str] | None:
    """The column list of a table call, after checking its arguments.

    Raises:
        InvalidQuery: a bad ``limit``, ``sort_by`` or ``columns``.
    """
    if kind not in KINDS:
        raise InvalidQuery(f"unknown table {kind!r}: expected one of {', '.join(KINDS)}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidQuery(f"limit must be a non-negative int or None, got {limit!r}")
    if not isinstance(sort_by, str) or not sort_by:
        raise InvalidQuery(f"sort_by must be an attribute path, got {sort_by!r}")
    if columns is None:
        return None
    names = [columns] if isinstance(columns, str) else list(columns)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise InvalidQuery(f"columns must be attribute paths (strings), got {bad[0]!r}")
    return names


def fetch_table(
    store: Store,
    project: str,
    kind: str,
    query: str | None = None,
    columns: Sequence[str] | str | None = None,
    trashed: bool | None = False,
    limit: int | None = None,
    sort_by: str = "sys/creation_time",
    ascending: bool = False,
    model_id: str | None = None,
) -> Table:
    """The ``kind`` objects (runs, models, versions of ``model_id``) of ``project`` matching the
    NQL ``query``, sorted by ``sort_by``, at most ``limit``, with ``columns`` (default: every
    attribute of the matched objects).

    Raises:
        NqlError: the query is malformed (the message shows where).
        InvalidQuery: a bad ``limit``, ``sort_by`` or ``columns``.
        ProjectNotFound: no such project.
    """
    names = check_arguments(kind, columns, limit, sort_by)
    project_id = store.project_id(project)
    now_ms = int(time.time() * 1000)
    with store.read() as conn:
        where = None
        if query and query.strip():
            where = compile_filter(conn, query, now_ms=now_ms, project_ids=[project_id])
        pks = table_reads.object_pks(
            conn,
            project_id,
            kind=kind,  # type: ignore[arg-type]
            trashed=trashed,
            model_id=model_id,
            where=where,
            sort_by=sort_by,
            ascending=ascending,
            limit=limit,
        )
        data = _values(conn, pks, names)
    return Table.of_columns(data, names if names is not None else sorted(data), len(pks))


def _values(conn: Any, pks: list[int], columns: list[str] | None) -> dict[str, list[Any]]:
    """Cells of the objects ``pks`` (in order) for ``columns`` (None: every attribute), column
    by column; a column no object has a value for is left out."""
    import pandas as pd

    if not pks:
        return {}
    index = {pk: i for i, pk in enumerate(pks)}
    data: dict[str, list[Any]] = {}
    wanted = set(columns) if columns is not None else None
    sys_paths = [p for p in SYS_COLUMNS if wanted is None or p in wanted]
    if sys_paths:
        for pk, values in attribute_reads.sys_attribute_rows(conn, pks, sys_paths).items():
            for path, value in zip(sys_paths, values, strict=True):
                if value is not None:
                    cells = data.get(path)
                    if cells is None:
                        cells = data[path] = [None] * len(pks)
                    cells[index[pk]] = _sys_cell(SYS_COLUMNS[path].type, value, pd)
    user: list[str] | None = None
    if wanted is not None:
        user = [p for p in wanted if p not in SYS_COLUMNS]
        if not user:
            return data
    for run_pk, path, type_, num, text, count in attribute_reads.table_cells(conn, pks, user):
        cell = _cell(type_, num, text, count, pd)
        if cell is not None:
            cells = data.get(path)
            if cells is None:
                cells = data[path] = [None] * len(pks)
            cells[index[run_pk]] = cell
    return data


def _sys_cell(type_: str, value: Any, pd: Any) -> Any:
    if type_ == "datetime":
        return pd.Timestamp(value, unit="ms", tz="UTC")
    if type_ == "bool":
        return bool(value)
    return value


def _cell(type_: str, num: Any, text: str | None, count: int | None, pd: Any) -> Any:
    """The table cell of one attribute (None: no value)."""
    if type_ == "float":
        return float("nan") if num is None else float(num)
    if type_ == "int":
        return int(num)
    if type_ == "bool":
        return bool(num)
    if type_ == "datetime":
        return pd.Timestamp(num, unit="ms", tz="UTC")
    if type_ in ("string", "string_series"):
        return text
    if type_ == "string_set":
        return ",".join(json.loads(text or "[]"))
    if type_ == "float_series":  # no committed point yet (only previews): no value
        return None if not count else float("nan") if num is None else float(num)
    if type_ in ("file", "file_series"):
        return None if text is None else json.loads(text)["path"]
    if type_ == "histogram_series":
        return None if text is None else json.loads(text)
    if type_ == "artifact":
        return json.loads(text or "{}").get("hash")
    return None
