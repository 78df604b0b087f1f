"""Protobuf encoding of retrieval answers.

Float-series answers can hold a million points; building a million Python message objects takes
seconds, so :func:`float_series_response` writes the protobuf wire format directly with numpy
(one vectorised pass per series). The layout is exactly what ``protoc`` messages produce for
``ProtoFloatSeriesValuesResponseDTO`` (see the field numbers below); a test decodes it with the
generated classes. Everything else uses the generated message classes.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from neptune_api.proto.neptune_pb.api.v1.model.leaderboard_entries_pb2 import (
    ProtoAttributeDTO,
    ProtoBoolAttributeDTO,
    ProtoDatetimeAttributeDTO,
    ProtoFileRefAttributeDTO,
    ProtoFileRefSeriesAttributeDTO,
    ProtoFloatAttributeDTO,
    ProtoFloatSeriesAttributeDTO,
    ProtoHistogramSeriesAttributeDTO,
    ProtoIntAttributeDTO,
    ProtoStringAttributeDTO,
    ProtoStringSeriesAttributeDTO,
    ProtoStringSetAttributeDTO,
)
from neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    ProtoFileRef,
    ProtoHistogram,
)

from despina.query.float_batch import FlatSeries, FloatSeries
from despina.query.values import AttrValue

__all__ = [
    "WIRE_TYPES",
    "attribute_dto",
    "buckets_response",
    "file_ref_message",
    "float_series_flat_response",
    "float_series_response",
    "histogram_message",
    "varint",
]

MICRO = 1_000_000

WIRE_TYPES: dict[str, str] = {
    "float": "float",
    "int": "int",
    "bool": "bool",
    "string": "string",
    "datetime": "datetime",
    "string_set": "stringSet",
    "file": "fileRef",
    "float_series": "floatSeries",
    "string_series": "stringSeries",
    "histogram_series": "histogramSeries",
    "file_series": "fileRefSeries",
}
"""Store type name → wire type name."""


def _varint_slow(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_SMALL_VARINTS = [_varint_slow(v) for v in range(1 << 14)]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negatives as 64-bit two's complement)."""
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    return _varint_slow(value)


def _point_dtype(ts_bytes: int) -> np.dtype[np.void]:
    """One length-prefixed ``ProtoFloatPointValueDTO`` with a ``ts_bytes``-long timestamp."""
    return np.dtype(
        [
            ("head", "u1", 3),  # 0x12 (values, field 2), length, 0x08 (timestamp_millis)
            ("ts", "u1", ts_bytes),
            ("step_tag", "u1"),  # 0x11
            ("step", "<f8"),
            ("value_tag", "u1"),  # 0x19
            ("value", "<f8"),
            ("preview_tag", "u1"),  # 0x20
            ("preview", "u1"),
            ("ratio_tag", "u1"),  # 0x2D
            ("ratio", "<f4"),
        ]
    )


def _varint_bytes(values: npt.NDArray[np.uint64], width: int) -> npt.NDArray[np.uint8]:
    """Base-128 bytes of values that all take exactly ``width`` bytes, as an (n, width) array."""
    out = np.empty((len(values), width), np.uint8)
    for k in range(width):
        low = (values >> np.uint64(7 * k)).astype(np.uint8)  # the low 8 bits
        if k < width - 1:
            low |= 0x80
        else:
            low &= 0x7F
        out[:, k] = low
    return out


