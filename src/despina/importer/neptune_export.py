"""``import_neptune_export``: bring a ``neptune-exporter`` export into a despina store
(exporter-format.md §7).

1. Discover the project directories and complete runs (``_part_0`` present).
2. Read each run's header (identity, ``sys/`` rows that create and order it).
3. Per project: choose the target project and its key, keep exported ``sys/id`` numbers where
   they are free, order runs parents first.
4. Per run, in order: skip it if it is already in the store; else read all its rows, build the
   run and write it in one transaction (files are copied into the store first).

Importing the same export again changes nothing; an interrupted import, repeated, completes.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from despina.config import parse_project, resolve_home
from despina.errors import ConfigError
from despina.importer.layout import RunFiles, discover
from despina.importer.loader import RunPlan, load_run
from despina.importer.order import order_runs
from despina.importer.reader import ExportFormatError, RunHeader, read_header, read_run
from despina.importer.report import ImportReport, RunReport, SkippedRun
from despina.store import Store
from despina.store.imports import (
    RECORDED_PARENT,
    RECORDED_STEP,
    existing_project_key,
    import_run,
    project_key,
    reserve_run_numbers,
    stored_run_ids,
    stored_sys_id,
)
from despina.store.runs import NAME_LIMIT_BYTES
from despina.store.sqlite import DB_FILE

__all__ = ["ImportProgress", "import_neptune_export"]

AS_ROOT = (
    "the run was imported as a root; its recorded fork point is kept in "
    f"{RECORDED_PARENT} and {RECORDED_STEP}"
)

_SHORT_ID = re.compile(r"^([A-Za-z0-9]+)-([1-9][0-9]{0,17})$")


class ImportProgress(Protocol):
    """Receives progress: a phase starts with its totals, then runs and rows advance."""

    def phase(self, name: str, runs: int, rows: int) -> None: ...

    def advance(self, runs: int, rows: int) -> None: ...


class _NoProgress:
    def phase(self, name: str, runs: int, rows: int) -> None:
        pass

    def advance(self, runs: int, rows: int) -> None:
        pass


SMALL_RUN_ROWS = 100_000
"""Runs with fewer rows are read whole in the first pass (one read instead of two)."""

KEPT_ROWS = 5_000_000
"""At most this many rows of small runs are kept in memory between the two passes."""


@dataclass(slots=True)
class _Entry:
    """A run read in the first pass, with what the second pass needs."""

    header: RunHeader
    report: RunReport
    target: str
    table: pa.Table | None = None
    """The whole run, when it was small enough to be read in the first pass."""
    run_id: str = ""
    experiment: str | None = None
    short_no: int | None = None


def _target_projects(
    project: str | Mapping[str, str] | None, exported: list[str]
) -> dict[str, str]:
    """Exported project id → target project, validated."""
    if project is None:
        mapping = {p: p for p in exported}
    elif isinstance(project, str):
        if "=" in project:
            source, target = project.split("=", 1)
            mapping = {p: (target if p == source else p) for p in exported}
        else:
            if len(exported) > 1:
                raise ConfigError(
                    f"the export holds {len(exported)} projects ({', '.join(sorted(exported))}); "
                    f"--project {project!r} would merge them: map each one with "
                    "--project SOURCE=TARGET"
                )
            mapping = {p: project for p in exported}
    else:
        mapping = {p: project.get(p, p) for p in exported}
    for source, target in mapping.items():
        try:
            parse_project(target)
        except ConfigError as exc:
            raise ConfigError(
                f"cannot import exported project {source!r}: {exc}; choose a target with "
                "--project SOURCE=workspace/project"
            ) from None
    return mapping


@functools.lru_cache(maxsize=256)
def _files_root(files_path: Path | None, data_path: Path, project_dir: Path) -> Path | None:
    """``<files-path>/<project directory name>`` (§7.6), if it exists."""
    candidates = []
    if files_path is not None:
        candidates.append(files_path / project_dir.name)
    else:
        # the exporter's defaults: ./exports/data and ./exports/files
        base = data_path.parent if project_dir != data_path else data_path.parent.parent
        candidates.append(base / "files" / project_dir.name)
    return next((c for c in candidates if c.is_dir()), None)


def _readable_header(files: RunFiles) -> RunHeader | None:
    """The header of the first readable part of a run some part of which is unreadable."""
    for part in files.parts:
        try:
            return read_header(RunFiles(files.project_dir, files.prefix, (part,)))[0]
        except ExportFormatError:
            continue
    return None


def _read_exporter_errors(path: Path, report: ImportReport) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        report.skipped.append(
            SkippedRun(
                str(path),
                f"exporter errors file could not be read: {exc.strerror}",
                (),
                "errors-file",
            )
        )
        return
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = {"line": number, "unparsed": line[:500]}
        report.exporter_errors.append(entry if isinstance(entry, dict) else {"value": entry})


def import_neptune_export(
    data_path: str | Path,
    files_path: str | Path | None = None,
    *,
    store: Store | None = None,
    home: str | Path | None = None,
    project: str | Mapping[str, str] | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    name_experiments: bool = True,
    exporter_errors: str | Path | None = None,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Import a ``neptune-exporter`` export into a despina store.

    Args:
        data_path: the exporter's ``--data-path`` (or one project directory inside it).
        files_path: the exporter's ``--files-path``; default ``files`` beside ``data_path``.
        store: the store to write to; else the one at ``home`` (default ``DESPINA_HOME``).
        project: target project for a one-project export, ``"SOURCE=TARGET"``, or a mapping
            of exported project ids to targets; unmapped projects keep their ids.
        dry_run: read and check everything, write nothing (the report says what would happen).
        overwrite: re-import runs that are already in the store (replacing them).
        name_experiments: 2.x runs sharing a display name (``sys/name``) form an experiment.
        exporter_errors: the exporter's ``neptune_exporter_errors.jsonl``, listed in the report.
        progress: receives progress updates (the CLI shows them with rich).

    Returns:
        The report: per run what was loaded and skipped; runs and files skipped entirely.

    Raises:
        FileNotFoundError: ``data_path`` is not a directory.
        ConfigError: a target project name is invalid or ``project`` is ambiguous.
        StoreError: the store cannot be opened or written.
    """
    started = time.perf_counter()
    data = Path(data_path)
    files_dir = Path(files_path) if files_path is not None else None
    progress = progress or _NoProgress()
    report = ImportReport(str(data), None if files_dir is None else str(files_dir), dry_run)
    layout = discover(data)
    for incomplete in layout.incomplete:
        report.skipped.append(
            SkippedRun(
                f"{incomplete.project_dir.name}/{incomplete.prefix}",
                "incomplete run: no _part_0.parquet (the export of this run was interrupted; "
                "rerun neptune-exporter to finish it)",
                tuple(str(f) for f in incomplete.files),
                "incomplete",
            )
        )
    for directory in layout.skipped_dirs:
        report.skipped.append(
            SkippedRun(str(directory), "model-registry export: not imported", (), "models")
        )
    if exporter_errors is not None:
        _read_exporter_errors(Path(exporter_errors), report)

    progress.phase("reading run headers", len(layout.runs), 0)
    entries: list[_Entry] = []
    kept = 0
    for files in layout.runs:
        failure: ExportFormatError | None = None
        table: pa.Table | None = None
        try:
            header, table = read_header(
                files, whole_below=SMALL_RUN_ROWS if kept < KEPT_ROWS else 0
            )
            kept += 0 if table is None else table.num_rows
        except ExportFormatError as exc:
            failure = exc
            readable = _readable_header(files)
            if readable is None:  # not even identifiable: listed by file name
                report.skipped.append(
                    SkippedRun(files.name, str(exc), tuple(str(p) for p in files.parts))
                )
                progress.advance(1, 0)
                continue
            header = readable
        run_report = RunReport(
            files.name,
            exported_run_id=header.run_id,
            exported_sys_id=header.sys_id,
            rows=header.rows,
        )
        if failure is not None:  # kept as a failed run so that its forks know why
            run_report.status = "failed"
            run_report.add("RUN_UNREADABLE", f"{failure}; nothing of the run was imported")
        if files.missing_parts:
            run_report.add(
                "PARTS_MISSING",
                f"part(s) {', '.join(map(str, files.missing_parts))} of the run are missing; "
                "the parts present were imported",
            )
        entries.append(_Entry(header, run_report, "", table))
        progress.advance(1, 0)

    mapping = _target_projects(project, sorted({e.header.project_id for e in entries}))
    owned = False
    if store is None:
        home_dir = resolve_home(home)
        if not dry_run or (home_dir / DB_FILE).exists():  # a dry run never creates a store
            store = Store.open(home_dir)
            owned = True
    try:
        _import_entries(
            entries,
            mapping,
            store,
            report,
            progress,
            dry_run=dry_run,
            overwrite=overwrite,
            name_experiments=name_experiments,
            data_path=data,
            files_path=files_dir,
        )
    finally:
        if owned and store is not None:
            store.close()
    report.seconds = time.perf_counter() - started
    return report


