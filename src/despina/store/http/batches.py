"""A :class:`~despina.store.batch.Batch` as bytes: what the local queue keeps and the native
write endpoint takes (docs/remote-logging.md).

Layout: ``DSB1``, a little-endian u32 header length, the header (UTF-8 JSON), then the metric
points as raw little-endian buffers. Series that share their steps and timestamps (every series
of a ``log_metrics`` call with the same keys: the usual training loop) share one copy of them:
``metrics.groups[i]`` is the step group of series ``i`` and ``metrics.group_counts`` the length
of each group. The buffers: every group's steps (int64), every series' values (float64, series
in ``metrics.keys`` order with ``metrics.counts`` points each), every group's timestamps
(int64). A wide call thus costs 8 bytes per point on the wire, not 24, and one ``tobytes`` and
one ``frombuffer`` per buffer whatever the number of series.

The header keeps exact types: ints stay ints (JSON integers), floats keep NaN and ±inf
(``NaN`` / ``Infinity`` tokens, which Python's ``json`` reads back), string sets are tagged,
datetimes are epoch-ms ints already (as in the batch), file references are dicts.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from despina.errors import ConfigError
from despina.store.batch import (
    Assign,
    Batch,
    IngestIssue,
    MetricColumn,
    ModifySet,
    PointAppend,
    PreviewPoint,
)

__all__ = [
    "BATCH_MAGIC",
    "batch_request",
    "decode_batch",
    "encode_batch",
    "issues_of",
    "split_batch",
    "split_request",
]

BATCH_MAGIC = b"DSB1"
_HEAD = struct.Struct("<4sI")
_ENVELOPE = struct.Struct("<I")
"""The length of a ``/runs/batch`` request's JSON envelope, before it."""

PART_POINTS = 1_000_000
"""Metric points per encoded part at most (24 MB of buffers): a batch larger than this (a
flush woken early by a fast loop) is queued and sent as several parts, in order."""


