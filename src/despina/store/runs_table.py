"""Reads behind the web UI's pages: the runs table one page at a time, and the small lookups
around it (runs by ``sys/custom_run_id``, a run's trashed flag, the newest run's attributes,
live run counts per project).

A table of 100,000 runs must not be loaded whole, so :func:`runs_page` answers a count and one
page (``LIMIT``/``OFFSET``) with the NQL compiler and the ``sys/`` columns of the query service.
Trashed runs are left out unless asked for; model-registry objects never appear.

Every function but :func:`project_run_counts` reads inside a read transaction over one project
that the caller holds (:class:`ProjectReads`, the query service's ``Snapshot``), so that a page
and its cells are read from the same state of the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from despina.errors import InvalidQuery, RunNotFound
from despina.store import Store
from despina.store.nql import compile_filter
from despina.store.reads import ProjectReads
from despina.store.series_columns import aggregate_sql, parse_series_column
from despina.store.sysattrs import SYS_COLUMNS, SYS_STRING_SETS

__all__ = [
    "SORTABLE_TYPES",
    "PageRuns",
    "RunRow",
    "find_runs",
    "newest_run_attributes",
    "project_run_counts",
    "run_is_trashed",
    "runs_page",
    "sort_type",
]

_NUMERIC = frozenset({"float", "int", "bool", "datetime", "float_series"})
_TEXT = frozenset({"string", "string_series", "string_set"})
SORTABLE_TYPES = _NUMERIC | _TEXT
"""Types a column can be sorted by (files and histograms cannot)."""

# SQLite binds at most 999 parameters in older builds: look runs up in batches below that
_IN_BATCH = 900


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the UI lists it.

    ``label`` is the experiment name in the experiments view and ``sys/custom_run_id``
    otherwise; ``sort_key`` is the value the page was sorted by (None when the run has none,
    and for lookups that do not sort).
    """

    pk: int
    label: str
    run_id: str
    experiment_name: str | None
    parent_pk: int | None
    fork_step: int | None
    creation_ms: int
    trashed: bool = False
    sort_key: Any = None


@dataclass(frozen=True, slots=True)
class PageRuns:
    """One page of the runs table: the matching total, the type the page was sorted by (None
    when no run has the column) and the page's runs in order."""

    total: int
    sort_type: str | None
    rows: list[RunRow]


def project_run_counts(store: Store) -> dict[int, int]:
    """Per project id, its runs that are neither trashed nor model-registry objects.

    Projects without such runs are absent from the answer.
    """
    return {
        int(project_id): int(count)
        for project_id, count in store.connection().execute(
            "SELECT project_id, count(*) FROM runs WHERE kind = 'run' AND trashed = 0 "
            "GROUP BY project_id"
        )
    }


def newest_run_attributes(reads: ProjectReads) -> list[tuple[str, str]]:
    """``(path, type)`` of every attribute of the project's newest untrashed run, by path;
    empty when the project has no such run."""
    row = reads.conn.execute(
        "SELECT id FROM runs WHERE project_id = ? AND kind = 'run' AND trashed = 0 "
        "ORDER BY creation_ms DESC LIMIT 1",
        (reads.project_id,),
    ).fetchone()
    if row is None:
        return []
    return [
        (str(path), str(type_))
        for path, type_ in reads.conn.execute(
            "SELECT path, type FROM attributes WHERE run_id = ? ORDER BY path", (row[0],)
        ).fetchall()
    ]


def run_is_trashed(reads: ProjectReads, pk: int) -> bool:
    """Whether the run with row id ``pk`` is in the trash.

    Raises:
        RunNotFound: no run has that row id.
    """
    row = reads.conn.execute("SELECT trashed FROM runs WHERE id = ?", (pk,)).fetchone()
    if row is None:
        raise RunNotFound(f"no run with row id {pk}")
    return bool(row[0])


def sort_type(reads: ProjectReads, path: str) -> str | None:
    """The type the column ``path`` sorts by: its ``sys/`` type, else the sortable type most
    runs of the project store under that path; None when no run has the column.

    Raises:
        InvalidQuery: the column exists only with types that cannot be sorted.
    """
    column = SYS_COLUMNS.get(path)
    if column is not None:
        return column.type
    if path in SYS_STRING_SETS:
        return "string_set"
    spec = parse_series_column(path)
    if spec is not None:  # min(path), max(path), mean(path): a float series' aggregate
        found = reads.conn.execute(
            "SELECT 1 FROM attributes a JOIN runs r ON r.id = a.run_id WHERE a.path = ? "
            "AND a.type = 'float_series' AND r.project_id = ? LIMIT 1",
            (spec[1], reads.project_id),
        ).fetchone()
        return "float" if found is not None else None
    rows = reads.conn.execute(
        "SELECT a.type, count(*) AS n FROM attributes a JOIN runs r ON r.id = a.run_id "
        "WHERE a.path = ? AND r.project_id = ? GROUP BY a.type ORDER BY n DESC",
        (path, reads.project_id),
    ).fetchall()
    for type_, _ in rows:
        if type_ in SORTABLE_TYPES:
            return str(type_)
    if rows:
        raise InvalidQuery(
            f"column {path!r} has type {rows[0][0]}, which cannot be sorted; sort by a number, "
            "string, date, tag set or series column"
        )
    return None