def _import_entries(
    entries: list[_Entry],
    mapping: dict[str, str],
    store: Store | None,
    report: ImportReport,
    progress: ImportProgress,
    *,
    dry_run: bool,
    overwrite: bool,
    name_experiments: bool,
    data_path: Path,
    files_path: Path | None,
) -> None:
    by_project: dict[str, list[_Entry]] = {}
    for entry in entries:
        entry.target = mapping[entry.header.project_id]
        entry.report.project = entry.target
        by_project.setdefault(entry.header.project_id, []).append(entry)
    present: dict[str, set[str]] = {}
    plans: list[tuple[_Entry, int, list[_Entry], dict[int, int], set[int], set[int]]] = []
    for source in sorted(by_project):
        group = by_project[source]
        target = mapping[source]
        if target not in present:
            present[target] = set() if store is None else stored_run_ids(store, target)
        _assign_run_ids(group, present[target], target, by_project, mapping)
        key = _prepare_project(store, target, group, dry_run=dry_run)
        _assign_short_ids(group, key)
        _assign_experiments(group, name_experiments)
        order = order_runs([e.header for e in group])
        orphans = set(order.orphans)
        broken = {i for cycle in order.cycles for i in cycle}
        for cycle in order.cycles:
            names = ", ".join(group[i].header.run_id for i in cycle)
            for i in cycle:
                group[i].report.add(
                    "FORK_CYCLE",
                    f"the fork parents of runs {names} form a cycle; {AS_ROOT}",
                )
        for i in order.order:
            plans.append((group[i], i, group, order.parent, orphans, broken))
    report.runs = [plan[0].report for plan in plans]  # in import order
    marked = _marked_heads(entries)
    total_rows = sum(e.header.rows for e in entries)
    progress.phase("importing runs", len(entries), total_rows)
    # Reading a run (Parquet decoding, which releases the GIL) overlaps with loading and
    # writing the previous one: one read ahead.
    to_read = [
        n
        for n, (entry, *_) in enumerate(plans)
        if entry.report.status != "failed"
        and entry.table is None
        and (overwrite or entry.run_id not in present[entry.target])
    ]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="despina-import-read") as pool:
        ahead: dict[int, Future[pa.Table]] = {}

        def read_ahead(k: int) -> None:
            if k < len(to_read):
                ahead[to_read[k]] = pool.submit(read_run, plans[to_read[k]][0].header)

        read_ahead(0)
        next_read = 0
        for n, (entry, index, group, parents, orphans, broken) in enumerate(plans):
            future = ahead.pop(n, None)
            if future is not None:
                next_read += 1
                read_ahead(next_read)
            _import_one(
                entry,
                group,
                parents.get(index),
                index in orphans,
                index in broken,
                store,
                present[entry.target],
                marked,
                future,
                dry_run=dry_run,
                overwrite=overwrite,
                data_path=data_path,
                files_path=files_path,
            )
            progress.advance(1, entry.header.rows)


