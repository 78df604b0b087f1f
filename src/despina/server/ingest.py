"""Ingestion: ``RunOperation`` → ``RunSpec`` / ``Batch`` → store, with durable request statuses.

``POST /api/client/v1/ingest`` decodes one ``RunOperation``, applies it synchronously and answers
only after the result is committed; the final status is stored with a fresh request id, so the
first ``/ingest/check`` already answers it (neptune-scale's after ``STATUS_SETTLE_S``). The
rules of ingestion live in the store (``despina.store.runs`` and ``despina.store.writer``); this
module maps the protobuf shapes onto the store's batch types and the store's issues onto
``RequestStatus`` entries.

Re-sends (neptune-scale re-submits unconfirmed operations after a restart) are recognised by the
SHA-256 of the serialized operation within the run: the original request id is answered and
nothing is applied twice. Operations that differ (a re-send regrouped with newer operations) are
applied; their already-stored points come back as ``SERIES_POINT_DUPLICATE`` warnings.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from neptune_api.proto.google_rpc.code_pb2 import Code
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2
from neptune_api.proto.neptune_pb.ingest.v1.ingest_pb2 import IngestCode
from neptune_api.proto.neptune_pb.ingest.v1.pub.client_pb2 import (
    BulkRequestStatus,
    RequestIdList,
    SubmitResponse,
)
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from neptune_api.proto.neptune_pb.ingest.v1.pub.request_status_pb2 import RequestStatus

from despina.config import parse_project
from despina.errors import ConfigError
from despina.server.auth import Principal
from despina.server.errors import bad_request, parse_protobuf_body
from despina.server.settings import ServerSettings
from despina.server.wire import FloatBlock, float_blocks, snapshot_spans
from despina.store import Store
from despina.store.access import (
    StoredStatus,
    find_project,
    find_request,
    find_run_pk,
    prune_requests,
    record_request,
    request_statuses,
    save_request,
    sha256_hex,
)
from despina.store.batch import (
    NO_STEP,
    WARNING,
    Assign,
    Batch,
    IngestIssue,
    MetricColumn,
    ModifySet,
    PointAppend,
    PreviewPoint,
)
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

__all__ = [
    "MAX_STATUS_IDS",
    "IngestService",
    "decode_snapshots",
    "decode_update_batch",
    "status_message",
]

logger = logging.getLogger("despina.server.ingest")

MAX_STATUS_IDS = 1000
STATUS_SETTLE_S = 1.25
"""For neptune-scale, an operation's status is "not yet processed" for this long after its
answer (it is stored already). Neptune processes operations asynchronously and answers their
status after a second or more; neptune-scale's lag checker looks once a second at the operations
whose status has not come back, so statuses answered at once hid about half the lag episodes
from ``on_async_lag_callback``. Longer than that check's interval, so it sees every operation."""
MICRO = 1_000_000
MAX_STEP_MICRO = 10**18
MAX_WHOLE_STEP = 10**12
MAX_HISTOGRAM_EDGES = 513
FILE_REF_LIMIT = 4 * 1024
WRITER_CACHE = 128
"""Run writers kept warm (each holds its touched series' open chunks)."""

_RPC_CODE: dict[str, str] = {
    "PROJECT_NOT_FOUND": "NOT_FOUND",
    "RUN_NOT_FOUND": "NOT_FOUND",
    "RUN_FORK_PARENT_NOT_FOUND": "NOT_FOUND",
    "RUN_DUPLICATE": "ALREADY_EXISTS",
    "SERIES_POINT_DUPLICATE": "ALREADY_EXISTS",
    "RUN_CONFLICTING": "FAILED_PRECONDITION",
    "BATCH_CONTAINS_DEPENDENT_RUNS": "INTERNAL",
    "INGEST_SUSPENDED": "INTERNAL",
    "INTERNAL": "INTERNAL",
}
"""google.rpc code per IngestCode; every other code is INVALID_ARGUMENT (wire-protocol.md §5.3)."""


def _rpc_code(ingest_code: str) -> str:
    return _RPC_CODE.get(ingest_code, "INVALID_ARGUMENT")


