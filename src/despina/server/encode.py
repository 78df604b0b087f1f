"""Protobuf encoding of retrieval answers.

Float-series answers can hold a million points; building a million Python message objects takes
seconds, so :func:`float_series_response` writes the protobuf wire format directly with numpy
(one vectorised pass per series). The layout is exactly what ``protoc`` messages produce for
``ProtoFloatSeriesValuesResponseDTO`` (see the field numbers below); a test decodes it with the
generated classes. Everything else uses the generated message classes.
"""

from __future__ import annotations

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

from despina.server.readers import AttrValue, FloatSeries

__all__ = [
    "WIRE_TYPES",
    "attribute_dto",
    "file_ref_message",
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


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negatives as 64-bit two's complement)."""
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


def _field_bytes(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def _points_bytes(series: FloatSeries) -> bytes:
    """The repeated ``values`` field (number 2) of ``ProtoFloatSeriesValuesDTO``.

    Each element is ``ProtoFloatPointValueDTO{timestamp_millis=1 (varint), step=2 (double),
    value=3 (double), is_preview=4 (varint), completion_ratio=5 (float)}``.
    """
    n = len(series)
    if n == 0:
        return b""
    ts = series.timestamps.astype(np.int64, copy=False).view(np.uint64)
    lengths = np.ones(n, np.int64)
    for k in range(1, 10):
        lengths += ts >= np.uint64(1 << (7 * k))
    widest = int(lengths.max())
    # row layout: 0x12 len 0x08 ts[widest] 0x11 step(8) 0x19 value(8) 0x20 preview 0x2D ratio(4)
    width = 3 + widest + 9 + 9 + 2 + 5
    rows = np.zeros((n, width), np.uint8)
    rows[:, 0] = 0x12
    rows[:, 1] = (26 + lengths).astype(np.uint8)  # point message length (< 128)
    rows[:, 2] = 0x08
    for k in range(widest):
        byte = ((ts >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        more = lengths > k + 1
        rows[:, 3 + k] = byte | (more.astype(np.uint8) << 7)
    at = 3 + widest
    rows[:, at] = 0x11
    steps = series.steps.astype(np.float64) / MICRO
    rows[:, at + 1 : at + 9] = steps.astype("<f8").view(np.uint8).reshape(n, 8)
    rows[:, at + 9] = 0x19
    rows[:, at + 10 : at + 18] = series.values.astype("<f8").view(np.uint8).reshape(n, 8)
    rows[:, at + 18] = 0x20
    if series.preview is not None:
        rows[:, at + 19] = series.preview.astype(np.uint8)
    rows[:, at + 20] = 0x2D
    ratio: npt.NDArray[np.float32] = (
        np.ones(n, "<f4") if series.completion is None else series.completion.astype("<f4")
    )
    rows[:, at + 21 : at + 25] = ratio.view(np.uint8).reshape(n, 4)
    if widest == int(lengths.min()):
        return rows.tobytes()
    keep = np.ones((n, width), np.bool_)
    for k in range(widest):
        keep[:, 3 + k] = lengths > k
    return rows[keep].tobytes()


def float_series_response(entries: Sequence[tuple[str, FloatSeries | None]]) -> bytes:
    """A serialized ``ProtoFloatSeriesValuesResponseDTO``; None series are left out."""
    out: list[bytes] = []
    for request_id, series in entries:
        if series is None:
            continue
        dto = varint(0x08) + varint(len(series)) + _points_bytes(series)
        single = _field_bytes(1, request_id.encode()) + _field_bytes(2, dto)
        out.append(_field_bytes(1, single))
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