def _valid_run_id(run_id: str) -> str | None:
    if not run_id:
        return "it is empty"
    if "/" in run_id:
        return "it contains '/'"
    if len(run_id.encode()) > NAME_LIMIT_BYTES:
        return f"it is longer than {NAME_LIMIT_BYTES} UTF-8 bytes"
    return None


def _assign_run_ids(
    group: list[_Entry],
    present: set[str],
    target: str,
    by_project: dict[str, list[_Entry]],
    mapping: dict[str, str],
) -> None:
    """despina run ids: the header's (§7.2), else its short id when that one is unusable or
    already taken by another run of this import."""
    taken = {
        e.run_id
        for source, entries in by_project.items()
        if mapping[source] == target
        for e in entries
        if e.run_id
    }
    for entry in group:
        header = entry.header
        candidates = [header.target_run_id, header.run_id, header.sys_id or ""]
        chosen = ""
        for candidate in dict.fromkeys(candidates):
            if _valid_run_id(candidate) is None and candidate not in taken:
                chosen = candidate
                break
        if not chosen:
            problem = _valid_run_id(header.target_run_id) or "another run of the export has it"
            entry.report.status = "failed"
            entry.report.add(
                "RUN_ID_UNUSABLE",
                f"run id {header.target_run_id!r} cannot be used ({problem}) and no fallback id "
                "is free; the run was skipped",
            )
            continue
        if chosen != header.target_run_id:
            problem = _valid_run_id(header.target_run_id) or "another run of the export has it"
            entry.report.add(
                "RUN_ID_REPLACED",
                f"run id {header.target_run_id!r} cannot be used ({problem}); imported as "
                f"{chosen!r}",
            )
        entry.run_id = chosen
        entry.report.run_id = chosen
        taken.add(chosen)


