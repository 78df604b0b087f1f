"""Attribute rows (:class:`~despina.store.sql.attribute_columns.AttrRows`) and the runs they
belong to as bytes: the one encoding of the query layer's attribute cache files
(``query/attr_files.py``) and of the store's attribute packs (``store/sql/attribute_packs.py``).

Format (native NumPy dtypes, each column 8-byte aligned): ``MAGIC``, the header's length (8
bytes), a JSON header (runs with their revision and uuid, and per column either the bits of its
one repeated value or the offset, dtype and length of its raw bytes), then the raw column bytes.
Paths and text cells are UTF-8 strings with their end offsets; text cells are stored as an index
into their distinct strings (tables repeat their values). Only ``str`` or ``None`` text cells
are encoded (rows holding anything else are not).

:func:`decode` reads one encoding as views of its buffer; :func:`decode_many` reads many (the
packs of many runs) into one set of columns, decoding each distinct path list once (runs
usually share theirs).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.store.sql.attribute_columns import AttrRows

__all__ = ["DECODE_ERRORS", "MAGIC", "Revisions", "decode", "decode_many", "encode"]

MAGIC = b"DSPNATTR\x03"
_COLUMNS = ("attr_id", "run", "path", "type", "num_f", "num_i", "count", "last_step", "last_ts")

Revisions = dict[int, tuple[int, str]]
"""Per run row id: ``(revision, uuid)``."""

DECODE_ERRORS = (ValueError, KeyError, TypeError, IndexError, struct.error, UnicodeDecodeError)
"""What the decoders raise on bytes they cannot read (another version, truncated, corrupt)."""


def encode(revisions: Revisions, rows: AttrRows) -> list[bytes | memoryview] | None:
    """``rows`` and the ``(revision, uuid)`` of their runs as the parts of one encoding (to be
    written or joined in order); ``None`` when a text cell is neither ``str`` nor ``None``."""
    text = rows.text
    present = np.fromiter((cell is not None for cell in text), bool, len(text))
    cells = text[present].tolist()
    if not all(type(cell) is str for cell in cells):
        return None
    header: dict[str, Any] = {"rows": len(rows), "columns": {}}
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

    def put_strings(name: str, strings: Sequence[str]) -> None:
        nonlocal offset
        encoded = [s.encode() for s in strings]
        put(f"{name}_ends", np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded))))
        blob = b"".join(encoded)
        header[f"{name}_blob"] = {"offset": offset, "n": len(blob), "distinct": len(encoded)}
        parts.append(blob)
        parts.append(bytes(-len(blob) % 8))
        offset += len(blob) + (-len(blob) % 8)

    put("run_pks", pks)
    for name in _COLUMNS:
        put(name, getattr(rows, name))
    put_strings("path", rows.paths)
    distinct: dict[str, int] = {}
    codes = np.fromiter(
        (distinct.setdefault(c, len(distinct)) for c in cells), np.int64, len(cells)
    )
    put("text_present", present)
    put("text_codes", codes)
    put_strings("text", list(distinct))
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-(len(MAGIC) + 8 + len(head)) % 8)
    return [MAGIC + struct.pack("<Q", len(head)) + head, *parts]


class _Encoded:
    """One encoding's header and body, and readers of its columns."""

    def __init__(self, data: Any) -> None:
        raw = memoryview(data).cast("B")
        if bytes(raw[: len(MAGIC)]) != MAGIC:
            raise ValueError("not an attribute encoding of this version")
        start = len(MAGIC) + 8
        (length,) = struct.unpack_from("<Q", raw, len(MAGIC))
        self.header: dict[str, Any] = json.loads(bytes(raw[start : start + length]))
        self.body = raw[start + length :]
        self.rows = int(self.header["rows"])

    def get(self, name: str, n: int) -> npt.NDArray[Any]:
        column = self.header["columns"][name]
        dtype = np.dtype(column["dtype"])
        if "bits" in column:
            bits = np.full(n, column["bits"], f"u{dtype.itemsize}")
            return bits.view(dtype)
        found = np.frombuffer(self.body, dtype, column["n"], column["offset"])
        if len(found) != n:
            raise ValueError(f"column {name} has {len(found)} rows, not {n}")
        return found

    def fill(self, name: str, out: npt.NDArray[Any]) -> None:
        """Column ``name`` into ``out`` (as many rows as it has)."""
        column = self.header["columns"][name]
        if "bits" in column:
            out.view(f"u{out.dtype.itemsize}").fill(column["bits"])
        else:
            out[:] = np.frombuffer(self.body, column["dtype"], column["n"], column["offset"])

    def blob(self, name: str) -> tuple[bytes, npt.NDArray[Any]]:
        """The bytes of strings ``name`` and their ends."""
        at = self.header[f"{name}_blob"]
        ends = self.get(f"{name}_ends", int(at["distinct"]))
        return bytes(self.body[at["offset"] : at["offset"] + at["n"]]), ends

    def revisions(self) -> Revisions:
        runs = self.header["runs"]
        pks = self.get("run_pks", len(runs["uuid"]))
        return dict(
            zip(pks.tolist(), zip(runs["revision"], runs["uuid"], strict=True), strict=True)
        )

    def text_cells(self) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
        """Which rows hold text, and their cells."""
        present = self.get("text_present", self.rows)
        blob, ends = self.blob("text")
        codes = self.get("text_codes", int(present.sum()))
        return present, _strings(blob, ends)[codes]