def _issue_count(issue: IngestIssue) -> int:
    """How many items an issue stands for (the writer folds repeats into one issue)."""
    return max(1, issue.count)


def _status(items: int, issues: Iterable[IngestIssue]) -> StoredStatus:
    """``[(OK, applied)] + [(code, count, detail)]`` for a processed operation."""
    rejected = 0
    counts: dict[tuple[str, str], int] = collections.Counter()
    for issue in issues:
        n = _issue_count(issue)
        rejected += n
        counts[(_rpc_code(issue.code), issue.code)] += n
    out: StoredStatus = [("OK", max(items - rejected, 0), "OK")]
    out.extend((code, n, detail) for (code, detail), n in counts.items())
    return out


def _fatal(code: str, message: str) -> list[IngestIssue]:
    return [IngestIssue(code, message)]


_NOT_YET = RequestStatus(code_by_count=[RequestStatus.CodeByCount(code=Code.UNAVAILABLE, count=1)])
"""The status neptune-scale reads as "not yet processed" (it asks again a second later)."""


def status_message(status: StoredStatus | None) -> RequestStatus:
    """The protobuf ``RequestStatus`` of a stored status (None: an unknown request id)."""
    if status is None:
        return RequestStatus(
            code_by_count=[
                RequestStatus.CodeByCount(code=Code.NOT_FOUND, count=1, detail=IngestCode.INTERNAL)
            ]
        )
    entries = []
    for code, count, detail in status:
        entry = RequestStatus.CodeByCount(code=Code.Value(code), count=count)
        if detail != "OK":
            entry.detail = IngestCode.Value(detail)
        entries.append(entry)
    return RequestStatus(code_by_count=entries)


# -- decoding ------------------------------------------------------------------------------------


def _timestamp_ms(ts: object) -> int:
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000  # type: ignore[attr-defined]


def _step_micro(step: common_pb2.Step) -> int:
    whole = int(step.whole)
    if whole >= MAX_WHOLE_STEP:
        return MAX_STEP_MICRO  # the writer rejects it as SERIES_STEP_TOO_LARGE
    return min(whole * MICRO + int(step.micro), MAX_STEP_MICRO)


def _histogram_json(
    path: str, histogram: common_pb2.Histogram
) -> tuple[str | None, IngestIssue | None]:
    edges = list(histogram.bin_edges)
    kind = histogram.WhichOneof("values")
    if kind == "densities":
        values = list(histogram.densities.values)
        type_name = "DENSITY"
    else:
        values = [float(v) for v in histogram.counts.values]
        type_name = "COUNTING"
    problem: tuple[str, str] | None = None
    if len(edges) > MAX_HISTOGRAM_EDGES:
        problem = (
            "HISTOGRAM_TOO_MANY_BINS",
            f"histogram {path!r} has {len(edges)} bin edges; at most {MAX_HISTOGRAM_EDGES}",
        )
    elif any(e != e for e in edges):
        problem = ("HISTOGRAM_BIN_EDGES_CONTAINS_NAN", f"histogram {path!r} has a NaN bin edge")
    elif any(b <= a for a, b in itertools.pairwise(edges)):
        problem = (
            "HISTOGRAM_BIN_EDGES_NOT_INCREASING",
            f"bin edges of histogram {path!r} do not strictly increase",
        )
    elif len(values) != len(edges) - 1:
        problem = (
            "HISTOGRAM_VALUES_LENGTH_DOESNT_MATCH_BINS",
            f"histogram {path!r} has {len(values)} values for {len(edges)} bin edges "
            "(need edges - 1)",
        )
    if problem is not None:
        return None, IngestIssue(problem[0], problem[1], path)
    return json.dumps({"type": type_name, "edges": edges, "values": values}), None


def _file_json(path: str, ref: common_pb2.FileRef) -> tuple[str | None, IngestIssue | None]:
    text = json.dumps(
        {"path": ref.path, "size_bytes": int(ref.size_bytes), "mime_type": ref.mime_type},
        ensure_ascii=False,
    )
    if len(text.encode()) > FILE_REF_LIMIT:
        return None, IngestIssue(
            "FILE_REF_EXCEEDS_SIZE_LIMIT",
            f"file reference for {path!r} has over 4 KB of metadata",
            path,
        )
    return text, None