def _prepare_project(
    store: Store | None, target: str, group: list[_Entry], *, dry_run: bool
) -> str:
    """Create the target project if needed (its key taken from the exported short ids) and
    return its key; keep the id counter above every exported number of that key."""
    keys = Counter(
        m.group(1)
        for e in group
        if e.header.sys_id is not None and (m := _SHORT_ID.match(e.header.sys_id))
    )
    preferred = keys.most_common(1)[0][0] if keys else None
    if dry_run or store is None:
        if store is not None:
            existing = existing_project_key(store, target)
            if existing is not None:
                return existing
        return preferred or ""
    key = project_key(store, target, preferred=preferred)
    numbers = [
        int(m.group(2))
        for e in group
        if e.header.sys_id is not None
        and (m := _SHORT_ID.match(e.header.sys_id))
        and m.group(1) == key
    ]
    if numbers:
        reserve_run_numbers(store, target, max(numbers))
    return key


def _assign_short_ids(group: list[_Entry], key: str) -> None:
    for entry in group:
        sys_id = entry.header.sys_id
        match = _SHORT_ID.match(sys_id) if sys_id else None
        if match is not None and match.group(1) == key:
            entry.short_no = int(match.group(2))


def _assign_experiments(group: list[_Entry], name_experiments: bool) -> None:
    for entry in group:
        name = entry.header.name
        if name is None or (entry.header.is_2x and not name_experiments):
            continue
        if len(name.encode()) > NAME_LIMIT_BYTES:
            entry.report.add(
                "EXPERIMENT_NAME_TOO_LONG",
                f"sys/name is longer than {NAME_LIMIT_BYTES} UTF-8 bytes; the run was imported "
                "outside any experiment",
                "sys/name",
            )
            continue
        entry.experiment = name


def _marked_heads(entries: list[_Entry]) -> dict[tuple[str, str], frozenset[str]]:
    marked: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        if entry.experiment is not None and entry.header.is_head and entry.run_id:
            marked.setdefault((entry.target, entry.experiment), set()).add(entry.run_id)
    return {key: frozenset(ids) for key, ids in marked.items()}


