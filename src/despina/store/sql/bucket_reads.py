"""Chunk reads of metric buckets (``despina.query.buckets``): the statistics of every chunk of
many series without their blobs, then the values of the chunks bucketing must decode.

Every function takes the connection of the caller's read transaction (``Store.read()``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from despina.store.schema import CHUNK_BITS
from despina.store.sql import dialect_of

__all__ = ["ChunkStats", "chunk_blobs", "chunk_stats"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_CHUNK_SPAN = (1 << CHUNK_BITS) - 1

_SQLITE_STATS = (
    "SELECT j.key, c.id, c.step_first, c.step_last, ifnull(c.vmin, 'nan'), "
    "ifnull(c.vmax, 'nan') FROM json_each(?) j JOIN chunks c "
    f"ON c.id BETWEEN (j.value << {CHUNK_BITS}) AND (j.value << {CHUNK_BITS}) + {_CHUNK_SPAN} "
    "ORDER BY j.key, c.id"
)
# the same on PostgreSQL: list positions from WITH ORDINALITY (1-based), NaN for NULL bounds
_POSTGRES_STATS = (
    "SELECT j.key - 1, c.id, c.step_first, c.step_last, "
    "COALESCE(c.vmin, 'NaN'::float8), COALESCE(c.vmax, 'NaN'::float8) "
    "FROM unnest(?::bigint[]) WITH ORDINALITY AS j(value, key) JOIN chunks c "
    f"ON c.id BETWEEN (j.value << {CHUNK_BITS}) AND (j.value << {CHUNK_BITS}) + {_CHUNK_SPAN} "
    "ORDER BY j.key, c.id"
)


class ChunkStats(NamedTuple):
    """Chunk statistics as columns, ordered by entry then step: ``entry`` is the position in
    the list of series asked for (a series listed twice has its chunks twice), ``vmin`` and
    ``vmax`` the smallest and largest finite value (NaN: none)."""

    entry: I64
    chunk_id: I64
    step_first: I64
    step_last: I64
    vmin: F64
    vmax: F64


def chunk_stats(conn: Any, attr_ids: Sequence[int]) -> ChunkStats:
    """The statistics of every chunk of the series ``attr_ids``, in one statement (no blob is
    read)."""
    ids = [int(a) for a in attr_ids]
    if dialect_of(conn) == "postgresql":
        rows = conn.execute(_POSTGRES_STATS, (ids,)).fetchall()
    else:
        rows = conn.execute(_SQLITE_STATS, (json.dumps(ids),)).fetchall()
    if not rows:
        e = np.empty(0, np.int64)
        return ChunkStats(e, e, e, e, np.empty(0), np.empty(0))
    entry, chunk_id, first, last, vmin, vmax = zip(*rows, strict=True)
    return ChunkStats(
        np.array(entry, np.int64),
        np.array(chunk_id, np.int64),
        np.array(first, np.int64),
        np.array(last, np.int64),
        np.array(vmin, np.float64),
        np.array(vmax, np.float64),
    )


def chunk_blobs(conn: Any, chunk_ids: Sequence[int]) -> list[tuple[int, int, bytes, bytes]]:
    """``(chunk id, n, steps blob, values blob)`` of the chunks ``chunk_ids`` that exist, in
    no guaranteed order (timestamps are not read)."""
    out: list[tuple[int, int, bytes, bytes]] = []
    ids = [int(c) for c in chunk_ids]
    for start in range(0, len(ids), 50_000):
        out.extend(
            conn.execute(
                "SELECT id, n, steps, vals FROM chunks "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids[start : start + 50_000]),),
            )
        )
    return out
