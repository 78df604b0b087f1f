"""Attribute rows (:class:`~despina.store.sql.attribute_columns.AttrRows`) and the runs they
belong to as bytes: the one encoding of the query layer's attribute cache files
(``query/attr_files.py``) and of the store's attribute packs (``store/sql/attribute_packs.py``).

Format (little-endian, each part 8-byte aligned): a fixed binary header (``_HEAD``: counts, and
per column either the bits of its one repeated value or the offset of its raw bytes), the runs'
revisions and uuids as JSON, then the raw column bytes.
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
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.store.sql.attribute_columns import AttrRows

__all__ = ["DECODE_ERRORS", "MAGIC", "Revisions", "decode", "decode_many", "encode"]

MAGIC = b"DSPNATTR\x06"

# every column: its name, its stored dtype and the count field giving its length
_ROWS, _RUNS, _PATHS, _DISTINCT, _CODES = range(5)
_LAYOUT = (
    ("run_pks", "<i8", _RUNS),
    ("attr_id", "<i8", _ROWS),
    ("run", "<i8", _ROWS),
    ("path", "<i4", _ROWS),
    ("type", "i1", _ROWS),
    ("num_f", "<f8", _ROWS),
    ("num_i", "<i8", _ROWS),
    ("count", "<i8", _ROWS),
    ("last_step", "<i8", _ROWS),
    ("last_ts", "<i8", _ROWS),
    ("path_ends", "<i8", _PATHS),
    ("text_present", "|b1", _ROWS),
    ("text_codes", "<i8", _CODES),
    ("text_ends", "<i8", _DISTINCT),
)
_SLOT = {name: (i, np.dtype(dtype), count) for i, (name, dtype, count) in enumerate(_LAYOUT)}
_COLUMNS = ("attr_id", "run", "path", "type", "num_f", "num_i", "count", "last_step", "last_ts")
_FIXED = 5 + 4 + 1  # counts, blob offsets and lengths, the runs' JSON length
_HEAD = 16 + 8 * (_FIXED + 3 * len(_LAYOUT))
"""``MAGIC`` padded to 16 bytes, then little-endian int64 fields: the five counts (rows, runs,
paths, distinct texts, text cells), the path blob's offset and length, the text blob's, the
length of the runs' JSON, then per column a flag and two values: 0: stored at an offset; 1: one
value repeated, its bits; 2: consecutive integers from a first one; 3: integers stored at an
offset as unsigned distances from a base, in the fewest bytes (1, 2 or 4) that hold them."""
_STORED, _REPEATED, _RANGE, _NARROW = range(4)
_WIDTHS = (1, 2, 4)
"""Flag ``_NARROW + i``: distances of ``_WIDTHS[i]`` bytes."""

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
    pks = np.fromiter(revisions, np.int64, len(revisions))
    runs = json.dumps(
        {
            "revision": [revisions[int(pk)][0] for pk in pks.tolist()],
            "uuid": [revisions[int(pk)][1] for pk in pks.tolist()],
        },
        separators=(",", ":"),
    ).encode()
    runs += b" " * (-len(runs) % 8)
    distinct: dict[str, int] = {}
    codes = np.fromiter(
        (distinct.setdefault(c, len(distinct)) for c in cells), np.int64, len(cells)
    )
    paths = [p.encode() for p in rows.paths]
    texts = [t.encode() for t in distinct]
    fields = [len(rows), len(pks), len(paths), len(texts), len(codes)]
    columns = {name: getattr(rows, name) for name in _COLUMNS}
    columns |= {"run_pks": pks, "text_present": present, "text_codes": codes}
    columns["path_ends"] = np.cumsum(np.fromiter(map(len, paths), np.int64, len(paths)))
    columns["text_ends"] = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)))
    parts: list[bytes | memoryview] = []
    offset = 0

    def put(data: bytes | memoryview, size: int) -> int:
        nonlocal offset
        at = offset
        parts.append(data)
        parts.append(bytes(-size % 8))  # every part starts 8-byte aligned
        offset += size + (-size % 8)
        return at

    slots: list[int] = []
    for name, dtype, _ in _LAYOUT:
        array = np.ascontiguousarray(columns[name], dtype=dtype)
        bits = array.view(f"u{array.dtype.itemsize}")  # bit for bit: -0.0 is not 0.0
        if len(bits) > 1 and bool((bits == bits[0]).all()):
            slots += [_REPEATED, int(np.array(bits[0], np.uint64).view(np.int64)), 0]
            continue
        if len(array) > 1 and array.dtype.kind == "i":
            if bool((np.diff(array) == 1).all()):
                slots += [_RANGE, int(array[0]), 0]  # ids and path codes of one run often are
                continue
            base = int(array.min())
            span = int(array.max()) - base
            width = next((w for w in _WIDTHS if span < 1 << (8 * w)), 8)
            if width < array.dtype.itemsize:  # counts, steps, ids: small ranges
                narrow = (array.astype(np.int64) - base).astype(f"<u{width}")
                flag = _NARROW + _WIDTHS.index(width)
                slots += [flag, put(narrow.data.cast("B"), narrow.nbytes), base]
                continue
        slots += [_STORED, put(array.data.cast("B"), array.nbytes), 0]
    path_blob, text_blob = b"".join(paths), b"".join(texts)
    fields += [put(path_blob, len(path_blob)), len(path_blob)]
    fields += [put(text_blob, len(text_blob)), len(text_blob), len(runs)]
    head = MAGIC.ljust(16, b"\0") + np.array(fields + slots, "<i8").tobytes()
    return [head, runs, *parts]


class _Encoded:
    """One encoding's fields and body, and readers of its columns."""

    def __init__(self, data: Any) -> None:
        if data[: len(MAGIC)] != MAGIC:
            raise ValueError("not an attribute encoding of this version")
        self.data = data
        head = np.frombuffer(data, "<i8", _FIXED + 3 * len(_LAYOUT), 16).tolist()
        self.counts = head[:5]
        self.blobs = head[5:9]
        self.runs_at = (_HEAD, head[9])
        self.slots = head[_FIXED:]
        self.body = _HEAD + head[9]
        self.rows = head[_ROWS]
        if self.body > len(data):
            raise ValueError("a truncated attribute encoding")

    def get(self, name: str) -> npt.NDArray[Any]:
        index, dtype, count = _SLOT[name]
        n = self.counts[count]
        flag, value, base = self.slots[3 * index : 3 * index + 3]
        if flag == _RANGE:
            return np.arange(value, value + n, dtype=dtype)
        if flag >= _NARROW:
            return (self._narrow(flag, value, n) + base).astype(dtype)
        if flag == _REPEATED:
            bits = np.full(n, np.array(value, np.int64).view(np.uint64), np.uint64)
            return bits.astype(f"u{dtype.itemsize}").view(dtype)
        return np.frombuffer(self.data, dtype, n, self.body + value)

    def _narrow(self, flag: int, at: int, n: int) -> npt.NDArray[np.int64]:
        """``n`` distances stored at ``at`` in the width ``flag`` names."""
        width = _WIDTHS[flag - _NARROW]
        return np.frombuffer(self.data, f"<u{width}", n, self.body + at).astype(np.int64)

    def blob(self, name: str) -> tuple[bytes, npt.NDArray[Any]]:
        """The bytes of strings ``name`` (``path`` or ``text``) and their ends."""
        at, n = self.blobs[:2] if name == "path" else self.blobs[2:]
        start = self.body + at
        return bytes(self.data[start : start + n]), self.get(f"{name}_ends")

    def revisions(self) -> Revisions:
        start, n = self.runs_at
        runs = json.loads(bytes(self.data[start : start + n]))
        pks = self.get("run_pks")
        return dict(
            zip(pks.tolist(), zip(runs["revision"], runs["uuid"], strict=True), strict=True)
        )

    def text_cells(self) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
        """Which rows hold text, and their cells."""
        present = self.get("text_present")
        blob, ends = self.blob("text")
        return present, _strings(blob, ends)[self.get("text_codes")]


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
    encoded = _Encoded(memoryview(data).cast("B"))
    n_rows = encoded.rows
    columns = {name: encoded.get(name) for name in _COLUMNS}
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