def _strings(blob: bytes, ends: npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    found = ends.tolist()
    out = np.empty(len(found), dtype=object)
    starts = [0, *found[:-1]] if found else []
    out[:] = [blob[a:b].decode() for a, b in zip(starts, found, strict=True)]
    return out


def decode(data: Any) -> tuple[Revisions, AttrRows]:
    """What :func:`encode` encoded, from a buffer (``bytes``, or a writable ``uint8`` array
    for writable columns: the columns are views of it).

    Raises:
        ValueError: (or another of :data:`DECODE_ERRORS`) the bytes are not such an encoding.
    """
    encoded = _Encoded(data)
    n_rows = encoded.rows
    columns = {name: encoded.get(name, n_rows) for name in _COLUMNS}
    text = np.full(n_rows, None, dtype=object)
    present, cells = encoded.text_cells()
    text[present] = cells
    blob, ends = encoded.blob("path")
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
        tuple(_strings(blob, ends).tolist()),
    )
    return encoded.revisions(), rows


def decode_many(buffers: Sequence[Any]) -> AttrRows:
    """The rows of many encodings, in order, as one set of (new, writable) columns.

    Raises:
        ValueError: (or another of :data:`DECODE_ERRORS`) one of them is not such an encoding.
    """
    encodings = [_Encoded(data) for data in buffers]
    if not encodings:
        return AttrRows.empty()
    ends = np.cumsum([e.rows for e in encodings]).tolist()
    spans = list(zip([0, *ends[:-1]], ends, strict=True))
    total = ends[-1]
    first = encodings[0].header["columns"]
    columns = {}
    for name in _COLUMNS:
        if name == "path":
            continue
        out = np.empty(total, np.dtype(first[name]["dtype"]))
        for encoded, (a, b) in zip(encodings, spans, strict=True):
            encoded.fill(name, out[a:b])
        columns[name] = out
    # path codes: each distinct path list mapped once onto the codes of every path seen
    codes: dict[str, int] = {}
    layouts: dict[tuple[bytes, bytes], npt.NDArray[np.int32]] = {}
    path = np.empty(total, np.int32)
    text = np.full(total, None, dtype=object)
    for encoded, (a, b) in zip(encodings, spans, strict=True):
        blob, path_ends = encoded.blob("path")
        key = (blob, path_ends.tobytes())
        mapping = layouts.get(key)
        if mapping is None:
            names = _strings(blob, path_ends).tolist()
            mapping = np.array([codes.setdefault(p, len(codes)) for p in names], np.int32)
            layouts[key] = mapping
        local = np.empty(b - a, np.int32)
        encoded.fill("path", local)
        path[a:b] = mapping[local] if len(mapping) else local
        if encoded.header["text_blob"]["distinct"]:
            present, cells = encoded.text_cells()
            text[a:b][present] = cells
    return AttrRows(
        columns["attr_id"],
        columns["run"],
        path,
        columns["type"],
        columns["num_f"],
        columns["num_i"],
        text,
        columns["count"],
        columns["last_step"],
        columns["last_ts"],
        tuple(codes),
    )
