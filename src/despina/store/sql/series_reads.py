"""Series reads of the query service: lineages, series ids, float-series chunks and previews,
and the points of string, histogram and file series.

Every function takes the connection of the caller's read transaction (``Store.read()``), so a
request reads one snapshot. Steps are micro-steps. Float-series points live in ``chunks`` rows
whose id is ``(attribute id << CHUNK_BITS) | chunk number`` on both databases, so the chunks of
many series are read by a few id ranges (series of a run are numbered consecutively); their
blobs are decoded by :mod:`despina.store.codec`. Lists of ids are bound as one JSON parameter
(``= ANY`` on PostgreSQL), so a statement's text does not depend on how many ids it reads.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from despina.store.codec import decode_ints
from despina.store.schema import CHUNK_BITS
from despina.store.sql import dialect_of

__all__ = [
    "MAX_STEP",
    "ChunkBoundsRow",
    "ChunkRow",
    "PreviewRow",
    "RunLineageRow",
    "SeriesPoints",
    "attrs_with_previews",
    "chunk_bounds_rows",
    "chunk_rows",
    "chunk_rows_by_id",
    "chunk_steps",
    "preview_rows",
    "preview_step_span",
    "run_lineage_rows",
    "series_attribute",
    "series_chunk_points",
    "series_ids",
    "series_point_rows",
]

MAX_STEP = 2**62
"""Larger than any stored micro-step."""

_LIST = "(SELECT value FROM json_each(?))"
_IDS_PER_STATEMENT = 50_000
"""Ids bound in one JSON list (a statement's size stays bounded)."""
_RANGES_PER_STATEMENT = 200
"""Chunk id ranges joined in one statement."""

Int64s = npt.NDArray[np.int64]


def _parts(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _json(values: Iterable[Any]) -> str:
    return json.dumps(list(values))


# -- lineages and series ids ------------------------------------------------------------------


class RunLineageRow(NamedTuple):
    """What a lineage walk needs of one run: its parent (None: a root), the step it forked at
    (micro; None: the parent's every step) and its experiment name (None: not a head)."""

    run_pk: int
    parent_pk: int | None
    fork_step: int | None
    experiment_name: str | None


def run_lineage_rows(conn: Any, run_pks: Collection[int]) -> list[RunLineageRow]:
    """The :class:`RunLineageRow` of each run among ``run_pks`` that exists, in no order."""
    out: list[RunLineageRow] = []
    for part in _parts(sorted(set(run_pks)), _IDS_PER_STATEMENT):
        out.extend(
            RunLineageRow(*row)
            for row in conn.execute(
                f"SELECT id, parent_id, fork_step, experiment_name FROM runs WHERE id IN {_LIST}",
                (_json(part),),
            )
        )
    return out


def series_ids(
    conn: Any, pairs: Collection[tuple[int, str]], type_: str
) -> dict[tuple[int, str], int]:
    """Attribute ids of the ``(run row id, path)`` pairs whose attribute has type ``type_``;
    pairs without one are left out."""
    if not pairs:
        return {}
    found: dict[tuple[int, str], int] = {}
    if dialect_of(conn) == "postgresql":
        # exact pairs in one statement; the ids come packed in one row (psycopg pays per row:
        # a request for a million one-point series would otherwise fetch a million rows)
        listed = list(pairs)
        packed = conn.execute(
            "SELECT string_agg(int8send(w.i), ''::bytea), string_agg(int8send(a.id), ''::bytea) "
            "FROM unnest(?::bigint[], ?::text[]) WITH ORDINALITY AS w(r, p, i) "
            "JOIN attributes a ON a.run_id = w.r AND a.path = w.p WHERE a.type = ?",
            ([pk for pk, _ in listed], [path for _, path in listed], type_),
        ).fetchone()
        if packed is None or packed[0] is None:
            return found
        at = (np.frombuffer(bytes(packed[0]), ">i8") - 1).tolist()
        ids = np.frombuffer(bytes(packed[1]), ">i8").tolist()
        return {listed[i]: attr_id for i, attr_id in zip(at, ids, strict=True)}
    # SQLite: every run x every path, kept when asked for (an index seek per combination)
    run_list = sorted({pk for pk, _ in pairs})
    path_list = sorted({path for _, path in pairs})
    for run_part in _parts(run_list, 400):
        for path_part in _parts(path_list, 400):
            for attr_id, run_pk, path in conn.execute(
                f"SELECT id, run_id, path FROM attributes WHERE run_id IN {_LIST} "
                f"AND path IN {_LIST} AND type = ?",
                (_json(run_part), _json(path_part), type_),
            ):
                key = (run_pk, path)
                if key in pairs:
                    found[key] = attr_id
    return found


def series_attribute(
    conn: Any, run_pk: int, path: str, types: Sequence[str]
) -> tuple[int, str] | None:
    """``(attribute id, type)`` of the run's attribute ``path`` when its type is one of
    ``types``, else None."""
    row = conn.execute(
        f"SELECT id, type FROM attributes WHERE run_id = ? AND path = ? AND type IN {_LIST}",
        (run_pk, path, _json(types)),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


# -- float-series chunks ------------------------------------------------------------------------


class ChunkRow(NamedTuple):
    """One chunk of a float series: ``n`` points with steps ``step_first .. step_last``, the
    first timestamp (ms) and the encoded blobs (:mod:`despina.store.codec`). With
    ``single_blobs=False`` a one-point chunk comes without ``steps`` and ``ts`` (None): its
    step and timestamp are ``step_first`` and ``ts_first``; ``vals`` is always there."""

    attr_id: int
    chunk_id: int
    n: int
    step_first: int
    step_last: int
    ts_first: int
    steps: bytes | None
    vals: bytes
    ts: bytes | None


class ChunkBoundsRow(NamedTuple):
    """The bounds of one chunk (no points): its series, id, point count and step range."""

    attr_id: int
    chunk_id: int
    n: int
    step_first: int
    step_last: int


def chunk_id_ranges(attr_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Chunk id ranges covering the series ``attr_ids``, in order, consecutive ids merged into
    one range (a request for thousands of series of a few runs scans a handful of ranges)."""
    ranges: list[tuple[int, int]] = []
    start = end = -2
    for attr_id in sorted(set(attr_ids)):
        if attr_id == end + 1:
            end = attr_id
            continue
        if start >= 0:
            ranges.append((start << CHUNK_BITS, ((end + 1) << CHUNK_BITS) - 1))
        start = end = attr_id
    if start >= 0:
        ranges.append((start << CHUNK_BITS, ((end + 1) << CHUNK_BITS) - 1))
    return ranges


def _columns(single_blobs: bool) -> str:
    if single_blobs:
        return "c.id, c.n, c.step_first, c.step_last, c.ts_first, c.steps, c.vals, c.ts"
    # a one-point chunk's step and timestamp are its bounds: its other blobs are not sent
    return (
        "c.id, c.n, c.step_first, c.step_last, c.ts_first, "
        "CASE WHEN c.n > 1 THEN c.steps END, c.vals, CASE WHEN c.n > 1 THEN c.ts END"
    )


def _chunk_rows(rows: Iterable[Sequence[Any]]) -> list[ChunkRow]:
    return [
        ChunkRow(cid >> CHUNK_BITS, cid, n, first, last, ts_first, steps, vals, ts)
        for cid, n, first, last, ts_first, steps, vals, ts in rows
    ]


def _range_join(ranges: Sequence[tuple[int, int]]) -> tuple[str, list[int]]:
    """``WITH w(lo, hi) AS (VALUES ...)`` of chunk id ranges, and its parameters."""
    values_sql = ", ".join("(?, ?)" for _ in ranges)
    return f"WITH w(lo, hi) AS (VALUES {values_sql}) ", [b for pair in ranges for b in pair]


def chunk_rows(
    conn: Any, attr_ids: Iterable[int], lo: int, hi: int, *, single_blobs: bool = True
) -> list[ChunkRow]:
    """The chunks of the series ``attr_ids`` holding steps within ``[lo, hi]`` (whole, not
    cut to the window), in no guaranteed order (in practice: by series, then step)."""
    out: list[ChunkRow] = []
    for part in _parts(chunk_id_ranges(attr_ids), _RANGES_PER_STATEMENT):
        head, params = _range_join(part)
        out += _chunk_rows(
            conn.execute(
                f"{head}SELECT {_columns(single_blobs)} FROM w JOIN chunks c "
                "ON c.id BETWEEN w.lo AND w.hi WHERE c.step_last >= ? AND c.step_first <= ?",
                (*params, lo, hi),
            )
        )
    return out


def chunk_rows_by_id(
    conn: Any, chunk_ids: Sequence[int], *, single_blobs: bool = True
) -> list[ChunkRow]:
    """The chunks ``chunk_ids`` (those that exist), in no guaranteed order."""
    out: list[ChunkRow] = []
    for part in _parts(list(chunk_ids), _IDS_PER_STATEMENT):
        out += _chunk_rows(
            conn.execute(
                f"SELECT {_columns(single_blobs)} FROM chunks c WHERE c.id IN {_LIST}",
                (_json(part),),
            )
        )
    return out


def chunk_bounds_rows(conn: Any, attr_ids: Iterable[int], lo: int, hi: int) -> list[ChunkBoundsRow]:
    """The bounds of the chunks of the series ``attr_ids`` holding steps within ``[lo, hi]``
    (their blobs are not read), in no guaranteed order."""
    out: list[ChunkBoundsRow] = []
    for part in _parts(chunk_id_ranges(attr_ids), _RANGES_PER_STATEMENT):
        head, params = _range_join(part)
        out += [
            ChunkBoundsRow(cid >> CHUNK_BITS, cid, n, first, last)
            for cid, n, first, last in conn.execute(
                f"{head}SELECT c.id, c.n, c.step_first, c.step_last FROM w JOIN chunks c "
                "ON c.id BETWEEN w.lo AND w.hi WHERE c.step_last >= ? AND c.step_first <= ?",
                (*params, lo, hi),
            )
        ]
    return out


def chunk_steps(conn: Any, chunk_id: int) -> Int64s:
    """The steps of one chunk, decoded (empty when there is no such chunk); its values and
    timestamps are not read."""
    row = conn.execute(
        "SELECT n, step_first, steps FROM chunks WHERE id = ?", (chunk_id,)
    ).fetchone()
    if row is None:
        return np.empty(0, np.int64)
    n, first, steps = row
    return np.array([first], np.int64) if n == 1 else decode_ints(bytes(steps), n)


# -- previews -----------------------------------------------------------------------------------


PreviewRow = tuple[int, int, float | None, float]
"""``(step, ts, value, completion)`` of one preview point; a None value is NaN."""


def preview_rows(
    conn: Any, attr_ids: Sequence[int], lo: int | None = None, hi: int | None = None
) -> dict[int, list[PreviewRow]]:
    """Preview points of float series, per attribute id (those that have any) in step order,
    steps within ``[lo, hi]`` (None: unbounded)."""
    out: dict[int, list[PreviewRow]] = {}
    low = -MAX_STEP if lo is None else lo
    high = MAX_STEP if hi is None else hi
    for part in _parts(sorted(set(attr_ids)), _IDS_PER_STATEMENT):
        for attr_id, step, ts, value, completion in conn.execute(
            "SELECT attr_id, step, ts, value, completion FROM previews "
            f"WHERE attr_id IN {_LIST} AND step BETWEEN ? AND ? ORDER BY attr_id, step",
            (_json(part), low, high),
        ):
            out.setdefault(int(attr_id), []).append((step, ts, value, completion))
    return out


def attrs_with_previews(conn: Any, attr_ids: Sequence[int]) -> set[int]:
    """The attribute ids among ``attr_ids`` that have preview points."""
    if not attr_ids:
        return set()
    wanted = set(attr_ids)
    if len(wanted) > 1600:
        # previews are rare: one pass over the table beats long id lists
        return {int(a) for (a,) in conn.execute("SELECT DISTINCT attr_id FROM previews")} & wanted
    return {
        int(a)
        for (a,) in conn.execute(
            f"SELECT DISTINCT attr_id FROM previews WHERE attr_id IN {_LIST}",
            (_json(sorted(wanted)),),
        )
    }


def preview_step_span(
    conn: Any, attr_id: int, lo: int, hi: int, after: int
) -> tuple[int, int] | None:
    """The smallest and largest step of the series' preview points within ``[lo, hi]`` and
    past ``after``; None when it has none."""
    low, high = conn.execute(
        "SELECT MIN(step), MAX(step) FROM previews "
        "WHERE attr_id = ? AND step BETWEEN ? AND ? AND step > ?",
        (attr_id, lo, hi, after),
    ).fetchone()
    return None if high is None else (int(low), int(high))


# -- string, histogram and file series ----------------------------------------------------------


def series_point_rows(
    conn: Any, attr_id: int, lo: int, hi: int, *, descending: bool, limit: int
) -> Iterator[tuple[int, int, str]]:
    """``(step, ts, value)`` of the series' points with steps within ``[lo, hi]``, in step
    order (``descending``: newest first), at most ``limit``. Rows are fetched as the caller
    iterates: a caller that stops early reads no further."""
    order = "DESC" if descending else "ASC"
    cursor = conn.execute(
        "SELECT step, ts, value FROM points WHERE attr_id = ? AND step BETWEEN ? AND ? "
        f"ORDER BY step {order} LIMIT ?",
        (attr_id, lo, hi, limit),
    )
    yield from cursor


# -- float series as whole arrays ---------------------------------------------------------------


class SeriesPoints(NamedTuple):
    """Points of one float series in step order: micro-steps, values, timestamps (ms)."""

    steps: Int64s
    values: npt.NDArray[np.float64]
    timestamps: Int64s


_ARITH_CHUNK = np.dtype([("code", "u1"), ("first", "<i8"), ("delta", "<i8")])
"""A first-and-delta blob (codec byte 1): 17 bytes whatever the chunk's size."""


def _decode_joined(blob: bytes, lengths: Int64s, ns: Int64s) -> Int64s:
    """The int columns of consecutive chunks from their joined blobs (``lengths`` bytes and
    ``ns`` points each): regular chunks (the common case) without a call per chunk."""
    total = int(ns.sum())
    if len(ns) and bool((lengths == _ARITH_CHUNK.itemsize).all()):
        head = np.frombuffer(blob, _ARITH_CHUNK, count=len(ns))
        if bool((head["code"] == 1).all()):
            first, delta = head["first"].astype(np.int64), head["delta"].astype(np.int64)
            delta = np.where(ns == 1, 0, delta)  # a one-point chunk's delta is meaningless
            multi = ns > 1
            d = int(delta[multi][0]) if multi.any() else 0
            if (
                d != 0
                and bool((delta[multi] == d).all())
                and bool((first[1:] == first[:-1] + d * ns[:-1]).all())
            ):  # one progression across the chunks
                return first[0] + d * np.arange(total, dtype=np.int64)
            starts = np.cumsum(ns) - ns
            return np.repeat(first - delta * starts, ns) + np.repeat(delta, ns) * np.arange(
                total, dtype=np.int64
            )
    offsets = np.cumsum(lengths) - lengths
    view = memoryview(blob)
    return np.concatenate(
        [
            decode_ints(bytes(view[o : o + length]), n)
            for o, length, n in zip(offsets.tolist(), lengths.tolist(), ns.tolist(), strict=True)
        ]
        or [np.empty(0, np.int64)]
    )


def series_chunk_points(
    conn: Any,
    attr_ids: Iterable[int] = (),
    lo: int = -MAX_STEP,
    hi: int = MAX_STEP,
    *,
    chunk_ids: Sequence[int] | None = None,
) -> dict[int, SeriesPoints]:
    """Per series among ``attr_ids`` (those with any), the points of its chunks holding steps
    within ``[lo, hi]``, joined in step order; with ``chunk_ids``, the points of those chunks
    only. Chunks come whole: points just outside the window may come too.

    A series' blobs are joined once: its values are one buffer, its steps and timestamps are
    decoded at once when regular (no call per chunk). Joining the blobs on PostgreSQL's side
    (``string_agg``) was measured slower: the server's cost grew more than the client's fell.
    """
    parts: dict[int, tuple[Int64s, bytes, Int64s, bytes, bytes, Int64s]] = {}
    rows = (
        chunk_rows_by_id(conn, chunk_ids)
        if chunk_ids is not None
        else chunk_rows(conn, attr_ids, lo, hi)
    )
    grouped: dict[int, list[ChunkRow]] = {}
    for row in rows:
        grouped.setdefault(row.attr_id, []).append(row)
    for attr_id, chunks in grouped.items():
        if any(a.step_first > b.step_first for a, b in itertools.pairwise(chunks)):
            chunks.sort(key=lambda r: r.step_first)
        steps_blobs = [r.steps or b"" for r in chunks]
        ts_blobs = [r.ts or b"" for r in chunks]
        parts[attr_id] = (
            np.fromiter((r.n for r in chunks), np.int64, len(chunks)),
            b"".join(steps_blobs),
            np.fromiter(map(len, steps_blobs), np.int64, len(chunks)),
            b"".join(r.vals for r in chunks),
            b"".join(ts_blobs),
            np.fromiter(map(len, ts_blobs), np.int64, len(chunks)),
        )
    out: dict[int, SeriesPoints] = {}
    for attr_id, (ns, steps, steps_len, vals, ts, ts_len) in parts.items():
        total = int(ns.sum())
        out[attr_id] = SeriesPoints(
            _decode_joined(steps, steps_len, ns),
            np.frombuffer(vals, "<f8", count=total),
            _decode_joined(ts, ts_len, ns),
        )
    return out