def _unsupported(path: str, kind: str | None, where: str) -> IngestIssue:
    what = f"a {kind} value" if kind else "a value with no kind set"
    return IngestIssue(
        "FIELD_TYPE_UNSUPPORTED", f"{what} cannot be used in {where} (attribute {path!r})", path
    )


_ASSIGN_TYPES = {
    "float64": "float",
    "int64": "int",
    "bool": "bool",
    "string": "string",
    "timestamp": "datetime",
    "string_set": "string_set",
    "file_ref": "file",
}
_APPEND_TYPES = {
    "float64": "float_series",
    "string": "string_series",
    "histogram": "histogram_series",
    "file_ref": "file_series",
}
"""Store type of each value kind; a batch records the first per path (``Batch.first_types``),
so a path keeps the type it was logged with first although a batch applies assigns first."""


@dataclass(slots=True)
class _Segment:
    """Snapshots folded into one store batch, keeping the order that matters."""

    batch: Batch = field(default_factory=Batch)
    steps: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    columns: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    def finish(self) -> Batch:
        if self.columns:
            all_steps = np.asarray(self.steps, dtype=np.int64)
            all_stamps = np.asarray(self.stamps, dtype=np.int64)
            n = len(self.steps)
            shared: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
            for path, (rows, values) in self.columns.items():
                first, last, count = rows[0], rows[-1], len(rows)
                if last - first + 1 == count:  # contiguous: share the arrays between series
                    key = (first, last)
                    found = shared.get(key)
                    if found is None:
                        if first == 0 and last == n - 1:
                            found = (all_steps, all_stamps)
                        else:
                            found = (all_steps[first : last + 1], all_stamps[first : last + 1])
                        shared[key] = found
                    steps, stamps = found
                else:
                    index = np.asarray(rows, dtype=np.int64)
                    steps, stamps = all_steps[index], all_stamps[index]
                self.batch.metrics[path] = MetricColumn(
                    steps, np.asarray(values, dtype=np.float64), stamps
                )
        return self.batch


