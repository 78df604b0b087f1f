"""``despina.init_project``: the project object of the old ``neptune`` client.

``init_project().fetch_runs_table(query=NQL).to_pandas()`` filters runs with NQL and returns one
row per run; ``trash_runs`` / ``restore_runs`` / ``delete_runs`` manage the trash;
``fetch_models_table`` lists the model registry. Tables hold one column per attribute path:
series show their last value, string sets (tags) a comma-separated string of sorted elements,
datetimes UTC ``Timestamp``s, files their storage path, artifacts their hash.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from despina.config import resolve_project
from despina.errors import InvalidQuery
from despina.store import Store, lifecycle
from despina.store.nql import compile_filter
from despina.store.sql import attribute_reads, table_reads
from despina.store.sysattrs import SYS_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Project", "Table", "init_project"]

_KINDS = {"run": "runs", "model": "models", "model_version": "model versions"}


class Table:
    """The result of a ``fetch_*_table`` call: rows of ``{path: value}``."""

    def __init__(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        self.rows = rows
        self.columns = columns

    def __len__(self) -> int:
        return len(self.rows)

    def to_rows(self) -> list[dict[str, Any]]:
        """The rows as dictionaries (a missing value is absent)."""
        return self.rows

    def to_pandas(self) -> pd.DataFrame:
        """One row per object, one column per attribute path (missing cells are NaN)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=self.columns)
        return frame

    def __repr__(self) -> str:
        return f"Table({len(self.rows)} rows x {len(self.columns)} columns)"


class Project:
    """A project of the embedded store (``workspace/project``)."""

    def __init__(
        self,
        project: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        store: str | os.PathLike[str] | None = None,
    ):
        self.name = resolve_project(project)
        self._home = home
        self._store_url = store
        self._opened: Store | None = None

    @classmethod
    def over(cls, store: Store, project: str) -> Project:
        """Project ``project`` read and written through ``store``, already open (a server's),
        which the object uses and never closes."""
        registry = cls(project)
        registry._opened = store
        return registry

    def _store(self) -> Store:
        """The store, opened on first use and kept for the life of this object."""
        if self._opened is None:
            self._opened = Store.open(self._home, url=self._store_url)
        return self._opened

    # -- tables ------------------------------------------------------------------------------

    def fetch_runs_table(
        self,
        query: str | None = None,
        columns: Sequence[str] | None = None,
        trashed: bool | None = False,
        limit: int | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
        progress_bar: Any = None,
    ) -> Table:
        """Runs matching the NQL ``query``.

        ``trashed=False`` leaves trashed runs out, ``True`` returns only them, ``None`` both.
        ``columns`` lists attribute paths (default: every attribute of the matched runs).

        Raises:
            NqlError: the query is malformed (the message shows where).
            InvalidQuery: a bad ``limit`` or ``sort_by``.
        """
        return self._fetch_table("run", query, columns, trashed, limit, sort_by, ascending)

    def fetch_models_table(
        self,
        query: str | None = None,
        columns: Sequence[str] | None = None,
        trashed: bool | None = False,
        limit: int | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
        progress_bar: Any = None,
    ) -> Table:
        """Models of the registry matching the NQL ``query`` (same arguments as runs)."""
        return self._fetch_table("model", query, columns, trashed, limit, sort_by, ascending)

    def fetch_model_versions_table(
        self,
        model_id: str,
        query: str | None = None,
        columns: Sequence[str] | None = None,
        trashed: bool | None = False,
        limit: int | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
    ) -> Table:
        """Versions of model ``model_id`` (its ``sys/id``) matching the NQL ``query``."""
        return self._fetch_table(
            "model_version", query, columns, trashed, limit, sort_by, ascending, model_id=model_id
        )

    def _fetch_table(
        self,
        kind: str,
        query: str | None,
        columns: Sequence[str] | None,
        trashed: bool | None,
        limit: int | None,
        sort_by: str,
        ascending: bool,
        model_id: str | None = None,
    ) -> Table:
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidQuery(f"limit must be a non-negative int or None, got {limit!r}")
        if columns is not None and isinstance(columns, str):
            columns = [columns]
        store = self._store()
        project_id = store.project_id(self.name)
        if not isinstance(sort_by, str) or not sort_by:
            raise InvalidQuery(f"sort_by must be an attribute path, got {sort_by!r}")
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
            rows, found = _values(conn, pks, columns)
        names = list(columns) if columns is not None else sorted(found)
        return Table(rows, names)

    # -- trash -------------------------------------------------------------------------------

    def trash_runs(self, ids: str | Iterable[str]) -> int:
        """Move runs (by ``sys/id`` or run ID) to the trash; returns how many."""
        return lifecycle.trash_runs(self._store(), self.name, _names(ids))

    def restore_runs(self, ids: str | Iterable[str]) -> int:
        """Take runs out of the trash; returns how many."""
        return lifecycle.restore_runs(self._store(), self.name, _names(ids))

    def delete_runs(self, ids: str | Iterable[str]) -> int:
        """Delete trashed runs for good, freeing their space; returns how many.

        Raises:
            InvalidQuery: a run is not in the trash (trash it first).
        """
        return lifecycle.delete_trashed_runs(self._store(), self.name, _names(ids))

    def set_description(self, run: str, description: str) -> None:
        """Set ``sys/description`` of a run."""
        lifecycle.set_description(self._store(), self.name, run, description)

    def __repr__(self) -> str:
        return f"Project({self.name!r})"


