"""The copy itself: projects, files, runs (one destination transaction each), API keys.

See :mod:`despina.store.copy` for what is copied and how runs are matched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from despina.store.contract import Store
from despina.store.copy.blobs import BlobSide
from despina.store.copy.report import CopyConflict, CopyProgress, CopyReport
from despina.store.schema import CHUNK_BITS
from despina.store.sql.attribute_packs import write_pack

__all__ = ["COPIED_TABLES", "LEFT_TABLES", "Copier"]

COPIED_TABLES = frozenset(
    {
        "projects",
        "runs",
        "attributes",
        "chunks",
        "previews",
        "points",
        "set_members",  # kept by triggers on attributes, in both stores
        "blobs",
        "api_keys",
        "refresh_tokens",
        "saved_views",
    }
)
"""Tables whose rows a copy brings over (a new table must be added here or to LEFT_TABLES)."""

LEFT_TABLES = {
    "schema_version": "each store has its own",
    "server_secrets": "the serving deployment's signing key",
    "ui_sessions": "sign-ins to the serving deployment",
    "sign_in_codes": "one-time sign-in links of the serving deployment",
    "ingest_requests": "statuses of requests to the serving deployment",
    "blob_url_uses": "upload URLs the serving deployment handed out",
    "blob_uploads": "multipart uploads in progress on the serving deployment",
    "chart_summaries": "the web UI's cache of chart summaries (made again on first view)",
    "attribute_packs": "packs of closed runs' attribute rows (packed anew as each run is copied)",
}
"""Tables a copy leaves alone, and why: state of the deployment serving a store."""

_CHUNK_MASK = (1 << CHUNK_BITS) - 1
_BATCH = 1000
_CHUNK_BATCH = 64  # chunk rows carry up to ~24 KB of arrays each

_RUN_COLUMNS = (
    "project_id, run_id, short_no, uuid, family, experiment_name, is_head, owner, description, "
    "creation_ms, modification_ms, ping_ms, closed, failed, trashed, archived, parent_id, "
    "fork_step, depth, size_bytes, revision, kind, object_id, model_pk, stage"
)
_RUN_FIELDS = tuple(c.strip() for c in _RUN_COLUMNS.split(","))
_ATTR_COLUMNS = "path, type, num, text, count, last_step, last_ts, fmin, fmax, fsum, fsumsq, fcount"
_CHUNK_COLUMNS = "id, n, step_first, step_last, ts_first, ts_last, vmin, vmax, steps, vals, ts"
_VIEW_COLUMNS = "name, kind, query, owner, created_ms, updated_ms"
_KEY_COLUMNS = (
    "key_id, secret_sha256, name, username, workspace, project, created_ms, expires_ms, revoked_ms"
)


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


class Copier:
    """Copies everything of ``src`` that ``dst`` lacks (see :mod:`despina.store.copy`)."""

    def __init__(
        self,
        src: Store,
        dst: Store,
        src_blobs: BlobSide,
        dst_blobs: BlobSide,
        progress: CopyProgress,
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
            self._copy_views(project_id)
        for run in runs:
            self._copy_run(run)
            self.progress.advance(1, run.points)
        self._copy_api_keys()
        if (
            self.dst.dialect == "postgresql"
            and self.report.file_contents
            and "://" not in self.dst_blobs.display
        ):
            self.report.notes.append(
                f"file contents went to the directory {self.dst_blobs.display} on this machine; "
                "servers on other machines will not find them there: copy again with --blobs "
                "s3://bucket/prefix (or a directory every server mounts)"
            )
        if self.report.changed:
            self.dst.sync()
            self.dst.refresh_statistics()
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
                    if self.dst.dialect == "postgresql":
                        # as PostgresStore.create_project: one creator at a time per workspace,
                        # so that project keys stay unique within it
                        from despina.store.postgres.schema import advisory_key

                        conn.execute(
                            "SELECT pg_advisory_xact_lock(?)",
                            (advisory_key(f"workspace:{workspace}"),),
                        )
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
        demote: list[int] = []
        if values["is_head"] and values["experiment_name"] is not None:
            values["is_head"], demote = self._head(
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
        for other in demote:
            dconn.execute("UPDATE runs SET is_head = 0 WHERE id = ?", (other,))
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
        if values["closed"]:  # packed anew: the pack holds attribute ids of its own store
            write_pack(dconn, pk)
        return pk, short_no, points, previews, len(attr_map)

    def _head(
        self, dconn: Any, project_pk: int, experiment: str, creation_ms: int
    ) -> tuple[int, list[int]]:
        """Whether a copied head run stays its experiment's head (the newest head wins), and
        the destination's heads that give way to it."""
        heads = dconn.execute(
            "SELECT id, creation_ms FROM runs WHERE project_id = ? AND experiment_name = ? "
            "AND is_head = 1",
            (project_pk, experiment),
        ).fetchall()
        if any(int(created) > creation_ms for _, created in heads):
            return 0, []
        return 1, [int(pk) for pk, _ in heads]

    def _copy_attributes(self, sconn: Any, dconn: Any, src_pk: int, dst_pk: int) -> dict[int, int]:
        rows = sconn.execute(
            f"SELECT id, {_ATTR_COLUMNS} FROM attributes WHERE run_id = ?", (src_pk,)
        ).fetchall()
        _insert(
            dconn, f"attributes (run_id, {_ATTR_COLUMNS})", [(dst_pk, *row[1:]) for row in rows]
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
            # a page at a time (keyset on the id): a PostgreSQL cursor holds its whole result
            first, last = lo << CHUNK_BITS, (hi << CHUNK_BITS) | _CHUNK_MASK
            while True:
                rows = sconn.execute(
                    f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id BETWEEN ? AND ? "
                    "ORDER BY id LIMIT ?",
                    (first, last, _CHUNK_BATCH),
                ).fetchall()
                out = []
                for row in rows:
                    old = int(row[0])
                    new = (attr_map[old >> CHUNK_BITS] << CHUNK_BITS) | (old & _CHUNK_MASK)
                    out.append((new, *row[1:]))
                    points += int(row[1])
                _insert(dconn, f"chunks ({_CHUNK_COLUMNS})", out, bulk=False)
                if len(rows) < _CHUNK_BATCH:
                    break
                first = int(rows[-1][0]) + 1
        return points

    def _copy_previews(
        self, sconn: Any, dconn: Any, ranges: list[tuple[int, int]], attr_map: dict[int, int]
    ) -> int:
        return _copy_by_series(
            sconn, dconn, "previews", "attr_id, step, ts, value, completion", ranges, attr_map
        )

    def _copy_points(
        self, sconn: Any, dconn: Any, ranges: list[tuple[int, int]], attr_map: dict[int, int]
    ) -> int:
        return _copy_by_series(sconn, dconn, "points", "attr_id, step, ts, value", ranges, attr_map)

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
                self._copy_content(sha, int(row[2]))  # content a source lacked before
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
        try:
            with self.src_blobs.open(sha) as stream:
                self.dst_blobs.put(sha, stream)
        except FileNotFoundError:
            # the bookkeeping row is copied all the same: the destination then lacks the
            # content as the source does, and a copy from a repaired source adds it
            self.report.files_missing += 1
            return
        self.report.file_contents += 1
        self.report.file_bytes += size

    # -- saved views -----------------------------------------------------------------------

    def _copy_views(self, src_project: int) -> None:
        """The project's saved views of the web UI, matched by name; one the destination has
        under the same name with another query is a conflict and keeps the destination's."""
        project = self.projects[src_project]
        with self.src.read() as conn:
            rows = conn.execute(
                f"SELECT {_VIEW_COLUMNS} FROM saved_views WHERE project_id = ? ORDER BY name",
                (src_project,),
            ).fetchall()
        if not rows:
            return
        there = {
            str(name): (str(kind), str(query))
            for name, kind, query in self.dst.connection().execute(
                "SELECT name, kind, query FROM saved_views WHERE project_id = ?", (project.pk,)
            )
        }
        missing = []
        for row in rows:
            found = there.get(str(row[0]))
            if found is None:
                missing.append(row)
            elif found != (str(row[1]), str(row[2])):
                self.report.conflicts.append(
                    CopyConflict(
                        "view",
                        f"{project.name}:{row[0]}",
                        "the destination has another saved view with this name; kept",
                    )
                )
        if missing:
            with self.dst.write() as conn:
                for row in missing:
                    self.report.views += conn.execute(
                        f"INSERT OR IGNORE INTO saved_views (project_id, {_VIEW_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (project.pk, *row),
                    ).rowcount

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


def _copy_by_series(
    sconn: Any,
    dconn: Any,
    table: str,
    columns: str,
    ranges: list[tuple[int, int]],
    attr_map: dict[int, int],
) -> int:
    """Copy the rows of ``table`` (keyed by ``(attr_id, step)``, the first two ``columns``) of
    the attributes in ``ranges``, a page at a time in key order."""
    count = 0
    for lo, hi in ranges:
        after: tuple[int, int] | None = None
        while True:
            if after is None:
                where, params = "attr_id BETWEEN ? AND ?", [lo, hi]
            else:
                where, params = "(attr_id, step) > (?, ?) AND attr_id <= ?", [*after, hi]
            rows = sconn.execute(
                f"SELECT {columns} FROM {table} WHERE {where} ORDER BY attr_id, step LIMIT ?",
                [*params, _BATCH],
            ).fetchall()
            _insert(dconn, f"{table} ({columns})", [(attr_map[int(r[0])], *r[1:]) for r in rows])
            count += len(rows)
            if len(rows) < _BATCH:
                break
            after = (int(rows[-1][0]), int(rows[-1][1]))
    return count


def _json_list(values: list[str]) -> str:
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


def _insert(conn: Any, target: str, rows: Sequence[Sequence[Any]], *, bulk: bool = True) -> None:
    """Insert ``rows`` into ``target`` (``table (columns)``): on PostgreSQL with ``COPY`` (one
    stream, the connection's dumpers: exact floats, NaN as NULL), else one ``INSERT`` per row."""
    if not rows:
        return
    raw = getattr(conn, "raw", None)
    if bulk and raw is not None:
        with raw.cursor().copy(f"COPY {target} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(rows[0]))
    conn.executemany(f"INSERT INTO {target} VALUES ({marks})", rows)


def _batches(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