def decode_snapshots(
    snapshots: Iterable[common_pb2.UpdateRunSnapshot], now_ms: int
) -> tuple[list[Batch], int, list[IngestIssue]]:
    """Store batches for a run's snapshots, the number of items, and the items rejected here.

    Snapshots are folded into as few batches as possible; a new batch starts where folding would
    change the outcome (a committed point after a preview: the writer applies committed points
    of a batch before its previews).
    """
    segments: list[_Segment] = []
    seg = _Segment()
    items = 0
    issues: list[IngestIssue] = []
    for snap in snapshots:
        step = _step_micro(snap.step) if snap.HasField("step") else NO_STEP
        ts = _timestamp_ms(snap.timestamp) if snap.HasField("timestamp") else now_ms
        preview = snap.HasField("preview") and snap.preview.is_preview
        completion = float(snap.preview.completion_ratio) if preview else 1.0
        assign = snap.assign
        if assign:
            items += len(assign)
            for path, value in assign.items():
                kind = value.WhichOneof("value")
                if kind in _ASSIGN_TYPES:
                    seg.batch.first_types.setdefault(path, _ASSIGN_TYPES[kind])
                if kind == "float64":
                    seg.batch.ops.append(Assign(path, "float", value.float64))
                elif kind == "int64":
                    seg.batch.ops.append(Assign(path, "int", value.int64))
                elif kind == "bool":
                    seg.batch.ops.append(Assign(path, "bool", value.bool))
                elif kind == "string":
                    seg.batch.ops.append(Assign(path, "string", value.string))
                elif kind == "timestamp":
                    seg.batch.ops.append(Assign(path, "datetime", _timestamp_ms(value.timestamp)))
                elif kind == "string_set":
                    seg.batch.ops.append(
                        Assign(path, "string_set", frozenset(value.string_set.values))
                    )
                elif kind == "file_ref":
                    ref = value.file_ref
                    seg.batch.ops.append(
                        Assign(
                            path,
                            "file",
                            {
                                "path": ref.path,
                                "size_bytes": int(ref.size_bytes),
                                "mime_type": ref.mime_type,
                            },
                        )
                    )
                else:
                    issues.append(_unsupported(path, kind, "assign"))
        modify = snap.modify_sets
        if modify:
            items += len(modify)
            for path, change in modify.items():
                if change.WhichOneof("type") != "string":
                    issues.append(_unsupported(path, None, "modify_sets"))
                    continue
                seg.batch.first_types.setdefault(path, "string_set")
                add, remove = [], []
                for element, operation in change.string.values.items():
                    if operation == common_pb2.ADD:
                        add.append(element)
                    elif operation == common_pb2.REMOVE:
                        remove.append(element)
                seg.batch.ops.append(ModifySet(path, add, remove))
        append = snap.append
        if not append:
            continue
        items += len(append)
        if preview:
            for path, value in append.items():
                if value.WhichOneof("value") == "float64":
                    seg.batch.first_types.setdefault(path, "float_series")
                    seg.batch.previews.append(
                        PreviewPoint(path, step, value.float64, ts, completion)
                    )
                else:
                    issues.append(
                        IngestIssue(
                            "FIELD_TYPE_UNSUPPORTED",
                            f"previews are supported for float series only (attribute {path!r})",
                            path,
                        )
                    )
            continue
        if seg.batch.previews:
            segments.append(seg)
            seg = _Segment()
        row = -1
        columns = seg.columns
        first_types = seg.batch.first_types
        for path, value in append.items():
            kind = value.WhichOneof("value")
            if kind in _APPEND_TYPES:
                first_types.setdefault(path, _APPEND_TYPES[kind])
            if kind == "float64":
                if row < 0:
                    row = len(seg.steps)
                    seg.steps.append(step)
                    seg.stamps.append(ts)
                column = columns.get(path)
                if column is None:
                    columns[path] = ([row], [value.float64])
                else:
                    column[0].append(row)
                    column[1].append(value.float64)
            elif kind == "string":
                seg.batch.points.append(PointAppend(path, "string_series", step, ts, value.string))
            elif kind == "histogram":
                text, issue = _histogram_json(path, value.histogram)
                if text is None:
                    issues.append(issue)  # type: ignore[arg-type]
                else:
                    seg.batch.points.append(PointAppend(path, "histogram_series", step, ts, text))
            elif kind == "file_ref":
                text, issue = _file_json(path, value.file_ref)
                if text is None:
                    issues.append(issue)  # type: ignore[arg-type]
                else:
                    seg.batch.points.append(PointAppend(path, "file_series", step, ts, text))
            else:
                issues.append(_unsupported(path, kind, "append"))
    segments.append(seg)
    batches = [s.finish() for s in segments]
    return [b for b in batches if not b.is_empty()], items, issues


FAST_MIN_POINTS = 256
"""Below this many points an operation is decoded by protobuf alone (the fast path's setup
costs more than it saves)."""


def _fast_batch(
    blocks: list[FloatBlock], start: int, end: int, steps: np.ndarray, stamps: np.ndarray
) -> tuple[Batch, int]:
    """The metrics of the fast snapshots in ``[start, end)`` as one batch, and their count."""
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    items = 0
    for block in blocks:
        rows = block.rows
        if len(rows) == 0 or rows[0] >= end or rows[-1] < start:
            continue
        inside = (rows >= start) & (rows < end)
        if bool(inside.all()):
            chosen_rows, values = rows, block.values
        else:
            chosen_rows, values = rows[inside], block.values[inside]
        if len(chosen_rows) == 0:
            continue
        items += values.size
        for k, key in enumerate(block.keys):
            parts.setdefault(key, []).append((chosen_rows, values[:, k]))
    batch = Batch()
    shared: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
    for key, pieces in parts.items():
        if len(pieces) == 1:
            rows, values = pieces[0]
        else:
            rows = np.concatenate([p[0] for p in pieces])
            values = np.concatenate([p[1] for p in pieces])
            order = np.argsort(rows, kind="stable")
            rows, values = rows[order], values[order]
        first, last, count = int(rows[0]), int(rows[-1]), len(rows)
        if last - first + 1 == count:
            found = shared.get((first, last, count))
            if found is None:
                found = (steps[first : last + 1], stamps[first : last + 1])
                shared[(first, last, count)] = found
            key_steps, key_stamps = found
        else:
            key_steps, key_stamps = steps[rows], stamps[rows]
        batch.metrics[key] = MetricColumn(key_steps, np.ascontiguousarray(values), key_stamps)
    return batch, items


