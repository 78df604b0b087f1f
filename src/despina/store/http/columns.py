"""The column frame: named NumPy columns and a small JSON header in one HTTP body.

A read answer holds arrays of different lengths (containers, series, points), so instead of
one Arrow table it is a frame (docs/remote-api.md, "Column frames")::

    b"DQC1" | u32 header length | header (JSON) | zero padding to 8 | buffers, each 8-aligned

The header is ``{"meta": <any JSON>, "arrays": {name: spec}}``. A spec gives the column's kind
and where its buffers are (``[offset, length]`` from the start of the buffer area):

- ``"n"``: a NumPy array, dtype ``d`` (``<f8``, ``<i8``, ``|b1``, …); an int64 column whose
  values fit a narrower integer is sent narrowed and widened again on arrival (``w``);
- ``"s"``: strings (``None`` allowed) in Arrow's ``large_string`` layout (validity bitmap,
  int64 offsets, UTF-8 data), read back as an object array by pyarrow without a Python loop;
- ``"l"``: lists of strings (``large_list<large_string>``), read back as Python lists;
- ``"j"``: any JSON value per element (file and histogram cells, sort keys), as strings.

Decoding never runs code named by the body: only these four kinds and NumPy numeric dtypes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from despina.errors import InvalidQuery

__all__ = ["COLUMNS_TYPE", "decode", "encode"]

COLUMNS_TYPE = "application/vnd.despina.columns"
"""The content type of a column frame."""

_MAGIC = b"DQC1"
_NUMERIC = frozenset("biuf")
_STRINGS = pa.large_string()
_LISTS = pa.large_list(pa.large_string())


class _Buffers:
    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0

    def add(self, data: Any) -> list[int]:
        view = memoryview(data).cast("B")
        at = self.size
        self.parts.append(view)
        self.size += len(view)
        pad = -self.size % 8
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        return [at, len(view)]


def _narrowed(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """An int64 array as the narrowest integer type that holds its values."""
    if values.dtype != np.int64 or not len(values):
        return values
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values


def _arrow_spec(kind: str, array: pa.Array, out: _Buffers) -> dict[str, Any]:
    spec = {
        "k": kind,
        "n": len(array),
        "b": [None if b is None else out.add(b) for b in array.buffers()],
        "z": array.null_count,
    }
    if kind == "l":
        spec["c"] = len(array.values)
    return spec


def _encode_array(values: Any, out: _Buffers) -> dict[str, Any]:
    if isinstance(values, list):
        values = _objects(values)
    values = np.asarray(values)
    if values.dtype.kind in _NUMERIC:
        narrow = _narrowed(np.ascontiguousarray(values))
        spec: dict[str, Any] = {"k": "n", "d": narrow.dtype.str, "b": out.add(narrow)}
        if narrow.dtype != values.dtype:
            spec["w"] = values.dtype.str
        return spec
    if values.dtype.kind == "U":
        values = values.astype(object)
    try:
        return _arrow_spec("s", pa.array(values, type=_STRINGS), out)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    if all(v is None or isinstance(v, list) for v in values):
        try:
            return _arrow_spec("l", pa.array(values, type=_LISTS), out)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass
    texts = [json.dumps(v, allow_nan=True) for v in values]
    return {**_arrow_spec("s", pa.array(texts, type=_STRINGS), out), "k": "j"}


def _objects(values: list[Any]) -> npt.NDArray[Any]:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def encode(meta: Any, arrays: Mapping[str, Any]) -> bytes:
    """The frame of ``meta`` (JSON-able) and ``arrays`` (NumPy arrays or lists of objects)."""
    out = _Buffers()
    specs = {name: _encode_array(values, out) for name, values in arrays.items()}
    header = json.dumps({"meta": meta, "arrays": specs}, separators=(",", ":")).encode()
    pad = -(8 + len(header)) % 8
    return b"".join([_MAGIC, struct.pack("<I", len(header)), header, b"\0" * pad, *out.parts])


def decode(data: bytes | bytearray) -> tuple[Any, dict[str, npt.NDArray[Any]]]:
    """``(meta, arrays)`` of a frame. Numeric arrays view ``data`` (writable when it is a
    ``bytearray``); strings come back as object arrays.

    Raises:
        InvalidQuery: the body is not a column frame.
    """
    if len(data) < 8 or bytes(data[:4]) != _MAGIC:
        raise InvalidQuery("the answer is not a despina column frame (another server version?)")
    (length,) = struct.unpack_from("<I", data, 4)
    header = json.loads(bytes(data[8 : 8 + length]))
    base = 8 + length + (-(8 + length) % 8)
    view = memoryview(data)[base:]
    arrays = {name: _decode_array(spec, view) for name, spec in header["arrays"].items()}
    return header["meta"], arrays


def _buffer(view: memoryview, where: list[int] | None) -> pa.Buffer | None:
    if where is None:
        return None
    at, size = int(where[0]), int(where[1])
    if at < 0 or size < 0 or at + size > len(view):
        raise InvalidQuery("a column frame names bytes beyond its end")
    return pa.py_buffer(view[at : at + size])


def _decode_array(spec: Mapping[str, Any], view: memoryview) -> npt.NDArray[Any]:
    kind = spec["k"]
    if kind == "n":
        dtype = np.dtype(spec["d"])
        if dtype.kind not in _NUMERIC:
            raise InvalidQuery(f"a column frame has an array of dtype {dtype}")
        at, size = int(spec["b"][0]), int(spec["b"][1])
        if at < 0 or size < 0 or at + size > len(view) or size % dtype.itemsize:
            raise InvalidQuery("a column frame names bytes beyond its end")
        values = np.frombuffer(view, dtype, size // dtype.itemsize, at)
        if "w" in spec:
            return values.astype(np.dtype(spec["w"]))
        return values
    buffers = [_buffer(view, where) for where in spec["b"]]
    count, nulls = int(spec["n"]), int(spec["z"])
    if kind in ("s", "j"):
        strings = pa.Array.from_buffers(_STRINGS, count, buffers, nulls)
        objects = strings.to_numpy(zero_copy_only=False)
        if kind == "j":
            return _objects([None if t is None else json.loads(t) for t in objects])
        return objects
    if kind == "l":
        child = pa.Array.from_buffers(_STRINGS, int(spec["c"]), buffers[2:], 0)
        lists = pa.Array.from_buffers(_LISTS, count, buffers[:2], nulls, children=[child])
        return _objects(lists.to_pylist())
    raise InvalidQuery(f"a column frame has an array of unknown kind {kind!r}")
