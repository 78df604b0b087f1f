"""A vectorised reader for the common shape of ``update_batch``: snapshots of float appends only.

Training loops log the same metric names at every step, so neptune-scale sends runs of
snapshots whose ``append`` maps have the same keys in the same serialized order and differ only
in the 8 bytes of each value. Reading such a snapshot through the protobuf classes costs about a
microsecond per point; here every snapshot of one layout is read at once: the bytes are laid out
as a matrix (one row per snapshot), compared with a template outside the value bytes, and the
values are viewed as float64 columns.

Only snapshots made of ``step`` (1), ``timestamp`` (2) and float64 ``append`` (8) entries take this
path; everything else (configs, tags, previews, other value kinds) is left to the protobuf
decoder, in order. The body must already have parsed as a ``RunOperation``, so it is well formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_TEMPLATES",
    "FloatBlock",
    "SnapshotSpans",
    "float_blocks",
    "snapshot_spans",
]

MICRO = 1_000_000
MAX_STEP_MICRO = 10**18
MAX_WHOLE_STEP = 10**12


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _skip(data: bytes, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _varint(data, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = _varint(data, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise ValueError(f"unsupported wire type {wire_type}")


@dataclass(slots=True)
class SnapshotSpans:
    """Where the snapshots lie in the body (one entry per snapshot, as arrays).

    ``fast`` marks float-only candidates: a step (``-1`` when absent), a timestamp (``has_ts``)
    and then only ``append`` entries up to ``ends``, starting at ``append_start``.
    """

    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    fast: npt.NDArray[np.bool_]
    steps: npt.NDArray[np.int64]
    ts_ms: npt.NDArray[np.int64]
    has_ts: npt.NDArray[np.bool_]
    append_start: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.starts)


def _varints_at(
    data: npt.NDArray[np.uint8], at: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Varints starting at positions ``at``: values, byte lengths, and which are well formed."""
    last = len(data) - 1
    window = data[np.minimum(at[:, None] + np.arange(10), last)]
    done = window < 0x80
    ok = done.any(axis=1)
    length = np.argmax(done, axis=1) + 1
    value = np.zeros(len(at), dtype=np.uint64)
    for k in range(10):
        use = length > k
        value |= np.where(use, (window[:, k] & 0x7F).astype(np.uint64) << np.uint64(7 * k), 0)
    return value, length.astype(np.int64), ok


