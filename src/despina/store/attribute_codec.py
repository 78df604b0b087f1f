"""Attribute rows (:class:`~despina.store.sql.attribute_columns.AttrRows`) and the runs they
belong to as bytes: the one encoding of the query layer's attribute cache files
(``query/attr_files.py``) and of the store's attribute packs (``store/sql/attribute_packs.py``).

Format (native NumPy dtypes, each column 8-byte aligned): ``MAGIC``, the header's length (8
bytes), a JSON header (paths, runs with their revision and uuid, and per column either the bits
of its one repeated value or the offset, dtype and length of its raw bytes), then the raw column
bytes. Text cells are stored as an index into their distinct strings (UTF-8 with offsets); only
``str`` or ``None`` cells are encoded (rows holding anything else are not).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.store.sql.attribute_columns import AttrRows

__all__ = ["DECODE_ERRORS", "MAGIC", "Revisions", "decode", "encode"]

MAGIC = b"DSPNATTR\x02"
_COLUMNS = ("attr_id", "run", "path", "type", "num_f", "num_i", "count", "last_step", "last_ts")

Revisions = dict[int, tuple[int, str]]
"""Per run row id: ``(revision, uuid)``."""

DECODE_ERRORS = (ValueError, KeyError, TypeError, IndexError, struct.error, UnicodeDecodeError)
"""What :func:`decode` raises on bytes it cannot read (another version, truncated, corrupt)."""


def encode(revisions: Revisions, rows: AttrRows) -> list[bytes | memoryview] | None:
    """``rows`` and the ``(revision, uuid)`` of their runs as the parts of one encoding (to be
    written or joined in order); ``None`` when a text cell is neither ``str`` nor ``None``."""
    header: dict[str, Any] = {"paths": list(rows.paths), "rows": len(rows), "columns": {}}
    pks = np.fromiter(revisions, np.int64, len(revisions))
    header["runs"] = {
        "revision": [revisions[int(pk)][0] for pk in pks.tolist()],
        "uuid": [revisions[int(pk)][1] for pk in pks.tolist()],
    }
    parts: list[bytes | memoryview] = []
    offset = 0

    def put(name: str, array: npt.NDArray[Any]) -> None:
        nonlocal offset
        array = np.ascontiguousarray(array)
        bits = array.view(f"u{array.dtype.itemsize}")  # bit for bit: -0.0 is not 0.0
        if len(bits) > 1 and bool((bits == bits[0]).all()):
            header["columns"][name] = {"bits": int(bits[0]), "dtype": array.dtype.str}
            return
        header["columns"][name] = {"offset": offset, "dtype": array.dtype.str, "n": len(array)}
        parts.append(array.data.cast("B"))
        pad = -array.nbytes % 8  # every column starts 8-byte aligned
        parts.append(bytes(pad))
        offset += array.nbytes + pad

    put("run_pks", pks)
    for name in _COLUMNS:
        put(name, getattr(rows, name))
    text = rows.text
    present = np.fromiter((cell is not None for cell in text), bool, len(text))
    cells = text[present].tolist()
    if not all(type(cell) is str for cell in cells):
        return None
    # distinct strings once, each cell as an index into them (tables repeat their values)
    distinct: dict[str, int] = {}
    codes = np.fromiter(
        (distinct.setdefault(c, len(distinct)) for c in cells), np.int64, len(cells)
    )
    encoded = [cell.encode() for cell in distinct]
    put("text_present", present)
    put("text_codes", codes)
    put("text_ends", np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded))))
    blob = b"".join(encoded)
    header["text_blob"] = {"offset": offset, "n": len(blob), "distinct": len(encoded)}
    parts.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-(len(MAGIC) + 8 + len(head)) % 8)
    return [MAGIC + struct.pack("<Q", len(head)) + head, *parts]


def decode(data: Any) -> tuple[Revisions, AttrRows]:
    """What :func:`encode` encoded, from a buffer (``bytes``, or a writable ``uint8`` array
    for writable columns: the columns are views of it).

    Raises:
        ValueError: (or another of :data:`DECODE_ERRORS`) the bytes are not such an encoding.
    """
    raw = memoryview(data).cast("B")
    if bytes(raw[: len(MAGIC)]) != MAGIC:
        raise ValueError("not an attribute encoding of this version")
    start = len(MAGIC) + 8
    (length,) = struct.unpack_from("<Q", raw, len(MAGIC))
    header = json.loads(bytes(raw[start : start + length]))
    body = raw[start + length :]

    def get(name: str, n: int) -> npt.NDArray[Any]:
        column = header["columns"][name]
        dtype = np.dtype(column["dtype"])
        if "bits" in column:
            bits = np.full(n, column["bits"], f"u{dtype.itemsize}")
            return bits.view(dtype)
        found = np.frombuffer(body, dtype, column["n"], column["offset"])
        if len(found) != n:
            raise ValueError(f"column {name} has {len(found)} rows, not {n}")
        return found

    pks = get("run_pks", len(header["runs"]["uuid"]))
    revisions = dict(
        zip(
            pks.tolist(),
            zip(header["runs"]["revision"], header["runs"]["uuid"], strict=True),
            strict=True,
        )
    )
    n_rows = int(header["rows"])
    columns = {name: get(name, n_rows) for name in _COLUMNS}
    present = get("text_present", n_rows)
    blob_at = header["text_blob"]
    codes = get("text_codes", int(present.sum()))
    ends = get("text_ends", int(blob_at["distinct"])).tolist()
    blob = bytes(body[blob_at["offset"] : blob_at["offset"] + blob_at["n"]])
    distinct = np.empty(len(ends), dtype=object)
    starts = [0, *ends[:-1]] if ends else []
    distinct[:] = [blob[a:b].decode() for a, b in zip(starts, ends, strict=True)]
    text = np.full(n_rows, None, dtype=object)
    if len(codes):
        text[present] = distinct[codes]
    rows = AttrRows(
        columns["attr_id"],
        columns["run"],
        columns["path"],
        columns["type"],
        columns["num_f"],
        columns["num_i"],
        text,
        columns["count"],
        columns["last_step"],
        columns["last_ts"],
        tuple(header["paths"]),
    )
    return revisions, rows
