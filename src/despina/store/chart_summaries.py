"""Block summaries of float series kept in the store (``chart_summaries``), so that the web UI's
first chart view after a server start reads one short row per series instead of every point.

A row holds the summary of a series' own points (``server/ui/summaries.py``: per block of 16
points its first and last step, first and last timestamp, first and last value and finite
min/max) and the chunk signature it was made from (``store/chart_series.py``): a row whose
signature differs from the series' chunks is stale and is replaced on next use. Rows are written
lazily by the UI, never by the writer, so logging pays nothing for them; a lost or stale row only
costs one re-read of the series' points.

Steps and timestamps are encoded like chunk blobs (``store/codec.py``: almost always a constant
delta, a few bytes); values are raw float64 (exact, NaN and ±inf included): per block its last
value and finite min and max, about 1.5 bytes per point of the series.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from despina.store.codec import decode_floats, decode_ints, encode_floats, encode_ints
from despina.store.reads import ProjectReads

__all__ = ["StoredSummary", "read_summaries", "write_summaries"]

_HEADER = struct.Struct("<BIIII")
_FORMAT = 2
"""The first byte of ``data``: a row of another format is ignored (made again)."""
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StoredSummary:
    """One series' blocks as stored: steps in micro-steps, timestamps in epoch ms. Only the first
    block's ``first_y`` is kept (the others decode as NaN: never drawn)."""

    attr_id: int
    signature: tuple[int, int, int]
    first_step: I64
    last_step: I64
    first_ts: I64
    last_ts: I64
    first_y: F64
    last_y: F64
    low: F64
    high: F64

    def encode(self) -> bytes:
        ints = [
            encode_ints(np.ascontiguousarray(a, dtype=np.int64))
            for a in (self.first_step, self.last_step, self.first_ts, self.last_ts)
        ]
        # of the blocks' first values only the series' first one is ever drawn (the first
        # bucket starts at the first point): one value instead of one per block
        floats = b"".join(
            encode_floats(np.ascontiguousarray(a, dtype=np.float64))
            for a in (self.first_y[:1], self.last_y, self.low, self.high)
        )
        return _HEADER.pack(_FORMAT, *(len(b) for b in ints)) + b"".join(ints) + floats

    @staticmethod
    def decode(
        attr_id: int, signature: tuple[int, int, int], n: int, raw: bytes
    ) -> StoredSummary | None:
        """The summary of a stored row; None for a row of another format."""
        data = memoryview(raw)
        if len(data) < _HEADER.size or data[0] != _FORMAT:
            return None
        _, *sizes = _HEADER.unpack_from(data)
        at = _HEADER.size
        ints: list[I64] = []
        for size in sizes:
            ints.append(decode_ints(data[at : at + size], n))  # type: ignore[arg-type]
            at += size
        first_y = np.full(n, np.nan)
        first_y[:1] = decode_floats(data[at : at + 8], 1)  # type: ignore[arg-type]
        at += 8
        floats: list[F64] = [first_y]
        for _ in range(3):
            floats.append(decode_floats(data[at : at + 8 * n], n))  # type: ignore[arg-type]
            at += 8 * n
        return StoredSummary(attr_id, signature, *ints, *floats[:4])  # type: ignore[arg-type]


def read_summaries(reads: ProjectReads, attr_ids: Sequence[int]) -> dict[int, StoredSummary]:
    """The stored summaries of ``attr_ids`` (missing ones left out), whatever their signature:
    the caller compares it with the series' chunks."""
    if not attr_ids:
        return {}
    rows = reads.conn.execute(
        "SELECT attr_id, chunks, points, last_step, blocks, data FROM chart_summaries "
        "WHERE attr_id IN (SELECT value FROM json_each(?))",
        (json.dumps([int(a) for a in attr_ids]),),
    ).fetchall()
    out = {}
    for r in rows:
        found = StoredSummary.decode(int(r[0]), (int(r[1]), int(r[2]), int(r[3])), int(r[4]), r[5])
        if found is not None:
            out[found.attr_id] = found
    return out


def write_summaries(conn: object, summaries: Iterable[StoredSummary]) -> int:
    """Store ``summaries`` (replacing older ones of the same series) in the write transaction
    ``conn``; returns how many were written."""
    rows = [(s.attr_id, *s.signature, len(s.first_step), s.encode()) for s in summaries]
    if rows:
        conn.executemany(  # type: ignore[attr-defined]
            "INSERT OR REPLACE INTO chart_summaries "
            "(attr_id, chunks, points, last_step, blocks, data) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)