def init_project(
    project: str | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
) -> Project:
    """The project ``project`` (default ``DESPINA_PROJECT``, then ``NEPTUNE_PROJECT``) in the
    store at ``store`` (a store URL; default ``DESPINA_STORE``, then ``home``)."""
    return Project(project, home=home, store=store)


def _names(ids: str | Iterable[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else list(ids)


def _values(
    conn: Any, pks: list[int], columns: Sequence[str] | None
) -> tuple[list[dict[str, Any]], set[str]]:
    """Cells of the runs ``pks`` (in order) for ``columns`` (None: every attribute)."""
    import pandas as pd

    if not pks:
        return [], set()
    rows: dict[int, dict[str, Any]] = {pk: {} for pk in pks}
    wanted = set(columns) if columns is not None else None
    sys_paths = [p for p in SYS_COLUMNS if wanted is None or p in wanted]
    found: set[str] = set()
    if sys_paths:
        for pk, values in attribute_reads.sys_attribute_rows(conn, pks, sys_paths).items():
            for path, value in zip(sys_paths, values, strict=True):
                if value is not None:
                    rows[pk][path] = _sys_cell(SYS_COLUMNS[path].type, value, pd)
                    found.add(path)
    user: list[str] | None = None
    if wanted is not None:
        user = [p for p in wanted if p not in SYS_COLUMNS]
        if not user:
            return [rows[pk] for pk in pks], found
    for row in attribute_reads.attribute_rows(conn, pks, user):
        cell = _cell(row.type, row.num, row.text, row.point_count, pd)
        if cell is not _MISSING:
            rows[row.run_pk][row.path] = cell
            found.add(row.path)
    return [rows[pk] for pk in pks], found


_MISSING = object()


def _sys_cell(type_: str, value: Any, pd: Any) -> Any:
    if type_ == "datetime":
        return pd.Timestamp(value, unit="ms", tz="UTC")
    if type_ == "bool":
        return bool(value)
    return value


def _cell(type_: str, num: Any, text: str | None, count: int | None, pd: Any) -> Any:
    if type_ == "float":
        return float("nan") if num is None else float(num)
    if type_ == "int":
        return int(num)
    if type_ == "bool":
        return bool(num)
    if type_ == "datetime":
        return pd.Timestamp(num, unit="ms", tz="UTC")
    if type_ in ("string", "string_series"):
        return _MISSING if text is None else text
    if type_ == "string_set":
        return ",".join(json.loads(text or "[]"))
    if type_ == "float_series":  # no committed point yet (only previews): no value
        return _MISSING if not count else float("nan") if num is None else float(num)
    if type_ in ("file", "file_series"):
        return _MISSING if text is None else json.loads(text)["path"]
    if type_ == "histogram_series":
        return _MISSING if text is None else json.loads(text)
    if type_ == "artifact":
        return json.loads(text or "{}").get("hash", _MISSING)
    return _MISSING
