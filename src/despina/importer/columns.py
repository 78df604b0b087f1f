"""Zero-copy views of Arrow columns as numpy arrays, for the per-point columns of an export.

Every function takes a (possibly chunked) column of the whole run and returns flat numpy arrays
plus a validity mask, reading the Arrow buffers directly: no Python object is made per row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["decimal_micro", "dictionary_codes", "fixed_width", "validity"]

Bools = npt.NDArray[np.bool_]
Int64s = npt.NDArray[np.int64]


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _validity(chunk: pa.Array) -> Bools:
    n = len(chunk)
    if chunk.null_count == 0:
        return np.ones(n, dtype=np.bool_)
    if chunk.null_count == n:
        return np.zeros(n, dtype=np.bool_)
    bitmap = chunk.buffers()[0]
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[chunk.offset : chunk.offset + n].astype(np.bool_)


def validity(column: pa.ChunkedArray | pa.Array) -> Bools:
    """True where the column holds a value."""
    parts = [_validity(c) for c in _chunks(column)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.bool_)


def fixed_width(column: pa.ChunkedArray | pa.Array, dtype: str) -> tuple[npt.NDArray, Bools]:
    """Values of a fixed-width column (ints, floats, timestamps read as ``"<i8"``) as ``dtype``,
    and the validity mask; slots of nulls hold unspecified values. A one-chunk column gives a
    read-only view of the Arrow buffer."""
    values: list[npt.NDArray] = []
    valid: list[Bools] = []
    for chunk in _chunks(column):
        n = len(chunk)
        data = chunk.buffers()[1] if n else None
        if data is None:
            values.append(np.zeros(n, dtype=dtype))
        else:
            values.append(np.frombuffer(data, dtype=dtype, count=chunk.offset + n)[chunk.offset :])
        valid.append(_validity(chunk))
    if not values:
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.bool_)
    if len(values) == 1:  # a view of the Arrow buffer: no copy
        return values[0], valid[0]
    return np.concatenate(values), np.concatenate(valid)


def decimal_micro(column: pa.ChunkedArray | pa.Array) -> tuple[Int64s, Bools]:
    """Steps of a ``decimal128(18, 6)`` column as exact int64 micro-steps, and validity.

    The unscaled 128-bit integer of a scale-6 decimal *is* the micro-step; with precision 18 it
    fits in its low 64 bits (little-endian), which are read directly.
    """
    values: list[Int64s] = []
    valid: list[Bools] = []
    for chunk in _chunks(column):
        n = len(chunk)
        data = chunk.buffers()[1] if n else None
        if data is None:
            values.append(np.zeros(n, dtype=np.int64))
        else:
            words = np.frombuffer(data, dtype="<i8", count=2 * (chunk.offset + n))
            values.append(words[2 * chunk.offset :: 2].astype(np.int64, copy=False))
        valid.append(_validity(chunk))
    if not values:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_)
    return np.concatenate(values), np.concatenate(valid)


def dictionary_codes(
    column: pa.ChunkedArray | pa.Array, registry: dict[str, int]
) -> npt.NDArray[np.int32]:
    """Codes of a string column in ``registry`` (string → code, extended with new strings);
    ``-1`` for nulls. Works on dictionary-encoded columns without decoding the strings. The
    result may be a read-only view of the Arrow buffer."""
    out: list[npt.NDArray[np.int32]] = []
    for chunk in _chunks(column):
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        words = chunk.dictionary.to_pylist()
        mapping = np.array(
            [-1 if w is None else registry.setdefault(w, len(registry)) for w in words] or [-1],
            dtype=np.int32,
        )
        index_type = np.dtype(chunk.indices.type.to_pandas_dtype())
        indices, valid = fixed_width(chunk.indices, index_type.str)
        if chunk.null_count:
            codes = mapping[np.where(valid, indices, 0)]
            codes[~valid] = -1
        elif np.array_equal(mapping, np.arange(len(mapping))):
            codes = indices.astype(np.int32, copy=False)  # often a read-only view
        else:
            codes = mapping[indices]
        out.append(codes)
    if len(out) == 1:
        return out[0]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int32)
