"""Copy a whole store into another: ``despina store copy SRC DEST``.

Every project, run (with its attributes, float-series chunks, previews, string/histogram/file
points, fork parent, model and model versions), file (bookkeeping and contents), API key and
refresh token of the source is copied into the destination, between any two stores the contract
opens: embedded -> PostgreSQL (a laptop into the team database), PostgreSQL -> embedded,
embedded -> embedded, PostgreSQL -> PostgreSQL. Reads and writes go through
:meth:`Store.read` / :meth:`Store.write` in the store's shared SQL (both schemas have the same
tables and columns; PostgreSQL fills its ``run_id`` columns by trigger).

How runs are matched and copied:

* Projects are matched by ``workspace/name``; a project missing in the destination is created
  with the source's key (suffixed when another project of the workspace has it), uuid,
  description and visibility.
* Runs (and models, model versions) are matched by project and custom run id (``sys/custom_run_id``,
  a model's ``sys/id``). A run already there with the same uuid is left alone ("already there";
  the copy never updates a run, so a run logged to after an earlier copy is reported as changed
  since). A run there with another uuid is a *conflict*: reported and skipped, never overwritten,
  and so are the runs forked from it or versions of such a model.
* Ids are the destination's own: attributes get new ids, and a chunk keeps its number under its
  new attribute (``attr_id << 24 | chunk_no`` in both stores). ``sys/id`` numbers are kept unless
  the destination project already uses one, then the project's next number is given.
* Each run is copied in one destination transaction (read from one source snapshot): an
  interrupted copy leaves whole runs or none, and running the same command again finishes the
  job. Parents and models are copied before the runs that refer to them.
* File contents are copied to the destination's blob store before the bookkeeping rows that
  name them (content-addressed: a content already there is not copied again). A storage key the
  destination maps to other content is a file conflict and keeps the destination's content.
* API keys are copied when missing; a key revoked in the source is revoked in the destination
  too; a key id the destination holds with another secret is a conflict. Refresh tokens of
  copied keys follow. Server secrets, UI sessions, ingest request statuses and upload
  bookkeeping belong to the serving deployment and are not copied.

Only what is missing is written: a second copy finds everything there and writes nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from despina.errors import ConfigError, StoreError
from despina.store.contract import Store
from despina.store.copy_blobs import BlobSide, blob_side
from despina.store.schema import CHUNK_BITS
from despina.store.urls import StoreLocation, mask_url, parse_store_url

__all__ = [
    "CopyConflict",
    "CopyProgress",
    "CopyReport",
    "copy_between",
    "copy_store",
    "open_source",
]

_CHUNK_MASK = (1 << CHUNK_BITS) - 1
_BATCH = 500
_CHUNK_BATCH = 64  # chunk rows carry up to ~24 KB of arrays each

_RUN_COLUMNS = (
    "project_id, run_id, short_no, uuid, family, experiment_name, is_head, owner, description, "
    "creation_ms, modification_ms, ping_ms, closed, failed, trashed, archived, parent_id, "
    "fork_step, depth, size_bytes, revision, kind, object_id, model_pk, stage"
)
_RUN_FIELDS = tuple(c.strip() for c in _RUN_COLUMNS.split(","))
_ATTR_COLUMNS = "path, type, num, text, count, last_step, last_ts, fmin, fmax, fsum, fsumsq, fcount"
_CHUNK_COLUMNS = "id, n, step_first, step_last, ts_first, ts_last, vmin, vmax, steps, vals, ts"
_KEY_COLUMNS = (
    "key_id, secret_sha256, name, username, workspace, project, created_ms, expires_ms, revoked_ms"
)


@dataclass(frozen=True, slots=True)
class CopyConflict:
    """Something the destination holds differently, left as the destination has it."""

    kind: str  # "run", "file" or "api_key"
    name: str  # workspace/project/run_id, workspace/project:path, or the key id
    reason: str


@dataclass
class CopyReport:
    """What a copy did. ``changed`` is false when the destination already held everything."""

    source: str
    destination: str
    projects: int = 0
    projects_created: int = 0
    runs: int = 0
    runs_copied: int = 0
    runs_present: int = 0
    runs_changed_since: int = 0
    points: int = 0
    previews: int = 0
    attributes: int = 0
    files: int = 0
    files_present: int = 0
    file_contents: int = 0
    file_bytes: int = 0
    files_missing: int = 0
    api_keys: int = 0
    refresh_tokens: int = 0
    conflicts: list[CopyConflict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.projects_created
            or self.runs_copied
            or self.files
            or self.file_contents
            or self.api_keys
            or self.refresh_tokens
        )

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """The report as text lines (the CLI prints them)."""
        out = [f"copied {self.source} -> {self.destination} in {self.seconds:.1f} s"]
        if not self.changed:
            out.append(
                f"nothing to copy: the destination already holds all {self.runs:,} runs of "
                f"{self.projects:,} projects"
            )
        out.append(f"projects: {self.projects:,} ({self.projects_created:,} created)")
        runs = (
            f"runs: {self.runs_copied:,} copied, {self.runs_present:,} already there, "
            f"{sum(c.kind == 'run' for c in self.conflicts):,} conflicts"
        )
        if self.runs_changed_since:
            runs += f" ({self.runs_changed_since:,} already there changed in the source since)"
        out.append(runs)
        rate = f" ({self.points_per_second:,.0f} points/s)" if self.points else ""
        out.append(f"points: {self.points:,} copied{rate}, previews {self.previews:,}")
        out.append(
            f"files: {self.files:,} copied, {self.files_present:,} already there; "
            f"{self.file_contents:,} contents, {self.file_bytes:,} bytes"
        )
        if self.files_missing:
            out.append(f"files without content in the source: {self.files_missing:,}")
        if self.api_keys or self.refresh_tokens:
            out.append(
                f"API keys: {self.api_keys:,} copied or revoked, refresh tokens "
                f"{self.refresh_tokens:,}"
            )
        for conflict in self.conflicts:
            out.append(f"conflict: {conflict.kind} {conflict.name}: {conflict.reason}")
        return out


class CopyProgress(Protocol):
    """Told how much there is to copy, then after each run how far the copy got."""

    def begin(self, runs: int, points: int) -> None: ...

    def advance(self, runs: int, points: int) -> None: ...


class _NoProgress:
    def begin(self, runs: int, points: int) -> None:
        pass

    def advance(self, runs: int, points: int) -> None:
        pass


# -- opening ----------------------------------------------------------------------------------


def open_source(value: str | os.PathLike[str]) -> Store:
    """Open an existing store to copy from; never creates one.

    Raises:
        ConfigError: the URL is malformed.
        StoreError: there is no despina store there (or the server cannot be reached).
        SchemaTooNew: the source was written by a newer despina.
    """
    location = parse_store_url(value)
    if location.kind == "sqlite":
        assert location.path is not None
        from despina.store.sqlite import DB_FILE, SqliteStore

        db = location.path / DB_FILE
        if not location.path.is_dir() or not db.is_file() or db.stat().st_size == 0:
            what = "does not exist" if not location.path.exists() else "holds no despina store"
            raise StoreError(
                f"the source store {location.display!r} {what} (no {DB_FILE} there); give the "
                "directory of an existing store (e.g. ~/.despina) or a postgresql:// URL"
            )
        return SqliteStore.open_directory(location.path)
    assert location.url is not None
    _check_postgres_source(location.url)
    return Store.open(url=location.url)


def _check_postgres_source(url: str) -> None:
    """Refuse a database that holds no despina schema (opening it would create one)."""
    from despina.store.postgres.connection import PoolSettings, _connect, _schema_version

    with _connect(url, PoolSettings()) as conn:
        version = _schema_version(conn)
    if version == 0:
        raise StoreError(
            f"the source database {mask_url(url)!r} holds no despina store; give the URL of a "
            "database despina has written to"
        )


def _same_location(a: StoreLocation, b: StoreLocation) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "sqlite":
        assert a.path is not None and b.path is not None
        if a.path.exists() and b.path.exists():
            return os.path.samefile(a.path, b.path)
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    from psycopg.conninfo import conninfo_to_dict

    assert a.url is not None and b.url is not None
    pa, pb = conninfo_to_dict(a.url), conninfo_to_dict(b.url)

    def where(params: dict[str, Any]) -> tuple[str, str, str]:
        user = str(params.get("user") or os.environ.get("PGUSER") or "")
        host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
        host = "localhost" if host in ("127.0.0.1", "::1") or host.startswith("/") else host
        port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
        return host, port, str(params.get("dbname") or user)

    return where(pa) == where(pb)


def _database_identity(store: Store) -> tuple[Any, ...] | None:
    """What tells two PostgreSQL databases apart however they were addressed."""
    if store.dialect != "postgresql":
        return None
    conn = store.connection()
    row = conn.execute(
        "SELECT current_database(), pg_postmaster_start_time()::text, "
        "current_setting('data_directory', true)"
    ).fetchone()
    return tuple(row)


def _refuse_same(source: str, destination: str) -> ConfigError:
    return ConfigError(
        f"the source {source!r} and the destination {destination!r} are the same store; "
        "give another destination"
    )


def copy_store(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    blobs: str | os.PathLike[str] | None = None,
    source_blobs: str | os.PathLike[str] | None = None,
    progress: CopyProgress | None = None,
) -> CopyReport:
    """Copy everything in the store at ``source`` into the store at ``destination``.

    ``source`` and ``destination`` are store URLs (a directory, ``sqlite:///dir`` or
    ``postgresql://...``). The destination is created (and migrated) when needed; the source
    must exist. File contents go to ``blobs`` (the destination's blob store; default: the one
    the destination opens with) and are read from ``source_blobs`` (default: the source's).

    Raises:
        ConfigError: a URL is malformed, or both name the same store.
        StoreError: the source does not exist, a store cannot be reached or written.
        SchemaTooNew: either store was written by a newer despina.
    """
    src_location = parse_store_url(source)
    dst_location = parse_store_url(destination)
    if _same_location(src_location, dst_location):
        raise _refuse_same(src_location.display, dst_location.display)
    src = open_source(source)
    try:
        dst = Store.open(url=dst_location.url or dst_location.path)
        try:
            identity = _database_identity(src)
            if identity is not None and identity == _database_identity(dst):
                raise _refuse_same(src_location.display, dst_location.display)
            return copy_between(src, dst, blobs=blobs, source_blobs=source_blobs, progress=progress)
        finally:
            dst.close()
    finally:
        src.close()


def copy_between(
    src: Store,
    dst: Store,
    *,
    blobs: str | os.PathLike[str] | None = None,
    source_blobs: str | os.PathLike[str] | None = None,
    progress: CopyProgress | None = None,
) -> CopyReport:
    """Copy everything in the open store ``src`` into the open store ``dst`` (see
    :func:`copy_store`)."""
    copier = _Copier(
        src,
        dst,
        blob_side(src, source_blobs),
        blob_side(dst, blobs, environment=True),
        progress or _NoProgress(),
    )
    return copier.run()


# -- the copy ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _SourceRun:
    pk: int
    project_id: int
    run_id: str
    uuid: str
    kind: str
    depth: int
    parent_id: int | None
    model_pk: int | None
    revision: int
    points: int = 0


@dataclass(slots=True)
class _DestProject:
    pk: int
    name: str
    runs: dict[str, tuple[int, str, int]]  # run_id -> (pk, uuid, revision)
    short_nos: set[int]


class _Copier:
    def __init__(
        self, src: Store, dst: Store, src_blobs: BlobSide, dst_blobs: BlobSide, progress: Any
    ) -> None:
        self.src = src
        self.dst = dst
        self.src_blobs = src_blobs
        self.dst_blobs = dst_blobs
        self.progress: CopyProgress = progress
        self.report = CopyReport(source=src.display, destination=dst.display)
        self.projects: dict[int, _DestProject] = {}
        self.run_map: dict[int, int] = {}  # source run pk -> destination pk
        self.skipped: dict[int, str] = {}  # source run pk -> the run id that made it a conflict

    def run(self) -> CopyReport:
        started = time.perf_counter()
        self._copy_projects()
        runs = self._source_runs()
        self.report.runs = len(runs)
        self.progress.begin(len(runs), sum(r.points for r in runs))
        for project_id in sorted(self.projects):
            self._copy_files(project_id)
        for run in runs:
            self._copy_run(run)
            self.progress.advance(1, run.points)
        self._copy_api_keys()
        if self.report.changed:
            self.dst.sync()
        self.report.seconds = time.perf_counter() - started
        return self.report

    # -- projects -------------------------------------------------------------------------

    def _copy_projects(self) -> None:
        with self.src.read() as conn:
            rows = conn.execute(
                "SELECT id, workspace, name, project_key, uuid, description, visibility, "
                "created_ms, next_run_no FROM projects ORDER BY id"
            ).fetchall()
        self.report.projects = len(rows)
        for pid, workspace, name, key, uuid, description, visibility, created, next_no in rows:
            dst_pk = self._project_pk(workspace, name)
            if dst_pk is None:
                with self.dst.write() as conn:
                    taken = {
                        k
                        for (k,) in conn.execute(
                            "SELECT project_key FROM projects WHERE workspace = ?", (workspace,)
                        )
                    }
                    chosen, n = key, 2
                    while chosen in taken:
                        chosen, n = f"{key}{n}", n + 1
                    inserted = conn.execute(
                        "INSERT OR IGNORE INTO projects (workspace, name, project_key, uuid, "
                        "description, visibility, created_ms, next_run_no) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (workspace, name, chosen, uuid, description, visibility, created, next_no),
                    ).rowcount
                self.report.projects_created += 1 if inserted else 0
                dst_pk = self._project_pk(workspace, name)
                assert dst_pk is not None
            self.projects[int(pid)] = self._dest_project(dst_pk, f"{workspace}/{name}")

    def _project_pk(self, workspace: str, name: str) -> int | None:
        row = (
            self.dst.connection()
            .execute("SELECT id FROM projects WHERE workspace = ? AND name = ?", (workspace, name))
            .fetchone()
        )
        return None if row is None else int(row[0])

    def _dest_project(self, pk: int, name: str) -> _DestProject:
        with self.dst.read() as conn:
            rows = conn.execute(
                "SELECT run_id, id, uuid, revision, short_no, kind FROM runs WHERE project_id = ?",
                (pk,),
            ).fetchall()
        return _DestProject(
            pk,
            name,
            {str(r[0]): (int(r[1]), str(r[2]), int(r[3])) for r in rows},
            {int(r[4]) for r in rows if r[5] == "run"},
        )

    # -- runs -----------------------------------------------------------------------------

    def _source_runs(self) -> list[_SourceRun]:
        with self.src.read() as conn:
            runs = [
                _SourceRun(
                    int(r[0]),
                    int(r[1]),
                    str(r[2]),
                    str(r[3]),
                    str(r[4]),
                    int(r[5]),
                    None if r[6] is None else int(r[6]),
                    None if r[7] is None else int(r[7]),
                    int(r[8]),
                )
                for r in conn.execute(
                    "SELECT id, project_id, run_id, uuid, kind, depth, parent_id, model_pk, "
                    "revision FROM runs"
                )
            ]
            by_pk = {run.pk: run for run in runs}
            # points per run, for the progress bar: float points in chunks, then the others
            for attr_run, n in conn.execute(
                "SELECT a.run_id, sum(c.n) FROM chunks c JOIN attributes a "
                "ON a.id = c.id >> 24 GROUP BY a.run_id"
            ):
                if int(attr_run) in by_pk:
                    by_pk[int(attr_run)].points += int(n)
            for attr_run, n in conn.execute(
                "SELECT a.run_id, count(*) FROM points p JOIN attributes a "
                "ON a.id = p.attr_id GROUP BY a.run_id"
            ):
                if int(attr_run) in by_pk:
                    by_pk[int(attr_run)].points += int(n)
        # models before their versions, parents before their forks
        runs.sort(key=lambda r: (r.kind != "model", r.depth, r.pk))
        return runs

    def _conflict(self, run: _SourceRun, project: _DestProject, reason: str) -> None:
        self.skipped[run.pk] = run.run_id
        self.report.conflicts.append(CopyConflict("run", f"{project.name}/{run.run_id}", reason))

    def _copy_run(self, run: _SourceRun) -> None:
        project = self.projects[run.project_id]
        for ref, what in ((run.parent_id, "fork parent"), (run.model_pk, "model")):
            if ref is not None and ref not in self.run_map:
                blocker = self.skipped.get(ref)
                if blocker is not None:
                    self._conflict(run, project, f"its {what} {blocker!r} was not copied")
                    return
        there = project.runs.get(run.run_id)
        if there is not None:
            self._classify_existing(run, project, there)
            return
        with self.src.read() as sconn, self.dst.write() as dconn:
            row = sconn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run.pk,)
            ).fetchone()
            if row is None:
                return  # deleted from the source since the copy started
            copied = self._insert_run(
                sconn, dconn, run, project, dict(zip(_RUN_FIELDS, row, strict=True))
            )
        if copied is None:  # someone created it in the destination meanwhile
            fresh = self._dest_project(project.pk, project.name)
            self.projects[run.project_id] = fresh
            found = fresh.runs.get(run.run_id)
            if found is not None:
                self._classify_existing(run, fresh, found)
            return
        pk, short_no, points, previews, attributes = copied
        project.runs[run.run_id] = (pk, run.uuid, run.revision)
        if row[_RUN_FIELDS.index("kind")] == "run":
            project.short_nos.add(short_no)
        self.run_map[run.pk] = pk
        self.report.runs_copied += 1
        self.report.points += points
        self.report.previews += previews
        self.report.attributes += attributes

    def _classify_existing(
        self, run: _SourceRun, project: _DestProject, there: tuple[int, str, int]
    ) -> None:
        pk, uuid, revision = there
        if uuid != run.uuid:
            self._conflict(
                run,
                project,
                f"the destination has another run with this id (uuid {uuid}, the source's is "
                f"{run.uuid}); left as it is",
            )
            return
        self.run_map[run.pk] = pk
        self.report.runs_present += 1
        if run.revision > revision:
            self.report.runs_changed_since += 1

    def _insert_run(
        self,
        sconn: Any,
        dconn: Any,
        run: _SourceRun,
        project: _DestProject,
        values: dict[str, Any],
    ) -> tuple[int, int, int, int, int] | None:
        values["project_id"] = project.pk
        if values["parent_id"] is not None:
            values["parent_id"] = self.run_map.get(int(values["parent_id"]))
        if values["model_pk"] is not None:
            values["model_pk"] = self.run_map.get(int(values["model_pk"]))
        short_no = int(values["short_no"])
        if values["kind"] == "run" and short_no in project.short_nos:
            (short_no,) = dconn.execute(
                "SELECT next_run_no FROM projects WHERE id = ?", (project.pk,)
            ).fetchone()
            short_no = max(int(short_no), max(project.short_nos) + 1)
            values["short_no"] = short_no
        if values["is_head"] and values["experiment_name"] is not None:
            values["is_head"] = self._take_head(
                dconn, project.pk, values["experiment_name"], int(values["creation_ms"])
            )
        cursor = dconn.execute(
            f"INSERT OR IGNORE INTO runs ({_RUN_COLUMNS}) "
            f"VALUES ({', '.join('?' * len(_RUN_FIELDS))})",
            [values[name] for name in _RUN_FIELDS],
        )
        if cursor.rowcount == 0:
            return None
        (pk,) = dconn.execute(
            "SELECT id FROM runs WHERE project_id = ? AND run_id = ?", (project.pk, run.run_id)
        ).fetchone()
        pk = int(pk)
        if values["kind"] == "run":
            dconn.execute(
                "UPDATE projects SET next_run_no = ? WHERE id = ? AND next_run_no <= ?",
                (short_no + 1, project.pk, short_no),
            )
        attr_map = self._copy_attributes(sconn, dconn, run.pk, pk)
        ranges = _id_ranges(sorted(attr_map))
        points = self._copy_chunks(sconn, dconn, ranges, attr_map)
        previews = self._copy_previews(sconn, dconn, ranges, attr_map)
        points += self._copy_points(sconn, dconn, ranges, attr_map)
        return pk, short_no, points, previews, len(attr_map)

    def _take_head(self, dconn: Any, project_pk: int, experiment: str, creation_ms: int) -> int:
        """Whether the copied run stays its experiment's head: the newest head wins."""
        heads = dconn.execute(
            "SELECT id, creation_ms FROM runs WHERE project_id = ? AND experiment_name = ? "
            "AND is_head = 1",
            (project_pk, experiment),
        ).fetchall()
        if any(int(created) > creation_ms for _, created in heads):
            return 0
        for pk, _ in heads:
            dconn.execute("UPDATE runs SET is_head = 0 WHERE id = ?", (pk,))
        return 1

    def _copy_attributes(self, sconn: Any, dconn: Any, src_pk: int, dst_pk: int) -> dict[int, int]:
        rows = sconn.execute(
            f"SELECT id, {_ATTR_COLUMNS} FROM attributes WHERE run_id = ?", (src_pk,)
        ).fetchall()
        for batch in _batches(rows, _BATCH):
            dconn.executemany(
                f"INSERT INTO attributes (run_id, {_ATTR_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(dst_pk, *row[1:]) for row in batch],
            )
        new_ids = {
            str(path): int(pk)
            for pk, path in dconn.execute(
                "SELECT id, path FROM attributes WHERE run_id = ?", (dst_pk,)
            )
        }
        return {int(row[0]): new_ids[str(row[1])] for row in rows}

    def _copy_chunks(
        self, sconn: Any, dconn: Any, ranges: list[tuple[int, int]], attr_map: dict[int, int]
    ) -> int:
        points = 0
        for lo, hi in ranges:
            cursor = sconn.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id BETWEEN ? AND ?",
                (lo << CHUNK_BITS, (hi << CHUNK_BITS) | _CHUNK_MASK),
            )
            while rows := cursor.fetchmany(_CHUNK_BATCH):
                out = []
                for row in rows:
                    old = int(row[0])
                    new = (attr_map[old >> CHUNK_BITS] << CHUNK_BITS) | (old & _CHUNK_MASK)
                    out.append((new, *row[1:]))
                    points += int(row[1])
                dconn.executemany(
                    f"INSERT INTO chunks ({_CHUNK_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    out,
                )
        return points

    def _copy_previews(
        self, sconn: Any, dconn: Any, ranges: list[tuple[int, int]], attr_map: dict[int, int]
    ) -> int:
        count = 0
        for lo, hi in ranges:
            cursor = sconn.execute(
                "SELECT attr_id, step, ts, value, completion FROM previews "
                "WHERE attr_id BETWEEN ? AND ?",
                (lo, hi),
            )
            while rows := cursor.fetchmany(_BATCH):
                dconn.executemany(
                    "INSERT INTO previews (attr_id, step, ts, value, completion) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(attr_map[int(r[0])], *r[1:]) for r in rows],
                )
                count += len(rows)
        return count

    def _copy_points(
        self, sconn: Any, dconn: Any, ranges: list[tuple[int, int]], attr_map: dict[int, int]
    ) -> int:
        count = 0
        for lo, hi in ranges:
            # in the order they were stored: readers of file series keep that order
            cursor = sconn.execute(
                "SELECT attr_id, step, ts, value FROM points WHERE attr_id BETWEEN ? AND ? "
                "ORDER BY id",
                (lo, hi),
            )
            while rows := cursor.fetchmany(_BATCH):
                dconn.executemany(
                    "INSERT INTO points (attr_id, step, ts, value) VALUES (?, ?, ?, ?)",
                    [(attr_map[int(r[0])], *r[1:]) for r in rows],
                )
                count += len(rows)
        return count

    # -- files ----------------------------------------------------------------------------

    def _copy_files(self, src_project: int) -> None:
        project = self.projects[src_project]
        with self.src.read() as conn:
            rows = conn.execute(
                "SELECT path, sha256, size, mime_type, created_ms FROM blobs "
                "WHERE project_id = ? ORDER BY path",
                (src_project,),
            ).fetchall()
        if not rows:
            return
        there = {
            str(path): str(sha)
            for path, sha in self.dst.connection().execute(
                "SELECT path, sha256 FROM blobs WHERE project_id = ?", (project.pk,)
            )
        }
        missing = []
        for row in rows:
            path, sha = str(row[0]), str(row[1])
            found = there.get(path)
            if found is None:
                missing.append(row)
            elif found == sha:
                self.report.files_present += 1
            else:
                self.report.conflicts.append(
                    CopyConflict(
                        "file",
                        f"{project.name}:{path}",
                        "the destination holds other content under this storage key; kept",
                    )
                )
        for batch in _batches(missing, _BATCH):
            # contents first: a row never names content the blob store does not have
            for _, sha, size, _, _ in batch:
                self._copy_content(str(sha), int(size))
            with self.dst.write() as conn:
                inserted = 0
                for row in batch:
                    inserted += conn.execute(
                        "INSERT OR IGNORE INTO blobs (project_id, path, sha256, size, "
                        "mime_type, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                        (project.pk, *row),
                    ).rowcount
            self.report.files += inserted

    def _copy_content(self, sha: str, size: int) -> None:
        if self.dst_blobs.has(sha, size):
            return
        with contextlib.ExitStack() as stack:
            try:
                stream = stack.enter_context(self.src_blobs.open(sha))
            except FileNotFoundError:
                self.report.files_missing += 1
                return
            self.dst_blobs.put(sha, size, stream)
        self.report.file_contents += 1
        self.report.file_bytes += size

    # -- API keys -------------------------------------------------------------------------

    def _copy_api_keys(self) -> None:
        with self.src.read() as conn:
            keys = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY key_id").fetchall()
            tokens = conn.execute(
                "SELECT token_sha256, key_id, expires_ms FROM refresh_tokens WHERE expires_ms > ?",
                (int(time.time() * 1000),),
            ).fetchall()
        if not keys:
            return
        dconn = self.dst.connection()
        there = {
            str(r[0]): (str(r[1]), r[2])
            for r in dconn.execute("SELECT key_id, secret_sha256, revoked_ms FROM api_keys")
        }
        matching: set[str] = set()
        with self.dst.write() as conn:
            for key in keys:
                key_id, secret, revoked = str(key[0]), str(key[1]), key[8]
                found = there.get(key_id)
                if found is None:
                    self.report.api_keys += conn.execute(
                        f"INSERT OR IGNORE INTO api_keys ({_KEY_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        key,
                    ).rowcount
                    matching.add(key_id)
                elif found[0] != secret:
                    self.report.conflicts.append(
                        CopyConflict(
                            "api_key", key_id, "the destination has another key with this id"
                        )
                    )
                else:
                    matching.add(key_id)
                    if revoked is not None and found[1] is None:  # revocations carry over
                        conn.execute(
                            "UPDATE api_keys SET revoked_ms = ? WHERE key_id = ?",
                            (revoked, key_id),
                        )
                        self.report.api_keys += 1
            wanted = [t for t in tokens if str(t[1]) in matching]
            if wanted:
                present = {
                    str(t)
                    for (t,) in conn.execute(
                        "SELECT token_sha256 FROM refresh_tokens WHERE token_sha256 IN "
                        "(SELECT value FROM json_each(?))",
                        (_json_list([str(t[0]) for t in wanted]),),
                    )
                }
                for token in wanted:
                    if str(token[0]) not in present:
                        self.report.refresh_tokens += conn.execute(
                            "INSERT OR IGNORE INTO refresh_tokens (token_sha256, key_id, "
                            "expires_ms) VALUES (?, ?, ?)",
                            token,
                        ).rowcount


def _json_list(values: list[str]) -> str:
    import json

    return json.dumps(values)


def _id_ranges(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted ids as runs of consecutive ids ``(first, last)``: one range scan each."""
    ranges: list[tuple[int, int]] = []
    for value in ids:
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], value)
        else:
            ranges.append((value, value))
    return ranges


def _batches(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
