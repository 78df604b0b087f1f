"""A :class:`~despina.store.batch.Batch` as bytes: what the local queue keeps and the native
write endpoint takes (docs/remote-logging.md).

Layout: ``DSB1``, a little-endian u32 header length, the header (UTF-8 JSON), then the metric
points as raw little-endian buffers: every series' steps (int64), then every series' values
(float64), then every series' timestamps (int64), series in the header's ``metrics.keys`` order
with ``metrics.counts`` points each. Metric columns cost one ``tobytes`` and one
``frombuffer`` per buffer, whatever the number of series.

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
from despina.store.batch import Assign, Batch, MetricColumn, ModifySet, PointAppend, PreviewPoint

__all__ = ["BATCH_MAGIC", "decode_batch", "encode_batch", "split_batch"]

BATCH_MAGIC = b"DSB1"
_HEAD = struct.Struct("<4sI")

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
    header: dict[str, Any] = {
        "ops": ops,
        "metrics": {"keys": keys, "counts": counts},
        "previews": [[p.path, p.step, p.value, p.timestamp, p.completion] for p in batch.previews],
        "points": [[p.path, p.type, p.step, p.timestamp, p.value] for p in batch.points],
        "blobs": [list(b) for b in batch.blobs],
        "first_types": batch.first_types,
        "ping_ms": batch.ping_ms,
    }
    text = json.dumps(header, separators=(",", ":")).encode("utf-8", "surrogatepass")
    parts = [_HEAD.pack(BATCH_MAGIC, len(text)), text]
    if columns:
        for dtype, field in ((np.int64, "steps"), (np.float64, "values"), (np.int64, "timestamps")):
            arrays = [np.asarray(getattr(c, field), dtype=dtype) for c in columns]
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
                Assign(op[1], op[2], _value_in(op[3])) if op[0] == "a" else ModifySet(*op[1:])
                for op in header["ops"]
            ],
            previews=[PreviewPoint(*p) for p in header["previews"]],
            points=[PointAppend(*p) for p in header["points"]],
            blobs=[tuple(b) for b in header["blobs"]],
            first_types=dict(header["first_types"]),
            ping_ms=header["ping_ms"],
        )
        keys: list[str] = header["metrics"]["keys"]
        counts: list[int] = header["metrics"]["counts"]
        total = sum(counts)
        if keys:
            steps = np.frombuffer(view, "<i8", total, offset)
            values = np.frombuffer(view, "<f8", total, offset + 8 * total)
            stamps = np.frombuffer(view, "<i8", total, offset + 16 * total)
            at = 0
            for key, n in zip(keys, counts, strict=True):
                batch.metrics[key] = MetricColumn(
                    steps[at : at + n], values[at : at + n], stamps[at : at + n]
                )
                at += n
        elif len(view) != offset:
            raise ValueError("trailing bytes after the header")
    except (ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise ConfigError(f"not a despina batch ({exc}); send one made by encode_batch") from None
    return batch


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
                np.asarray(column.steps, np.int64)[at:end],
                np.asarray(column.values, np.float64)[at:end],
                np.asarray(column.timestamps, np.int64)[at:end],
            )
            if key in target:  # cannot happen: a key fills a part before the next key starts
                raise AssertionError(key)
            target[key] = piece
            room -= end - at
            at = end
    if parts[0].is_empty() and len(parts) > 1:
        parts.pop(0)
    return parts