def _sort_sql(path: str, type_: str | None) -> tuple[str, list[Any]]:
    column = SYS_COLUMNS.get(path)
    if column is not None:
        return column.sql, []
    if type_ is None:
        return "NULL", []
    spec = parse_series_column(path)
    if spec is not None:
        return (
            f"(SELECT {aggregate_sql(spec[0])} FROM attributes a WHERE a.run_id = r.id "
            "AND a.path = ? AND a.type = 'float_series')",
            [spec[1]],
        )
    value = "a.num" if type_ in _NUMERIC else "a.text"
    return (
        f"(SELECT {value} FROM attributes a WHERE a.run_id = r.id AND a.path = ? AND a.type = ? "
        "AND (a.count IS NULL OR a.count > 0))",
        [path, type_],
    )


def runs_page(
    reads: ProjectReads,
    *,
    kind: Literal["experiment", "run"],
    nql: str,
    sort: str,
    direction: Literal["asc", "desc"],
    offset: int,
    limit: int,
    trashed: bool,
) -> PageRuns:
    """The total and one page of the project's runs.

    Args:
        kind: ``"experiment"``: experiment heads only, labelled by experiment name; ``"run"``:
            every run, labelled by ``sys/custom_run_id``.
        nql: an NQL filter (blank: none), evaluated at ``reads.now_ms``.
        sort: the column to sort by (a ``sys/`` field or any attribute path).
        direction: ``"asc"`` or ``"desc"``; runs without the column come last either way, ties
            in creation order (then row id) in the same direction.
        offset, limit: the window of the page.
        trashed: include trashed runs.

    Raises:
        NqlError: the filter does not parse or resolve (with its position).
        InvalidQuery: the sort column cannot be sorted.
    """
    where = ["r.project_id = ?", "r.kind = 'run'"]
    params: list[Any] = [reads.project_id]
    if not trashed:
        where.append("r.trashed = 0")
    if kind == "experiment":
        where.append("r.is_head = 1 AND r.experiment_name IS NOT NULL")
    if nql.strip():
        fragment, nql_params = compile_filter(
            reads.conn, nql, now_ms=reads.now_ms, project_ids=[reads.project_id]
        )
        where.append(f"({fragment})")
        params.extend(nql_params)
    sql_where = " AND ".join(where)
    source = "FROM runs r JOIN projects p ON p.id = r.project_id"
    total = int(
        reads.conn.execute(f"SELECT count(*) {source} WHERE {sql_where}", params).fetchone()[0]
    )
    type_ = sort_type(reads, sort)
    key, key_params = _sort_sql(sort, type_)
    order = "DESC" if direction == "desc" else "ASC"
    label = "r.experiment_name" if kind == "experiment" else "r.run_id"
    sql = (
        f"SELECT r.id, {label}, r.experiment_name, r.parent_id, r.fork_step, r.creation_ms, "
        f"r.trashed, r.run_id, {key} AS k {source} WHERE {sql_where} "
        f"ORDER BY k {order} NULLS LAST, r.creation_ms {order}, r.id {order} LIMIT ? OFFSET ?"
    )
    rows = reads.conn.execute(sql, [*key_params, *params, limit, offset]).fetchall()
    return PageRuns(
        total,
        type_,
        [
            RunRow(pk, str(label_), str(run_id), exp, parent, fork, created, bool(gone), k)
            for pk, label_, exp, parent, fork, created, gone, run_id, k in rows
        ],
    )


def find_runs(reads: ProjectReads, run_ids: Sequence[str]) -> list[RunRow]:
    """The project's runs with these ``sys/custom_run_id`` values (trashed ones too), in the
    given order, each once; unknown ids are left out. ``label`` is the run id."""
    found: dict[str, RunRow] = {}
    ids = list(dict.fromkeys(run_ids))
    for start in range(0, len(ids), _IN_BATCH):
        batch = ids[start : start + _IN_BATCH]
        marks = ",".join("?" * len(batch))
        for pk, run_id, exp, parent, fork, created in reads.conn.execute(
            "SELECT id, run_id, experiment_name, parent_id, fork_step, creation_ms FROM runs "
            f"WHERE project_id = ? AND kind = 'run' AND run_id IN ({marks})",
            [reads.project_id, *batch],
        ):
            found[run_id] = RunRow(pk, run_id, run_id, exp, parent, fork, created)
    return [found[i] for i in ids if i in found]