def _fork_of(
    entry: _Entry,
    parent: _Entry | None,
    orphan: bool,
    broken: bool,
    present: set[str],
) -> tuple[str | None, int | None, tuple[str, float | None] | None]:
    """``(parent run id, fork micro-step, recorded fork)`` of a run (§7.3, §7.4)."""
    header = entry.header
    if header.fork_parent is None:
        return None, None, None
    recorded = (header.fork_parent, header.fork_step)
    step = header.fork_step
    if orphan:
        entry.report.add(
            "FORK_PARENT_NOT_IN_EXPORT",
            f"fork parent {header.fork_parent!r} is not in the export; {AS_ROOT}",
        )
        return None, None, recorded
    if broken or parent is None:
        return None, None, recorded
    if not parent.run_id or parent.run_id not in present:
        entry.report.add(
            "FORK_PARENT_NOT_IMPORTED",
            f"fork parent {header.fork_parent!r} could not be imported; {AS_ROOT}",
        )
        return None, None, recorded
    if step is None or not 0 <= step < 1e12:
        entry.report.add(
            "FORK_STEP_INVALID",
            f"fork step {step!r} is missing or outside [0, 1e12); {AS_ROOT}",
            "sys/forking/step",
        )
        return None, None, recorded
    return parent.run_id, round(step * 1_000_000), None


def _import_one(
    entry: _Entry,
    group: list[_Entry],
    parent_index: int | None,
    orphan: bool,
    broken: bool,
    store: Store | None,
    present: set[str],
    marked: dict[tuple[str, str], frozenset[str]],
    table: Future[pa.Table] | None,
    *,
    dry_run: bool,
    overwrite: bool,
    data_path: Path,
    files_path: Path | None,
) -> None:
    rr = entry.report
    if rr.status == "failed":
        entry.table = None
        return
    if entry.run_id in present and not overwrite:
        entry.table = None
        rr.status = "exists"
        if store is not None:
            rr.sys_id = stored_sys_id(store, entry.target, entry.run_id)
        return
    parent = None if parent_index is None else group[parent_index]
    fork_run_id, fork_step, recorded = _fork_of(entry, parent, orphan, broken, present)
    plan = RunPlan(
        project=entry.target,
        run_id=entry.run_id,
        creation_ms=entry.header.creation_ms or int(time.time() * 1000),
        experiment_name=entry.experiment,
        marked_heads=marked.get((entry.target, entry.experiment or ""), frozenset()),
        short_no=entry.short_no,
        fork_run_id=fork_run_id,
        fork_step=fork_step,
        recorded_fork=recorded,
        files_root=_files_root(files_path, data_path, entry.header.files.project_dir),
        blobs=None if dry_run or store is None else store.blobs,
    )
    try:
        if entry.table is not None:
            rows, entry.table = entry.table, None
        else:
            rows = table.result() if table is not None else read_run(entry.header)
        run = load_run(rows, plan, rr)
        del rows
        if dry_run or store is None:
            rr.status = "would import"
            rr.parent = fork_run_id
            present.add(entry.run_id)
            return
        outcome = import_run(store, run, replace=overwrite)
    except (ExportFormatError, ValueError, OSError) as exc:
        rr.status = "failed"
        rr.add("RUN_FAILED", f"{exc}; nothing of the run was imported")
        return
    for issue in outcome.issues:
        rr.add(issue.code, issue.message, issue.path)
    rr.status = "imported"
    rr.sys_id = outcome.sys_id
    rr.parent = fork_run_id if outcome.forked else None
    present.add(entry.run_id)
    if rr.remapped:
        rr.add(
            "SYS_ID_REMAPPED",
            f"sys/id {rr.exported_sys_id!r} is taken or has another project key; the run got "
            f"{rr.sys_id!r}",
            "sys/id",
        )
