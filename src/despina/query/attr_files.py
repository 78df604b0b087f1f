"""Attribute rows kept on disk between processes, so that a fresh process's first query does not
read a million ``attributes`` rows again.

The store's own columnar read costs about 1 µs per row (SQLite walks one b-tree entry and one
table row per attribute; PostgreSQL aggregates them per run), while the rest of a query over the
same rows costs a fifth of that: a notebook's first call over 1,000 runs × 1,000 metrics paid
1.5 s of reading for 0.2 s of work. :class:`~despina.query.attrs.AttributeCache` therefore
writes the rows it read to one file per (project, read spec) and a later process starts from
that file: it is checked run by run against ``runs.revision`` and ``runs.uuid`` in the caller's
read transaction, exactly like the in-memory entries, so a run written since (or deleted and
replaced) is read again from the store and nothing stale is ever returned. The files are a cache:
one that cannot be read or written is ignored, and deleting the directory is always safe.

Where: ``<home>/cache/attributes/<store>/`` (``home`` is the embedded store's directory, or the
local home of a PostgreSQL store: ``DESPINA_HOME``, ``~/.despina``). ``DESPINA_QUERY_DISK_CACHE=0``
turns it off; the directory is kept under :data:`DISK_LIMIT_BYTES` by removing the least
recently used files.

Format (native NumPy dtypes, each column 8-byte aligned): ``MAGIC``, the header's length (8
bytes), a JSON header (paths, runs with their revision and uuid, and per column either the bits
of its one repeated value or the offset, dtype and length of its raw bytes), then the raw column
bytes. Text cells are stored as an index into their distinct strings (UTF-8 with offsets); only
``str`` or ``None`` cells are written (an entry holding anything else is not saved).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.store.sql.attribute_columns import AttrRows

__all__ = [
    "DISABLE_ENV",
    "DISK_LIMIT_BYTES",
    "DISK_MIN_ROWS",
    "Revisions",
    "cache_directory",
    "entry_file",
    "load",
    "remove_all",
    "save",
]

DISABLE_ENV = "DESPINA_QUERY_DISK_CACHE"
DISK_LIMIT_BYTES = 2 << 30
"""The files of one store's cache are kept under this total (least recently used removed)."""
DISK_MIN_ROWS = 5_000
"""Entries with fewer rows are not written (reading them from the store takes milliseconds)."""

MAGIC = b"DSPNATTR\x02"
_COLUMNS = ("attr_id", "run", "path", "type", "num_f", "num_i", "count", "last_step", "last_ts")

Revisions = dict[int, tuple[int, str]]
"""Per run row id: ``(revision, uuid)``."""


def cache_directory(home: Path, store_key: str) -> Path | None:
    """The directory of one store's cache files; ``None`` when turned off."""
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    # the key of a PostgreSQL store is its URL: hashed, never written out
    digest = hashlib.sha256(store_key.encode()).hexdigest()[:20]
    return home / "cache" / "attributes" / digest


def entry_file(directory: Path, project_id: int, spec_key: str) -> Path:
    """The file of one (project, read spec) entry."""
    digest = hashlib.sha256(spec_key.encode()).hexdigest()[:24]
    return directory / f"p{project_id}-{digest}.attrs"


def save(path: Path, revisions: Revisions, rows: AttrRows) -> bool:
    """Write one entry (atomically: a temporary file renamed over ``path``); ``False`` when it
    cannot be written or holds cells this format does not keep."""
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
        return False
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
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + struct.pack("<Q", len(head)) + head)
                for part in parts:
                    out.write(part)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError:
        return False
    _prune(path.parent)
    return True


def load(path: Path) -> tuple[Revisions, AttrRows] | None:
    """One entry as written by :func:`save`; ``None`` when there is none or it cannot be read
    (a file of another version, truncated, corrupt)."""
    try:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            data = np.empty(size, np.uint8)  # writable: the arrays are views of it
            if source.readinto(data.data) != size:
                return None
        os.utime(path)  # recently used: kept by the pruning
    except OSError:
        return None
    try:
        return _decode(data)
    except (ValueError, KeyError, TypeError, IndexError, struct.error, UnicodeDecodeError):
        return None


def _decode(data: npt.NDArray[np.uint8]) -> tuple[Revisions, AttrRows]:
    raw = data.data
    if bytes(raw[: len(MAGIC)]) != MAGIC:
        raise ValueError("not an attribute cache file of this version")
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


def remove_all(directory: Path) -> None:
    """Delete every entry of one store's cache."""
    with contextlib.suppress(OSError):
        for found in directory.glob("*.attrs"):
            with contextlib.suppress(OSError):
                found.unlink()


def _prune(directory: Path) -> None:
    """Remove the least recently used files past :data:`DISK_LIMIT_BYTES`."""
    try:
        found = [(f.stat(), f) for f in directory.glob("*.attrs")]
    except OSError:
        return
    total = sum(stat.st_size for stat, _ in found)
    for stat, file in sorted(found, key=lambda item: item[0].st_mtime):
        if total <= DISK_LIMIT_BYTES:
            break
        with contextlib.suppress(OSError):
            file.unlink()
        total -= stat.st_size