def decode_update_batch(
    body: bytes, op: RunOperation, now_ms: int
) -> tuple[list[Batch], int, list[IngestIssue]]:
    """Store batches for an ``update_batch`` operation, reading float-only snapshots in bulk.

    Same result as :func:`decode_snapshots` on the operation's snapshots.
    """
    snapshots = op.update_batch.snapshots
    spans = snapshot_spans(body)
    if spans is None or len(spans) != len(snapshots):
        return decode_snapshots(snapshots, now_ms)
    fast = np.flatnonzero(spans.fast)
    if len(fast) == 0:
        return decode_snapshots(snapshots, now_ms)
    blocks, _ = float_blocks(body, spans, fast)
    if sum(b.values.size for b in blocks) < FAST_MIN_POINTS:
        return decode_snapshots(snapshots, now_ms)
    in_block = np.zeros(len(spans), dtype=np.bool_)
    for block in blocks:
        in_block[block.rows] = True
    steps = spans.steps
    stamps = np.where(spans.has_ts, spans.ts_ms, now_ms)
    batches: list[Batch] = []
    items = 0
    issues: list[IngestIssue] = []
    n = len(spans)
    cuts = np.flatnonzero(in_block[1:] != in_block[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    for i, j in itertools.pairwise(bounds):
        kind = bool(in_block[i])
        if kind:
            batch, count = _fast_batch(blocks, i, j, steps, stamps)
            batches.append(batch)
            items += count
        else:
            slow_batches, count, slow_issues = decode_snapshots(
                [snapshots[k] for k in range(i, j)], now_ms
            )
            batches.extend(slow_batches)
            items += count
            issues.extend(slow_issues)
    return [b for b in batches if not b.is_empty()], items, issues


def _run_spec(op: RunOperation, owner: str) -> RunSpec:
    run = op.create
    fork_run_id: str | None = None
    fork_step: int | None = None
    if run.HasField("fork_point"):
        point = run.fork_point
        fork_run_id = point.parent_run_id
        fork_step = _step_micro(point.step) if point.HasField("step") else None
        if not fork_run_id or fork_step is None:
            raise ValueError(
                "RUN_INVALID_CREATION_PARAMETERS: a fork point needs a parent run id and a step"
            )
        if fork_step >= MAX_STEP_MICRO:
            raise ValueError("RUN_INVALID_CREATION_PARAMETERS: fork step must be below 1e12")
    creation: int | None = None
    if run.HasField("creation_time"):
        creation = _timestamp_ms(run.creation_time)
        if not -62135596800000 <= creation <= 253402300799999:
            raise ValueError("RUN_INVALID_CREATION_PARAMETERS: creation time outside years 1-9999")
    return RunSpec(
        project=op.project,
        run_id=op.run_id or run.run_id,
        experiment_name=run.experiment_id if run.HasField("experiment_id") else None,
        creation_ms=creation,
        family=run.family or None,
        fork_run_id=fork_run_id,
        fork_step=fork_step,
        inherit_configs=run.inherit_configs if run.HasField("inherit_configs") else True,
        owner=owner,
    )


# -- the service ---------------------------------------------------------------------------------


class _AlreadyApplied(Exception):
    """The operation was applied meanwhile (another replica got it too): answer its id."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


class _Writers:
    """Run writers by run row id (least recently used dropped), each with its own lock."""

    def __init__(self, store: Store, size: int = WRITER_CACHE) -> None:
        self._store = store
        self._size = size
        self._lock = threading.Lock()
        self._writers: collections.OrderedDict[int, tuple[RunWriter, threading.Lock]] = (
            collections.OrderedDict()
        )

    def get(self, run_pk: int) -> tuple[RunWriter, threading.Lock]:
        with self._lock:
            found = self._writers.get(run_pk)
            if found is None:
                found = (RunWriter(self._store, run_pk), threading.Lock())
                self._writers[run_pk] = found
                while len(self._writers) > self._size:
                    self._writers.popitem(last=False)
            else:
                self._writers.move_to_end(run_pk)
            return found


class IngestService:
    """Applies ``RunOperation`` bodies to the store and answers their statuses."""

    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        self._writers = _Writers(store)
        self._create_lock = threading.Lock()
        # request id -> when it was answered (monotonic), for STATUS_SETTLE_S; oldest first
        self._answered: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._answered_lock = threading.Lock()

    def submit(self, principal: Principal, body: bytes) -> bytes:
        """Apply one serialized ``RunOperation``; returns the serialized ``SubmitResponse``.

        Raises:
            ApiError: the body is not a ``RunOperation`` (400).
            AuthError: the token may not write to the operation's project (403).
        """
        request_id = self._apply(principal, body)
        now = time.monotonic()
        with self._answered_lock:
            answered = self._answered
            answered[request_id] = now
            answered.move_to_end(request_id)
            while answered and next(iter(answered.values())) < now - STATUS_SETTLE_S:
                answered.popitem(last=False)
        return _submit_response(request_id)

    def _settling(self, request_ids: list[str]) -> set[int]:
        """Positions of the requests answered less than ``STATUS_SETTLE_S`` ago."""
        since = time.monotonic() - STATUS_SETTLE_S
        with self._answered_lock:
            return {
                i
                for i, request_id in enumerate(request_ids)
                if self._answered.get(request_id, since) > since
            }

    def _apply(self, principal: Principal, body: bytes) -> str:
        """Apply one serialized ``RunOperation``; returns its request id."""
        op = parse_protobuf_body(RunOperation, body)
        kind = op.WhichOneof("operation")
        request_id = str(uuid.uuid4())
        digest = sha256_hex(body)
        try:
            parse_project(op.project)
        except ConfigError as exc:
            self._save(
                request_id, 0, op.run_id, digest, 0, _fatal("PROJECT_INVALID_NAME", str(exc))
            )
            return request_id
        principal.require(op.project)
        project = find_project(self.store, op.project)
        workspace = op.project.split("/")[0]
        if (
            project is None
            and op.create_missing_project
            and self.settings.auto_create_projects
            and principal.may_create_in(workspace)
        ):
            self.store.create_project(op.project, exist_ok=True)
            project = find_project(self.store, op.project)
        if project is None:
            self._save(
                request_id,
                0,
                op.run_id,
                digest,
                0,
                _fatal("PROJECT_NOT_FOUND", f"project {op.project!r} does not exist"),
            )
            return request_id
        earlier = find_request(self.store, project.id, op.run_id, digest)
        if earlier is not None:
            return earlier
        if kind is None:
            raise bad_request(
                "the RunOperation carries no operation (create, update or update_batch)"
            )
        if kind == "create":
            items, issues = self._create(op, principal)
        else:
            try:
                items, issues, recorded = self._update(project.id, op, body, request_id, digest)
            except _AlreadyApplied as applied:  # by another replica, while this one waited
                return applied.request_id
            if recorded:
                self._log(op.run_id, request_id, issues)
                return request_id
        self._save(request_id, project.id, op.run_id, digest, items, issues)
        return request_id

    def _create(self, op: RunOperation, principal: Principal) -> tuple[int, list[IngestIssue]]:
        try:
            spec = _run_spec(op, principal.username)
            with self._create_lock:  # experiment heads: one creation at a time in this process
                created = create_run(self.store, spec)
        except ValueError as exc:
            text = str(exc)
            code, _, message = text.partition(": ")
            if code != "RUN_INVALID_CREATION_PARAMETERS":
                code, message = "RUN_INVALID_CREATION_PARAMETERS", text
            return 1, _fatal(code, message)
        return 1, list(created.issues)

    def _update(
        self, project_id: int, op: RunOperation, body: bytes, request_id: str, digest: str
    ) -> tuple[int, list[IngestIssue], bool]:
        """Apply an update; returns ``(items, issues, recorded)``.

        The status is recorded in the transaction of the last batch (``recorded``): a replica
        killed after that commit left both the points and the status, one killed before it
        neither (a resend applies the rest; points already stored are duplicates). The first
        batch checks, under the run's lock, that no replica applied the same body meanwhile.

        Raises:
            _AlreadyApplied: another replica (or thread) applied the same operation first.
        """
        run_id = op.run_id
        run_pk = find_run_pk(self.store, project_id, run_id)
        if run_pk is None:
            return (
                1,
                _fatal(
                    "RUN_NOT_FOUND",
                    f"run {run_id!r} does not exist; send its create operation first",
                ),
                False,
            )
        now = int(time.time() * 1000)
        if op.WhichOneof("operation") == "update":
            batches, items, issues = decode_snapshots([op.update], now)
        else:
            batches, items, issues = decode_update_batch(body, op, now)
        if not batches:
            return items, issues, False

        def guard(conn: Any) -> None:
            earlier = find_request(self.store, project_id, run_id, digest)
            if earlier is not None:
                raise _AlreadyApplied(earlier)

        def record(conn: Any, found: list[IngestIssue]) -> None:
            status = _status(items, [*issues, *found])
            record_request(conn, request_id, project_id, run_id, digest, status)

        writer, lock = self._writers.get(run_pk)
        with lock:
            for i, batch in enumerate(batches):
                last = i == len(batches) - 1
                issues.extend(
                    writer.apply(
                        batch,
                        durable=last,  # the acknowledgement covers every batch before it
                        guard=guard if i == 0 else None,
                        before_commit=record if last else None,
                    )
                )
        return items, issues, True

    def _save(
        self,
        request_id: str,
        project_id: int,
        run_id: str,
        digest: str,
        items: int,
        issues: list[IngestIssue],
    ) -> None:
        status = _status(items, issues)
        save_request(self.store, request_id, project_id, run_id, digest, status)
        self._log(run_id, request_id, issues)

    @staticmethod
    def _log(run_id: str, request_id: str, issues: list[IngestIssue]) -> None:
        for issue in issues:
            if issue.severity != WARNING:
                logger.info("ingest %s %s: %s %s", run_id, request_id, issue.code, issue.message)

    def prune_statuses(self) -> int:
        """Forget request statuses older than ``status_retention_days``; returns how many.

        A background job (:mod:`despina.server.jobs`): one replica at a time runs it.
        """
        horizon = int(time.time() * 1000) - self.settings.status_retention_days * 86_400_000
        return prune_requests(self.store, horizon)

    def check(
        self, principal: Principal, project_name: str, body: bytes, settle: bool = False
    ) -> bytes:
        """Statuses of the request ids in a serialized ``RequestIdList``, in request order.

        With ``settle`` (neptune-scale asking), a request answered less than
        ``STATUS_SETTLE_S`` ago is "not yet processed" (see there); other callers get the
        stored status at once.

        Raises:
            ApiError: the body is not a ``RequestIdList`` or lists over 1000 ids (400).
            AuthError: the token may not reach the project (403).
        """
        ids = parse_protobuf_body(RequestIdList, body)
        if len(ids.ids) > MAX_STATUS_IDS:
            raise bad_request(
                f"{len(ids.ids)} request ids in one status check; at most {MAX_STATUS_IDS}"
            )
        try:
            parse_project(project_name)
        except ConfigError:
            pass  # statuses of operations refused for their project name live under id 0
        else:
            principal.require(project_name)
        project = find_project(self.store, project_name)
        wanted = [entry.value for entry in ids.ids]
        found = request_statuses(self.store, 0 if project is None else project.id, wanted)
        if project is not None:
            missing = [i for i, status in enumerate(found) if status is None]
            if missing:
                fallback = request_statuses(self.store, 0, [wanted[i] for i in missing])
                for i, status in zip(missing, fallback, strict=True):
                    found[i] = status
        settling = self._settling(wanted) if settle else set()
        return BulkRequestStatus(
            statuses=[_NOT_YET if i in settling else status_message(s) for i, s in enumerate(found)]
        ).SerializeToString()


def _submit_response(request_id: str) -> bytes:
    return SubmitResponse(request_id=request_id, request_ids=[request_id]).SerializeToString()