def _value_out(type_: str, value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return {"$set": sorted(value)}
    return value


def _value_in(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1 and "$set" in value:
        return frozenset(value["$set"])
    return value


def _bad_op(op: Any) -> Any:
    raise ValueError(f"unknown operation {op!r:.80}")


def encode_batch(batch: Batch) -> bytes:
    """The bytes of ``batch`` (see the module docstring)."""
    ops: list[list[Any]] = []
    for op in batch.ops:
        if isinstance(op, Assign):
            ops.append(["a", op.path, op.type, _value_out(op.type, op.value)])
        else:
            ops.append(["s", op.path, list(op.add), list(op.remove)])
    keys = list(batch.metrics)
    columns = [batch.metrics[k] for k in keys]
    counts = [len(c.steps) for c in columns]
    group_of: dict[tuple[int, int], int] = {}
    groups: list[int] = []
    shared: list[MetricColumn] = []
    for column in columns:  # the same arrays (by identity): one copy of the steps and times
        key = (id(column.steps), id(column.timestamps))
        found = group_of.get(key)
        if found is None:
            found = group_of[key] = len(shared)
            shared.append(column)
        groups.append(found)
    header: dict[str, Any] = {
        "ops": ops,
        "metrics": {
            "keys": keys,
            "counts": counts,
            "groups": groups,
            "group_counts": [len(c.steps) for c in shared],
        },
        "previews": [[p.path, p.step, p.value, p.timestamp, p.completion] for p in batch.previews],
        "points": [[p.path, p.type, p.step, p.timestamp, p.value] for p in batch.points],
        "blobs": [list(b) for b in batch.blobs],
        "first_types": batch.first_types,
        "ping_ms": batch.ping_ms,
    }
    text = json.dumps(header, separators=(",", ":")).encode("utf-8", "surrogatepass")
    parts = [_HEAD.pack(BATCH_MAGIC, len(text)), text]
    if columns:
        for dtype, field, source in (
            (np.int64, "steps", shared),
            (np.float64, "values", columns),
            (np.int64, "timestamps", shared),
        ):
            arrays = [np.asarray(getattr(c, field), dtype=dtype) for c in source]
            joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            parts.append(joined.astype(joined.dtype.newbyteorder("<"), copy=False).tobytes())
    return b"".join(parts)


def decode_batch(data: bytes | memoryview) -> Batch:
    """The batch ``data`` holds.

    Raises:
        ConfigError: ``data`` is not an encoded batch (or is cut short).
    """
    view = memoryview(data)
    try:
        magic, size = _HEAD.unpack_from(view, 0)
        if magic != BATCH_MAGIC:
            raise ValueError(f"starts with {bytes(magic)!r}, not {BATCH_MAGIC!r}")
        start = _HEAD.size
        header = json.loads(bytes(view[start : start + size]).decode("utf-8", "surrogatepass"))
        offset = start + size
        batch = Batch(
            ops=[
                Assign(op[1], op[2], _value_in(op[3]))
                if op[0] == "a" and len(op) == 4
                else ModifySet(op[1], op[2], op[3])
                if op[0] == "s" and len(op) == 4
                else _bad_op(op)
                for op in header["ops"]
            ],
            previews=[PreviewPoint(*p) for p in header["previews"]],
            points=[PointAppend(*p) for p in header["points"]],
            blobs=[tuple(b) for b in header["blobs"]],
            first_types=dict(header["first_types"]),
            ping_ms=header["ping_ms"],
        )
        _check(batch)
        metrics = header["metrics"]
        keys: list[str] = metrics["keys"]
        counts: list[int] = metrics["counts"]
        groups: list[int] = metrics["groups"]
        group_counts: list[int] = metrics["group_counts"]
        _need(
            all(isinstance(x, list) for x in (keys, counts, groups, group_counts))
            and len(keys) == len(counts) == len(groups),
            "metrics",
            metrics,
        )
        for n in group_counts:
            _need(type(n) is int and n >= 0, "a step group's length", n)
        for key, n, group in zip(keys, counts, groups, strict=True):
            _need(_is_text(key) and type(n) is int, "a metric key or count", key)
            _need(type(group) is int and 0 <= group < len(group_counts), "a step group", group)
            _need(n == group_counts[group], "a metric count", n)
        total = sum(counts)
        shared = sum(group_counts)
        if len(view) != offset + 8 * total + 16 * shared:
            raise ValueError(f"{len(view) - offset} bytes of points for {total} points")
        if keys:
            all_steps = np.frombuffer(view, "<i8", shared, offset)
            values = np.frombuffer(view, "<f8", total, offset + 8 * shared)
            all_stamps = np.frombuffer(view, "<i8", shared, offset + 8 * (shared + total))
            starts = np.concatenate(([0], np.cumsum(group_counts, dtype=np.int64)))
            steps = [all_steps[starts[g] : starts[g + 1]] for g in range(len(group_counts))]
            stamps = [all_stamps[starts[g] : starts[g + 1]] for g in range(len(group_counts))]
            at = 0
            for key, n, group in zip(keys, counts, groups, strict=True):
                batch.metrics[key] = MetricColumn(steps[group], values[at : at + n], stamps[group])
                at += n
        elif len(view) != offset:
            raise ValueError("trailing bytes after the header")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error) as exc:
        raise ConfigError(f"not a despina batch ({exc}); send one made by encode_batch") from None
    return batch


_INT64 = (-(2**63), 2**63 - 1)
_STEP_RANGE = (-1, 10**18)
_ASSIGNED = {
    "float": lambda v: type(v) in (int, float),
    "int": lambda v: type(v) is int and _INT64[0] <= v <= _INT64[1],
    "bool": lambda v: type(v) is bool,
    "datetime": lambda v: type(v) is int and _INT64[0] <= v <= _INT64[1],
    "string": lambda v: _is_text(v),
    "string_set": lambda v: isinstance(v, frozenset) and all(_is_text(x) for x in v),
    "artifact": lambda v: isinstance(v, dict),
    "file": lambda v: (
        isinstance(v, dict)
        and _is_text(v.get("path"))
        and type(v.get("size_bytes")) is int
        and _is_text(v.get("mime_type"))
    ),
}
_POINT_TYPES = frozenset({"string_series", "histogram_series", "file_series"})


def _is_text(value: Any) -> bool:
    """A str the store can hold (UTF-8 encodable: no lone surrogates)."""
    if type(value) is not str:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_int(value: Any, bounds: tuple[int, int] = _INT64) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


def _need(ok: bool, what: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{what} is malformed: {value!r:.80}")


def _check(batch: Batch) -> None:
    """Refuse a decoded batch whose items do not have the types :mod:`despina.store.batch`
    documents (the writer trusts them; ``despina.Run`` builds them so)."""
    for op in batch.ops:
        _need(_is_text(op.path), "an operation's path", op.path)
        if isinstance(op, Assign):
            check = _ASSIGNED.get(op.type) if isinstance(op.type, str) else None
            _need(check is not None and check(op.value), f"the {op.type!r} value", op.value)
        else:
            for items in (op.add, op.remove):
                _need(isinstance(items, list), "a string set change", items)
                _need(all(_is_text(x) for x in items), "a string set change", items)
    for p in batch.previews:
        _need(_is_text(p.path) and _is_int(p.step, _STEP_RANGE), "a preview", p.path)
        _need(type(p.value) in (int, float) and type(p.completion) in (int, float), "a preview", p)
        _need(_is_int(p.timestamp), "a preview's timestamp", p.timestamp)
    for q in batch.points:
        _need(_is_text(q.path) and q.type in _POINT_TYPES, "a point", (q.path, q.type))
        _need(_is_int(q.step, _STEP_RANGE) and _is_int(q.timestamp), "a point's step", q.step)
        _need(_is_text(q.value), "a point's value", q.value)
    for blob in batch.blobs:
        _need(len(blob) == 4, "a file reference", blob)
        key, sha, size, mime = blob
        _need(_is_text(key) and _is_text(sha) and _is_int(size) and _is_text(mime), "a file", blob)
    _need(isinstance(batch.first_types, dict), "first_types", batch.first_types)
    for path, type_ in batch.first_types.items():
        _need(_is_text(path) and _is_text(type_), "first_types", path)
    _need(batch.ping_ms is None or _is_int(batch.ping_ms), "ping_ms", batch.ping_ms)


def _slice(cut: dict[tuple[int, int, int], Any], array: Any, start: int, end: int) -> Any:
    key = (id(array), start, end)
    found = cut.get(key)
    if found is None:
        found = cut[key] = np.asarray(array, np.int64)[start:end]
    return found


def split_batch(batch: Batch, limit: int = PART_POINTS) -> list[Batch]:
    """``batch`` as parts of at most ``limit`` metric points each, to apply in order.

    The first part holds everything but the metrics; a series longer than ``limit`` is cut
    into consecutive pieces. Every part keeps ``first_types`` (a path's first type is known to
    each part's writer).
    """
    total = sum(len(c.steps) for c in batch.metrics.values())
    if total <= limit:
        return [batch]
    parts = [
        Batch(
            ops=batch.ops,
            previews=batch.previews,
            points=batch.points,
            blobs=batch.blobs,
            first_types=batch.first_types,
            ping_ms=batch.ping_ms,
        )
    ]
    room = 0
    cut: dict[tuple[int, int, int], Any] = {}  # shared steps stay shared in each part
    for key, column in batch.metrics.items():
        n = len(column.steps)
        at = 0
        while at < n:
            if room == 0:
                parts.append(Batch(first_types=batch.first_types, ping_ms=batch.ping_ms))
                room = limit
            end = min(n, at + room)
            target = parts[-1].metrics
            piece = MetricColumn(
                _slice(cut, column.steps, at, end),
                np.asarray(column.values, np.float64)[at:end],
                _slice(cut, column.timestamps, at, end),
            )
            if key in target:  # cannot happen: a key fills a part before the next key starts
                raise AssertionError(key)
            target[key] = piece
            room -= end - at
            at = end
    if parts[0].is_empty() and len(parts) > 1:
        parts.pop(0)
    return parts


def batch_request(
    project: str, run_id: str, request: str, receipts: dict[str, str], encoded: bytes
) -> bytes:
    """The body of a ``/runs/batch`` request: a u32-framed JSON envelope (the run, the request
    id recorded with the batch, the receipts of the files it references), then the batch."""
    envelope = json.dumps(
        {"project": project, "run_id": run_id, "request": request, "receipts": receipts}
    ).encode()
    return _ENVELOPE.pack(len(envelope)) + envelope + encoded


def split_request(data: bytes) -> tuple[Any, memoryview]:
    """A ``/runs/batch`` body's envelope (decoded JSON) and the encoded batch after it.

    Raises:
        struct.error, ValueError: the body does not start with a framed JSON envelope.
    """
    view = memoryview(data)
    (size,) = _ENVELOPE.unpack_from(view, 0)
    return json.loads(bytes(view[4 : 4 + size])), view[4 + size :]


def issues_of(answer: Any) -> list[IngestIssue]:
    """The issues a write endpoint's JSON answer reports."""
    raw_issues = answer.get("issues") if isinstance(answer, dict) else None
    return [
        IngestIssue(
            str(raw["code"]),
            str(raw["message"]),
            raw.get("path"),
            str(raw.get("severity", "error")),
            int(raw.get("count", 1)),
        )
        for raw in raw_issues or []
    ]