def decode_many(
    buffers: Sequence[Any], *, text: bool = True, columns: Collection[str] | None = None
) -> AttrRows:
    """The rows of many encodings, in order, as one set of (new, writable) columns: only
    ``columns`` of the numeric ones (``None``: all; the others are zeros) and, with ``text``,
    the text cells (else ``None``).

    Raises:
        ValueError: (or another of :data:`DECODE_ERRORS`) one of them is not such an encoding.
    """
    encodings = [_Encoded(data) for data in buffers]
    if not encodings:
        return AttrRows.empty()
    sizes = np.array([e.rows for e in encodings], np.int64)
    ends = np.cumsum(sizes).tolist()
    spans = list(zip([0, *ends[:-1]], ends, strict=True))
    wanted = set(_COLUMNS if columns is None else columns) | {"run", "path", "type"}
    found = {
        name: _column(name, encodings, spans, sizes)
        if name in wanted
        else np.zeros(ends[-1], _SLOT[name][1].newbyteorder("="))
        for name in _COLUMNS
    }
    # path codes: each distinct path list mapped once onto the codes of every path seen
    codes: dict[str, int] = {}
    layouts: dict[tuple[bytes, bytes], int] = {}
    mappings: list[npt.NDArray[np.int32]] = []
    starts = np.empty(len(encodings), np.int64)  # of each encoding's mapping in ``mappings``
    cells = np.full(ends[-1], None, dtype=object)
    at = 0
    for k, (encoded, (a, b)) in enumerate(zip(encodings, spans, strict=True)):
        blob, path_ends = encoded.blob("path")
        key = (blob, path_ends.tobytes())
        layout = layouts.get(key)
        if layout is None:
            names = _strings(blob, path_ends).tolist()
            mappings.append(np.array([codes.setdefault(p, len(codes)) for p in names], np.int32))
            layout = layouts[key] = at
            at += len(names)
        starts[k] = layout
        if text and encoded.counts[_DISTINCT]:
            present, held = encoded.text_cells()
            cells[a:b][present] = held
    every = np.concatenate(mappings) if mappings else np.empty(0, np.int32)
    path = every[np.repeat(starts, sizes) + found["path"]] if len(every) else found["path"]
    return AttrRows(
        found["attr_id"],
        found["run"],
        path.astype(np.int32, copy=False),
        found["type"],
        found["num_f"],
        found["num_i"],
        cells,
        found["count"],
        found["last_step"],
        found["last_ts"],
        tuple(codes),
    )