def _varint_width(value: int) -> int:
    """Bytes of the base-128 varint of a non-negative int."""
    return max(1, (value.bit_length() + 6) // 7)


def _shared_width(ts: npt.NDArray[np.uint64]) -> int | None:
    """The varint width every timestamp takes, None when they differ (width grows with the
    value, so the smallest and the largest decide)."""
    if not len(ts):
        return 1
    low, high = _varint_width(int(ts.min())), _varint_width(int(ts.max()))
    return low if low == high else None


_TEMPLATES: dict[int, npt.NDArray[np.uint8]] = {}


def _template(width: int) -> npt.NDArray[np.uint8]:
    """The bytes of one point record with every tag set, ``is_preview`` 0 and
    ``completion_ratio`` 1.0: the parts that do not depend on the point."""
    template = _TEMPLATES.get(width)
    if template is None:
        record = np.zeros(1, _point_dtype(width))
        record["head"] = (0x12, 26 + width, 0x08)
        record["step_tag"] = 0x11
        record["value_tag"] = 0x19
        record["preview_tag"] = 0x20
        record["ratio_tag"] = 0x2D
        record["ratio"] = 1.0
        template = _TEMPLATES[width] = np.frombuffer(record.tobytes(), np.uint8)
    return template


def _fill_points(
    out: npt.NDArray[np.uint8], series: FloatSeries, ts: npt.NDArray[np.uint64], width: int
) -> None:
    """Write the point records of ``series`` (timestamps ``ts``, all ``width`` bytes long)
    into ``out``, exactly ``len(series) * (28 + width)`` bytes."""
    n = len(ts)
    if not n:
        return
    out.reshape(n, 28 + width)[:] = _template(width)
    rows = out.view(_point_dtype(width))
    rows["ts"] = _varint_bytes(ts, width)
    np.divide(series.steps, MICRO, out=rows["step"])
    rows["value"] = series.values
    if series.preview is not None:
        rows["preview"] = series.preview
    if series.completion is not None:
        rows["ratio"] = series.completion


def _points_block(series: FloatSeries, ts: npt.NDArray[np.uint64], width: int) -> bytes:
    out = np.empty(len(ts) * (28 + width), np.uint8)
    _fill_points(out, series, ts, width)
    return out.tobytes()


def _points_bytes(series: FloatSeries) -> bytes:
    """The repeated ``values`` field (number 2) of ``ProtoFloatSeriesValuesDTO``.

    Each element is ``ProtoFloatPointValueDTO{timestamp_millis=1 (varint), step=2 (double),
    value=3 (double), is_preview=4 (varint), completion_ratio=5 (float)}``.
    """
    n = len(series)
    if n == 0:
        return b""
    ts = series.timestamps.astype(np.int64, copy=False).view(np.uint64)
    width = _shared_width(ts)
    if width is not None:
        return _points_block(series, ts, width)
    # rare: timestamps of different varint widths; encode runs of equal width in order
    widths = np.ones(n, np.int64)
    for k in range(1, 10):
        widths += ts >= np.uint64(1 << (7 * k))
    cuts = np.flatnonzero(widths[1:] != widths[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    return b"".join(
        _points_block(series.take(slice(a, b)), ts[a:b], int(widths[a]))
        for a, b in itertools.pairwise(bounds)
    )


DIRECT_SERIES = 64
"""Answers with at most this many series are written in place into one buffer (no further copy
of the points); more series are joined from per-series pieces."""


def float_series_flat_response(request_ids: Sequence[str], flat: FlatSeries) -> bytes | memoryview:
    """A serialized ``ProtoFloatSeriesValuesResponseDTO`` of series ``i`` = ``request_ids[i]``
    of ``flat`` (missing series left out), encoding all points in one pass.

    A few series (a long one) come back as a memoryview of a buffer written in place, since
    a copy of a million points costs more than encoding them; otherwise bytes.
    """
    total = len(flat.steps)
    ts = flat.timestamps.astype(np.int64, copy=False).view(np.uint64)
    width = _shared_width(ts)
    if width is None:
        return float_series_response(
            [(rid, flat.series(i) if flat.exists[i] else None) for i, rid in enumerate(request_ids)]
        )
    record = 28 + width
    exists = flat.exists.tolist()
    present = [i for i in range(len(request_ids)) if exists[i]]
    if len(present) <= DIRECT_SERIES:
        return _direct_response(request_ids, flat, ts, width, present)
    whole = FloatSeries(flat.steps, flat.values, flat.timestamps, flat.preview, flat.completion)
    points = memoryview(_points_block(whole, ts, width)) if total else memoryview(b"")
    uniform_rows = _uniform_series(request_ids, flat, points, record)
    if uniform_rows is not None:
        return uniform_rows
    out: list[bytes | memoryview] = []
    starts = flat.starts.tolist()
    counts = flat.counts.tolist()
    for i in present:
        count = counts[i]
        size = count * record
        out.append(_series_head(request_ids[i], count, size))
        if count:
            start = starts[i] * record
            out.append(points[start : start + size])
    return b"".join(out)


def _series_head(request_id: str, count: int, size: int) -> bytes:
    """What precedes the ``size`` bytes of the ``count`` points of one series: the length-
    prefixed ``ProtoFloatSeriesValuesSingleSeriesResponseDTO{requestId=1, series=2}`` and, in
    ``series``, ``total_item_count=1``."""
    count_bytes = varint(count)
    rid = request_id.encode()
    head = (
        b"\x0a"
        + varint(len(rid))
        + rid
        + b"\x12"
        + varint(1 + len(count_bytes) + size)
        + b"\x08"
        + count_bytes
    )
    return b"\x0a" + varint(len(head) + size) + head


def _direct_response(
    request_ids: Sequence[str],
    flat: FlatSeries,
    ts: npt.NDArray[np.uint64],
    width: int,
    present: list[int],
) -> memoryview:
    """The answer for the ``present`` series, written into one buffer."""
    record = 28 + width
    starts = flat.starts.tolist()
    counts = flat.counts.tolist()
    heads = [_series_head(request_ids[i], counts[i], counts[i] * record) for i in present]
    size = sum(len(head) for head in heads) + sum(counts[i] for i in present) * record
    out = np.empty(size, np.uint8)
    at = 0
    for i, head in zip(present, heads, strict=True):
        out[at : at + len(head)] = np.frombuffer(head, np.uint8)
        at += len(head)
        n = counts[i]
        if n:
            a = starts[i]
            _fill_points(out[at : at + n * record], flat.series(i), ts[a : a + n], width)
            at += n * record
    return out.data


def _uniform_series(
    request_ids: Sequence[str], flat: FlatSeries, points: memoryview, record: int
) -> bytes | None:
    """All series at once when they share one shape: every series present, with the same
    number of points and request ids of one length (thousands of one-step series)."""
    n = len(request_ids)
    if n < 64 or not bool(flat.exists.all()):
        return None
    count = int(flat.counts[0])
    if not bool((flat.counts == count).all()):
        return None
    encoded = [rid.encode() for rid in request_ids]
    width = len(encoded[0])
    if any(len(rid) != width for rid in encoded):
        return None
    size = count * record
    count_bytes = varint(count)
    before_rid = b"\x0a" + varint(width)
    after_rid = b"\x12" + varint(1 + len(count_bytes) + size) + b"\x08" + count_bytes
    head_len = len(before_rid) + width + len(after_rid)
    outer = b"\x0a" + varint(head_len + size)
    prefix = outer + before_rid
    row = len(prefix) + width + len(after_rid) + size
    rows = np.empty((n, row), np.uint8)
    rows[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
    at = len(prefix)
    rows[:, at : at + width] = np.frombuffer(b"".join(encoded), np.uint8).reshape(n, width)
    at += width
    rows[:, at : at + len(after_rid)] = np.frombuffer(after_rid, np.uint8)
    at += len(after_rid)
    if size:
        rows[:, at:] = np.frombuffer(points, np.uint8).reshape(n, size)
    return rows.tobytes()


def float_series_response(entries: Sequence[tuple[str, FloatSeries | None]]) -> bytes:
    """A serialized ``ProtoFloatSeriesValuesResponseDTO``; None series are left out."""
    out: list[bytes] = []
    for request_id, series in entries:
        if series is None:
            continue
        points = _points_bytes(series)
        count = varint(len(series))
        dto_len = 1 + len(count) + len(points)
        rid = request_id.encode()
        head = b"\x0a" + varint(len(rid)) + rid + b"\x12" + varint(dto_len) + b"\x08" + count
        single_len = len(head) + len(points)
        out.append(b"\x0a" + varint(single_len) + head)
        out.append(points)
    return b"".join(out)


def buckets_response(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """A serialized ``ProtoTimeseriesBucketsDTO`` of ``(requestId, buckets)`` entries, where
    ``buckets`` is a serialized ``TimeseriesBuckets`` holding only its ``bucket`` field.

    The same as building the message, byte for byte; a series named by many expressions is
    serialized once and its bytes repeated.
    """
    out: list[bytes] = []
    for request_id, buckets in entries:
        rid = request_id.encode()
        head = b"\x0a" + varint(len(rid)) + rid if rid else b""
        out.append(b"\x0a" + varint(len(head) + len(buckets)))
        out.append(head)
        out.append(buckets)
    return b"".join(out)


def _nan(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def histogram_message(text: str) -> ProtoHistogram:
    data = json.loads(text)
    return ProtoHistogram(
        type=str(data.get("type", "COUNTING")),
        edges=[float(e) for e in data.get("edges", [])],
        values=[float(v) for v in data.get("values", [])],
    )


def file_ref_message(text: str) -> ProtoFileRef:
    data = json.loads(text)
    return ProtoFileRef(
        path=str(data.get("path", "")),
        sizeBytes=int(data.get("size_bytes", 0)),
        mimeType=str(data.get("mime_type", "")),
    )


def attribute_dto(attr: AttrValue) -> ProtoAttributeDTO:
    """``ProtoAttributeDTO`` with exactly one ``*_properties`` set."""
    wire = WIRE_TYPES[attr.type]
    common = {"attribute_name": attr.path, "attribute_type": wire}
    dto = ProtoAttributeDTO(name=attr.path, type=wire)
    t = attr.type
    if t == "string":
        dto.string_properties.CopyFrom(ProtoStringAttributeDTO(value=attr.text or "", **common))
    elif t == "float":
        dto.float_properties.CopyFrom(ProtoFloatAttributeDTO(value=_nan(attr.num), **common))
    elif t == "int":
        dto.int_properties.CopyFrom(ProtoIntAttributeDTO(value=int(attr.num or 0), **common))  # type: ignore[call-overload]
    elif t == "bool":
        dto.bool_properties.CopyFrom(ProtoBoolAttributeDTO(value=bool(attr.num), **common))
    elif t == "datetime":
        dto.datetime_properties.CopyFrom(
            ProtoDatetimeAttributeDTO(value=int(attr.num or 0), **common)  # type: ignore[call-overload]
        )
    elif t == "string_set":
        values = json.loads(attr.text) if attr.text else []
        dto.string_set_properties.CopyFrom(ProtoStringSetAttributeDTO(value=values, **common))
    elif t == "file":
        ref = json.loads(attr.text) if attr.text else {}
        dto.file_ref_properties.CopyFrom(
            ProtoFileRefAttributeDTO(
                path=str(ref.get("path", "")),
                sizeBytes=int(ref.get("size_bytes", 0)),
                mimeType=str(ref.get("mime_type", "")),
                **common,
            )
        )
    elif t == "float_series":
        props = ProtoFloatSeriesAttributeDTO(has_preview=attr.has_preview, **common)
        if attr.last_step is not None:
            props.last_step = attr.last_step / MICRO
        props.last = _nan(attr.num)
        if attr.fcount:
            mean = float(attr.fsum or 0.0) / attr.fcount
            props.min = _nan(attr.fmin)
            props.max = _nan(attr.fmax)
            props.average = mean
            props.variance = max(0.0, float(attr.fsumsq or 0.0) / attr.fcount - mean * mean)
        else:
            props.min = props.max = props.average = props.variance = math.nan
        dto.float_series_properties.CopyFrom(props)
    elif t == "string_series":
        props_s = ProtoStringSeriesAttributeDTO(**common)
        if attr.last_step is not None:
            props_s.last_step = attr.last_step / MICRO
        if attr.text is not None:
            props_s.last = attr.text
        dto.string_series_properties.CopyFrom(props_s)
    elif t == "histogram_series":
        props_h = ProtoHistogramSeriesAttributeDTO(**common)
        if attr.last_step is not None:
            props_h.last_step = attr.last_step / MICRO
        if attr.text:
            props_h.last.CopyFrom(histogram_message(attr.text))
        dto.histogram_series_properties.CopyFrom(props_h)
    elif t == "file_series":
        props_f = ProtoFileRefSeriesAttributeDTO(**common)
        if attr.last_step is not None:
            props_f.last_step = attr.last_step / MICRO
        if attr.text:
            props_f.last.CopyFrom(file_ref_message(attr.text))
        dto.file_ref_series_properties.CopyFrom(props_f)
    return dto
