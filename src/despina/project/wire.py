"""A :class:`~despina.project.tables.Table` on the wire: one Arrow IPC stream, one column per
path, so a remote table is rebuilt with the same cells (types included) as the server's.

Each column carries its kind in the field metadata: a column of one Python type moves as the
matching Arrow type (``float`` as float64 keeping NaN apart from a missing value, ``int`` as
int64, ``bool``, ``str``, ``Timestamp`` as epoch milliseconds, JSON values as their text); a column
mixing types moves as tagged JSON text. A missing value is an Arrow null.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import pyarrow as pa

from despina.project.tables import Table

__all__ = ["ARROW_STREAM", "decode_table", "encode_table"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"

_KIND = b"despina.kind"
_ROWS = b"despina.rows"
_MS = 1_000_000  # nanoseconds per millisecond


def encode_table(table: Table) -> bytes:
    """The Arrow IPC stream of ``table``."""
    length = len(table)
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for name in table.columns:
        kind, array = _encode_column(table.column(name), length)
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata={_KIND: kind.encode()}))
    schema = pa.schema(fields, metadata={_ROWS: str(length).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if arrays:
            writer.write_batch(pa.record_batch(arrays, schema=schema))
    return bytes(sink.getvalue().to_pybytes())


def decode_table(data: bytes) -> Table:
    """The table an :func:`encode_table` stream holds."""
    reader = pa.ipc.open_stream(pa.py_buffer(data))
    schema = reader.schema
    arrow = reader.read_all()
    length = int((schema.metadata or {}).get(_ROWS, b"0"))
    columns = list(schema.names)
    cells: dict[str, list[Any]] = {}
    for index, name in enumerate(columns):
        kind = (schema.field(index).metadata or {}).get(_KIND, b"empty").decode()
        if kind != "empty":
            cells[name] = _decode_column(kind, arrow.column(index))
    return Table.of_columns(cells, columns, length)


def _encode_column(values: list[Any], length: int) -> tuple[str, pa.Array]:
    types = set(map(type, values))
    types.discard(type(None))
    if not types:
        return "empty", pa.nulls(length)
    if len(types) == 1:
        (found,) = types
        try:
            if found is float:
                return "float", pa.array(values, type=pa.float64())
            if found is int:
                return "int", pa.array(values, type=pa.int64())
            if found is bool:
                return "bool", pa.array(values, type=pa.bool_())
            if found is str:
                return "str", pa.array(values, type=pa.large_string())
            if _is_timestamp(found) and all(v is None or _plain_ms(v) for v in values):
                return "datetime", pa.array(
                    [None if v is None else v.value // _MS for v in values], type=pa.int64()
                )
            if found is dict or found is list:
                return "json", pa.array(
                    [None if v is None else json.dumps(v) for v in values],
                    type=pa.large_string(),
                )
        except (pa.ArrowInvalid, OverflowError):  # e.g. an int beyond 64 bits
            pass
    return "tagged", pa.array(
        [None if v is None else json.dumps(_tagged(v)) for v in values], type=pa.large_string()
    )


def _decode_column(kind: str, column: pa.ChunkedArray) -> list[Any]:
    values = column.to_pylist()
    if kind in ("float", "int", "bool", "str"):
        return values
    if kind == "datetime":
        import pandas as pd

        return [None if v is None else pd.Timestamp(v, unit="ms", tz="UTC") for v in values]
    if kind == "json":
        return [None if v is None else json.loads(v) for v in values]
    if kind == "tagged":
        return [None if v is None else _untagged(json.loads(v)) for v in values]
    raise ValueError(f"unknown column kind {kind!r} in a table stream: update despina")


def _is_timestamp(found: type) -> bool:
    return found.__name__ == "Timestamp" and found.__module__.startswith("pandas")


def _plain_ms(value: Any) -> bool:
    """Whether ``value`` is a UTC Timestamp of whole milliseconds, as tables build them."""
    return str(value.tz) == "UTC" and value.value % _MS == 0


def _tagged(value: Any) -> list[Any]:
    """One cell of a mixed column as ``[type tag, JSON payload]``."""
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", str(value)]  # as text: JSON numbers beyond 64 bits are not portable
    if isinstance(value, float):
        return ["f", value]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, decimal.Decimal):
        return ["d", str(value)]
    if _is_timestamp(type(value)) and _plain_ms(value):
        return ["t", value.value // _MS]
    if isinstance(value, dict | list):
        return ["j", value]
    raise TypeError(f"a table cell of type {type(value).__name__} cannot be sent: {value!r}")


def _untagged(item: list[Any]) -> Any:
    tag, payload = item
    if tag == "i":
        return int(payload)
    if tag == "d":
        return decimal.Decimal(payload)
    if tag == "t":
        import pandas as pd

        return pd.Timestamp(payload, unit="ms", tz="UTC")
    return payload