def _column(
    name: str, encodings: list[_Encoded], spans: list[tuple[int, int]], sizes: npt.NDArray[Any]
) -> npt.NDArray[Any]:
    """Column ``name`` of every encoding: stored ones copied, repeated values and ranges set
    at once."""
    index, dtype, _ = _SLOT[name]
    out = np.empty(int(sizes.sum()), dtype.newbyteorder("="))
    flags = np.zeros(len(encodings), np.int8)
    bits = np.zeros(len(encodings), np.int64)
    for k, (encoded, (a, b)) in enumerate(zip(encodings, spans, strict=True)):
        flag, value, base = encoded.slots[3 * index : 3 * index + 3]
        if flag >= _NARROW:
            out[a:b] = encoded._narrow(flag, value, b - a) + base
        elif flag:
            flags[k] = flag
            bits[k] = value
        elif b > a:
            out[a:b] = np.frombuffer(encoded.data, dtype, b - a, encoded.body + value)
    ranges = flags == _RANGE
    if ranges.any():  # first + (row - the encoding's first row)
        starts = np.array([a for a, _ in spans], np.int64)
        rows = np.repeat(ranges, sizes)
        offsets = np.repeat(bits[ranges] - starts[ranges], sizes[ranges])
        out[rows] = offsets + np.flatnonzero(rows)
    repeated = flags == _REPEATED
    if repeated.any():
        values = np.repeat(bits[repeated], sizes[repeated]).view(np.uint64)
        unsigned = f"u{dtype.itemsize}"
        out.view(unsigned)[np.repeat(repeated, sizes)] = values.astype(unsigned)
    return out
