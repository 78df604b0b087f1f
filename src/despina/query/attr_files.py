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

Format: :mod:`despina.store.attribute_codec` (the encoding of the store's attribute packs too);
an entry holding cells other than ``str`` or ``None`` is not saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from despina.store import attribute_codec
from despina.store.attribute_codec import Revisions
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
    parts = attribute_codec.encode(revisions, rows)
    if parts is None:
        return False
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
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
        return attribute_codec.decode(data)
    except attribute_codec.DECODE_ERRORS:
        return None


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