def _two_fields(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """Fields 1 and 2 (varints, in that order, each optional) of small messages at
    ``[starts, ends)``: both values and which messages had exactly that shape."""
    n = len(starts)
    first = np.zeros(n, dtype=np.uint64)
    second = np.zeros(n, dtype=np.uint64)
    pos = starts.copy()
    ok = np.ones(n, dtype=np.bool_)
    last = max(len(data) - 1, 0)
    for tag, target in ((0x08, first), (0x10, second)):
        active = (pos < ends) & (data[np.minimum(pos, last)] == tag)
        if active.any():
            value, length, good = _varints_at(data, pos[active] + 1)
            target[active] = value
            ok[active] &= good
            pos[active] += 1 + length
    ok &= pos == ends
    return first, second, ok


def _optional_field(
    data: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], tag: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A length-delimited field with a one-byte tag and length (< 128) at ``at``, if present:
    (present, content start, content end)."""
    last = len(data) - 1
    inside = at + 1 < ends
    present = inside & (data[np.minimum(at, last)] == tag) & (data[np.minimum(at + 1, last)] < 0x80)
    content = at + 2
    stop = content + data[np.minimum(at + 1, last)].astype(np.int64)
    return present, np.where(present, content, at), np.where(present, stop, at)


def snapshot_spans(body: bytes) -> SnapshotSpans | None:
    """The snapshots of a ``RunOperation`` with one ``update_batch``; None for other shapes."""
    pos = 0
    batch: tuple[int, int] | None = None
    end = len(body)
    while pos < end:
        key, pos = _varint(body, pos)
        field, wire_type = key >> 3, key & 7
        if field == 8 and wire_type == 2:
            if batch is not None:
                return None  # repeated field: protobuf merges them; leave it to protobuf
            length, pos = _varint(body, pos)
            batch = (pos, pos + length)
            pos += length
        else:
            pos = _skip(body, pos, wire_type)
    if batch is None:
        return None
    starts: list[int] = []
    ends: list[int] = []
    pos, batch_end = batch
    while pos < batch_end:
        if body[pos] != 0x0A:
            return None  # an unknown field of UpdateRunSnapshots
        length = body[pos + 1]
        if length < 0x80:
            start = pos + 2
        else:
            length, start = _varint(body, pos + 1)
        starts.append(start)
        pos = start + length
        ends.append(pos)
    data = np.frombuffer(body, dtype=np.uint8)
    start_arr = np.asarray(starts, dtype=np.int64)
    end_arr = np.asarray(ends, dtype=np.int64)
    has_step, step_at, step_end = _optional_field(data, start_arr, end_arr, 0x0A)
    has_ts, ts_at, ts_end = _optional_field(data, step_end, end_arr, 0x12)
    append_at = ts_end
    last = max(len(data) - 1, 0)
    has_append = (append_at < end_arr) & (data[np.minimum(append_at, last)] == 0x42)
    whole, micro, step_ok = _two_fields(data, step_at, step_end)
    seconds, nanos, ts_ok = _two_fields(data, ts_at, ts_end)
    big = whole >= np.uint64(MAX_WHOLE_STEP)
    micro_steps = np.minimum(
        np.where(big, 0, whole).astype(np.int64) * MICRO + micro.astype(np.int64),
        MAX_STEP_MICRO,
    )
    micro_steps = np.where(big, MAX_STEP_MICRO, micro_steps)
    micro_steps = np.where(has_step, micro_steps, -1)
    millis = seconds.view(np.int64) * 1000 + nanos.view(np.int64) // 1_000_000
    return SnapshotSpans(
        starts=start_arr,
        ends=end_arr,
        fast=has_append & step_ok & ts_ok,
        steps=micro_steps.astype(np.int64),
        ts_ms=millis.astype(np.int64),
        has_ts=has_ts,
        append_start=append_at,
    )


@dataclass(slots=True)
class FloatBlock:
    """Snapshots (by index) that share one layout: their keys and a (snapshots × keys) matrix."""

    rows: npt.NDArray[np.int64]
    keys: list[str]
    values: npt.NDArray[np.float64]


def _template(body: bytes, start: int, end: int) -> tuple[list[str], list[int]] | None:
    """Keys and value offsets (relative to ``start``) if every entry is a float64 append."""
    keys: list[str] = []
    offsets: list[int] = []
    pos = start
    while pos < end:
        key, pos = _varint(body, pos)
        if key != 0x42:
            return None
        length, entry = _varint(body, pos)
        entry_end = entry + length
        pos = entry
        name: str | None = None
        value_at = -1
        while pos < entry_end:
            tag, pos = _varint(body, pos)
            size, inner = _varint(body, pos)
            if tag == 0x0A:
                try:
                    name = body[inner : inner + size].decode()
                except UnicodeDecodeError:
                    return None
            elif tag == 0x12 and size == 9 and body[inner] == 0x09:
                value_at = inner + 1
            else:
                return None
            pos = inner + size
        if name is None or value_at < 0 or pos != entry_end:
            return None
        keys.append(name)
        offsets.append(value_at - start)
    if len(set(keys)) != len(keys):
        return None
    return keys, offsets


MAX_TEMPLATES = 64
"""Layouts tried per body. Each try compares the template with every pending snapshot of its
length, so an unbounded number of layouts (every snapshot naming distinct metrics) would make
the reader quadratic; past this many, the remaining snapshots go to the protobuf decoder,
which is linear. Training loops use a handful of layouts per body."""

_COMPARE_BYTES = 1 << 22
"""Snapshot bytes compared per NumPy pass (bounds the index matrices to tens of MiB)."""


def _rows_matching(
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    length: int,
    fixed: npt.NDArray[np.bool_],
    template: npt.NDArray[np.uint8],
    value_cols: npt.NDArray[np.int64],
    keys: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Which snapshots at ``starts`` equal ``template`` outside the value bytes, and the
    values of those that do (one row per match), compared a slice of rows at a time."""
    step = max(1, _COMPARE_BYTES // max(length, 1))
    same = np.empty(len(starts), dtype=np.bool_)
    parts: list[npt.NDArray[np.float64]] = []
    columns = np.arange(length, dtype=np.int64)
    fixed_cols = columns[fixed]
    for a in range(0, len(starts), step):
        part = starts[a : a + step]
        hit = (data[part[:, None] + fixed_cols] == template).all(axis=1)
        same[a : a + step] = hit
        if hit.any():
            raw = np.ascontiguousarray(data[part[hit][:, None] + value_cols])
            parts.append(raw.view("<f8").reshape(-1, keys).astype(np.float64, copy=False))
    values = np.concatenate(parts) if parts else np.empty((0, keys), np.float64)
    return same, values


def float_blocks(
    body: bytes, spans: SnapshotSpans, indexes: npt.NDArray[np.int64]
) -> tuple[list[FloatBlock], list[int]]:
    """Read the fast snapshots ``indexes`` as blocks; returns the blocks and the indexes that
    did not fit a template (to be decoded by protobuf), in ascending order.

    Linear in the body: at most :data:`MAX_TEMPLATES` layouts are tried, the most common
    snapshot lengths first.
    """
    data = np.frombuffer(body, dtype=np.uint8)
    lengths = spans.ends[indexes] - spans.append_start[indexes]
    blocks: list[FloatBlock] = []
    leftover: list[npt.NDArray[np.int64]] = []
    unique, sizes = np.unique(lengths, return_counts=True)
    tries = 0
    for length in unique[np.argsort(-sizes, kind="stable")].tolist():
        pending = indexes[lengths == length]
        while len(pending):
            if tries >= MAX_TEMPLATES:
                leftover.append(pending)
                break
            tries += 1
            first = int(pending[0])
            a_start = int(spans.append_start[first])
            found = _template(body, a_start, int(spans.ends[first]))
            if found is None:
                leftover.append(pending[:1])
                pending = pending[1:]
                continue
            keys, offsets = found
            value_cols = (np.asarray(offsets, np.int64)[:, None] + np.arange(8)).ravel()
            fixed = np.ones(length, dtype=np.bool_)
            fixed[value_cols] = False
            template = data[a_start : a_start + length][fixed]
            same, values = _rows_matching(
                data,
                spans.append_start[pending],
                length,
                fixed,
                template,
                value_cols,
                len(keys),
            )
            blocks.append(FloatBlock(pending[same].astype(np.int64), keys, values))
            pending = pending[~same]
    rest = np.sort(np.concatenate(leftover)) if leftover else np.empty(0, np.int64)
    return blocks, rest.tolist()
