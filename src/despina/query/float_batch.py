"""Float-series points of many series at once, for the query service's batch API.

A request names thousands of ``(run, path, lineage mode, previews)`` series; their attribute
ids are resolved in a few ``IN`` queries and their chunks read with one range join per few
hundred id ranges, so the cost per series is microseconds. Steps are micro-steps
(spec/query-api.md §10 lineage, §11 previews).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.query.lineage import LINEAGE_OWN, lineage_links
from despina.store.codec import decode_floats, decode_ints
from despina.store.series import LineageLink
from despina.store.sql.series_reads import (
    ChunkRow,
    PreviewRow,
    attrs_with_previews,
    chunk_bounds_rows,
    chunk_rows,
    chunk_rows_by_id,
    chunk_steps,
    preview_rows,
    series_chunk_points,
    series_ids,
)

__all__ = [
    "ChunkBounds",
    "FlatSeries",
    "FloatSeries",
    "LineagePart",
    "PreviewRow",
    "attribute_ids",
    "attrs_with_previews",
    "chunk_bounds",
    "chunk_steps",
    "float_series_batch",
    "float_series_flat",
    "lineage_parts",
    "part_edge",
    "part_span",
    "read_previews",
]

Int64s = npt.NDArray[np.int64]
Float64s = npt.NDArray[np.float64]

_DOUBLE = struct.Struct("<d")
MAX_STEP = 2**62


@dataclass(slots=True)
class FloatSeries:
    """Points of one float series in ascending step order (previews last)."""

    steps: Int64s
    values: Float64s
    timestamps: Int64s
    preview: npt.NDArray[np.bool_] | None = None
    completion: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def take(self, index: slice | npt.NDArray[np.intp]) -> FloatSeries:
        return FloatSeries(
            self.steps[index],
            self.values[index],
            self.timestamps[index],
            None if self.preview is None else self.preview[index],
            None if self.completion is None else self.completion[index],
        )


_EMPTY = FloatSeries(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))


def attribute_ids(conn: Any, pairs: set[tuple[int, str]], type_: str) -> dict[tuple[int, str], int]:
    """Attribute ids of ``(run pk, path)`` pairs of one type."""
    return series_ids(conn, pairs, type_)


ChunkEntry = tuple[int, int, Int64s | int, Float64s | float, Int64s | int]


def _read_chunks(
    conn: Any,
    attr_ids: Sequence[int],
    lo: int,
    hi: int,
    chunk_ids: Sequence[int] | None = None,
) -> dict[int, list[ChunkEntry]]:
    """Chunks of many series within ``[lo, hi]`` (with ``chunk_ids``: only those chunks): per
    attribute id, ``(first, last, steps, values, timestamps)`` in order (the store joins a
    series' chunks into one entry)."""
    found = series_chunk_points(conn, attr_ids, lo, hi, chunk_ids=chunk_ids)
    return {
        attr_id: [(int(p.steps[0]), int(p.steps[-1]), p.steps, p.values, p.timestamps)]
        for attr_id, p in found.items()
        if len(p.steps)
    }


_FIRST = operator.itemgetter(0)


def _in_step_order(by_attr: dict[int, list[tuple[int, int, Any, Any, Any]]]) -> None:
    """Sort each series' chunks by step. The range joins have no ``ORDER BY``: SQLite would
    copy every row, blobs included, into a temporary B-tree to sort it, and the rows already
    come in chunk-id (= step) order in practice, which the sort checks in linear time."""
    for entries in by_attr.values():
        if len(entries) > 1:
            entries.sort(key=_FIRST)


@dataclass(slots=True)
class _Chunks:
    """Chunks of many series: single-point chunks as parallel lists, the rest per attribute."""

    single_attr: list[int]
    single_step: list[int]
    single_ts: list[int]
    single_vals: list[bytes]
    multi: dict[int, list[tuple[int, int, Int64s | int, Float64s | float, Int64s | int]]]


def _read_chunks_split(
    conn: Any,
    attr_ids: Sequence[int],
    lo: int,
    hi: int,
    chunk_ids: Sequence[int] | None = None,
) -> _Chunks:
    """Like :func:`_read_chunks`, keeping single-point chunks of single-chunk series apart;
    with ``chunk_ids``, only those chunks."""
    if chunk_ids is not None:
        return _split(chunk_rows_by_id(conn, chunk_ids, single_blobs=False))
    return _split(chunk_rows(conn, attr_ids, lo, hi, single_blobs=False))


def _split(rows: list[ChunkRow]) -> _Chunks:
    result = _Chunks([], [], [], [], {})
    if not rows:
        return result
    counts: dict[int, int] = {}
    for row in rows:
        counts[row.attr_id] = counts.get(row.attr_id, 0) + 1
    for attr_id, _, n, first, last, ts_first, steps, vals, ts in rows:
        if n == 1 and counts[attr_id] == 1:
            result.single_attr.append(attr_id)
            result.single_step.append(first)
            result.single_ts.append(ts_first)
            result.single_vals.append(vals)
        elif n == 1:
            result.multi.setdefault(attr_id, []).append(
                (first, last, first, _DOUBLE.unpack_from(vals)[0], ts_first)
            )
        else:
            assert steps is not None and ts is not None
            result.multi.setdefault(attr_id, []).append(
                (first, last, decode_ints(steps, n), decode_floats(vals, n), decode_ints(ts, n))
            )
    _in_step_order(result.multi)
    return result


Window = tuple[int, int]
"""``(lo, hi)`` micro-steps one request reads of its series."""


ChunkBounds = tuple[list[int], list[int], list[int], list[int]]
"""The chunks of one series as columns ``(chunk ids, point counts, first steps, last steps)``,
in step order (a series' chunks do not overlap, so both step columns are sorted)."""


def chunk_bounds(conn: Any, attr_ids: Iterable[int], lo: int, hi: int) -> dict[int, ChunkBounds]:
    """Per attribute id, the bounds of its chunks holding steps within ``[lo, hi]``: only the
    chunk rows' bound columns are read, never their points."""
    bounds: dict[int, ChunkBounds] = {}
    for attr_id, chunk_id, n, first, last in chunk_bounds_rows(conn, attr_ids, lo, hi):
        ids, counts, firsts, lasts = bounds.setdefault(attr_id, ([], [], [], []))
        ids.append(chunk_id)
        counts.append(n)
        firsts.append(first)
        lasts.append(last)
    for ids, counts, firsts, lasts in bounds.values():
        if any(a > b for a, b in itertools.pairwise(firsts)):
            order = sorted(range(len(ids)), key=firsts.__getitem__)
            for column in (ids, counts, firsts, lasts):
                column[:] = [column[k] for k in order]
    return bounds


def _needed_chunks(
    conn: Any,
    attr_of: Sequence[int | None],
    windows: Sequence[Window],
    limit: int,
    *,
    descending: bool,
) -> list[int]:
    """The chunks holding, for each request ``i`` (series ``attr_of[i]``), its first ``limit``
    points of ``windows[i]`` in the requested order: the tails of long series without their
    bodies. Only chunk bounds are read here, never their points."""
    attr_ids = sorted({a for a in attr_of if a is not None})
    lo = min((w[0] for w in windows), default=0)
    hi = max((w[1] for w in windows), default=-1)
    bounds = chunk_bounds(conn, attr_ids, lo, hi)
    needed: set[int] = set()
    for attr_id, (w_lo, w_hi) in zip(attr_of, windows, strict=True):
        found = bounds.get(attr_id) if attr_id is not None else None
        if not found or w_lo > w_hi:
            continue
        ids, counts, firsts, lasts = found
        if descending:
            k, stop, move = bisect.bisect_right(firsts, w_hi) - 1, -1, -1
        else:
            k, stop, move = bisect.bisect_left(lasts, w_lo), len(ids), 1
        sure = 0  # points certainly inside the window: whole chunks only
        while k != stop and sure < limit and firsts[k] <= w_hi and lasts[k] >= w_lo:
            needed.add(ids[k])
            if w_lo <= firsts[k] and lasts[k] <= w_hi:
                sure += counts[k]
            k += move
    return sorted(needed)


LineagePart = tuple[ChunkBounds, int]
"""The chunk bounds of one run's series in a lineage and the highest step it contributes."""


def _lineage_window_chunks(
    parts: Sequence[LineagePart], window: Window, limit: int, *, descending: bool
) -> list[int]:
    """The chunks holding the first ``limit`` points of ``window`` (in the requested order)
    of a series joined from ``parts`` (ancestors first, each up to its step): the parts are
    walked in order (descending: from the run itself back), each within the window cut at its
    step, until whole chunks inside make up ``limit`` points."""
    w_lo, w_hi = window
    needed: list[int] = []
    sure = 0  # points certainly inside the window: whole chunks only
    for (ids, counts, firsts, lasts), upper in reversed(parts) if descending else parts:
        p_hi = min(w_hi, upper)
        if w_lo > p_hi:
            continue
        if descending:
            k, stop, move = bisect.bisect_right(firsts, p_hi) - 1, -1, -1
        else:
            k, stop, move = bisect.bisect_left(lasts, w_lo), len(ids), 1
        while k != stop and sure < limit and firsts[k] <= p_hi and lasts[k] >= w_lo:
            needed.append(ids[k])
            if w_lo <= firsts[k] and lasts[k] <= p_hi:
                sure += counts[k]
            k += move
        if sure >= limit:
            break
    return needed


def lineage_parts(
    links: Sequence[LineageLink],
    path: str,
    ids: dict[tuple[int, str], int],
    bounds: dict[int, ChunkBounds],
    hi: int,
) -> list[LineagePart]:
    """The parts of ``path`` along ``links`` (a run first, then its ancestors) in the order a
    read joins them (ancestors first), each with the step it stops at; runs without chunks in
    range are left out."""
    parts: list[LineagePart] = []
    for link in reversed(links):
        attr_id = ids.get((link.run_pk, path))
        found = bounds.get(attr_id) if attr_id is not None else None
        if found:
            parts.append((found, hi if link.upper_step is None else min(hi, link.upper_step)))
    return parts


def part_span(part: LineagePart, lo: int) -> tuple[int, int]:
    """The first and last index of the part's chunks that may hold steps in ``[lo, upper]``
    (none when the first is past the last)."""
    (_, _, firsts, lasts), upper = part
    return bisect.bisect_left(lasts, lo), bisect.bisect_right(firsts, upper) - 1


def part_edge(conn: Any, part: LineagePart, lo: int, *, first: bool) -> int | None:
    """The first (or last) step of a part within ``[lo, upper]``, None when it has none: a
    chunk bound, unless that chunk is cut by ``lo`` or the part's step (then it is decoded)."""
    (ids, _, firsts, lasts), upper = part
    k0, k1 = part_span(part, lo)
    if k0 > k1:
        return None
    k = k0 if first else k1
    if lo <= firsts[k] and lasts[k] <= upper:
        return firsts[k] if first else lasts[k]
    steps = chunk_steps(conn, ids[k])
    inside = steps[(steps >= lo) & (steps <= upper)]
    if not len(inside):  # only when one chunk is cut at both ends: the part is then empty
        return None
    return int(inside[0] if first else inside[-1])


def _lineage_last_step(conn: Any, parts: Sequence[LineagePart], lo: int) -> int | None:
    """The last committed step at or above ``lo`` of a series joined from ``parts``, as a full
    read ends (its last non-empty part's last point), from chunk bounds."""
    for part in reversed(parts):
        last = part_edge(conn, part, lo, first=False)
        if last is not None:
            return last
    return None


def _assemble(
    chunks: list[tuple[int, int, Int64s | int, Float64s | float, Int64s | int]],
    lo: int,
    hi: int,
) -> FloatSeries:
    if len(chunks) == 1 and isinstance(chunks[0][2], int):
        first, _, step, value, stamp = chunks[0]
        if lo <= first <= hi:
            return FloatSeries(
                np.array([step], np.int64),
                np.array([value], np.float64),
                np.array([stamp], np.int64),
            )
        return _EMPTY
    steps_parts: list[Int64s] = []
    values_parts: list[Float64s] = []
    ts_parts: list[Int64s] = []
    for first, last, steps, values, stamps in chunks:
        if isinstance(steps, int):
            if lo <= steps <= hi:
                steps_parts.append(np.array([steps], np.int64))
                values_parts.append(np.array([values], np.float64))
                ts_parts.append(np.array([stamps], np.int64))
            continue
        assert not isinstance(values, float) and not isinstance(stamps, int)
        if first < lo or last > hi:
            keep = (steps >= lo) & (steps <= hi)
            steps, values, stamps = steps[keep], values[keep], stamps[keep]
        steps_parts.append(steps)
        values_parts.append(values)
        ts_parts.append(stamps)
    if not steps_parts:
        return _EMPTY
    if len(steps_parts) == 1:
        return FloatSeries(steps_parts[0], values_parts[0], ts_parts[0])
    return FloatSeries(
        np.concatenate(steps_parts), np.concatenate(values_parts), np.concatenate(ts_parts)
    )


def read_previews(
    conn: Any,
    attr_ids: Sequence[int],
    lo: int | None = None,
    hi: int | None = None,
) -> dict[int, list[PreviewRow]]:
    """Preview points of float series, per attribute id in step order (within ``[lo, hi]``)."""
    return preview_rows(conn, attr_ids, lo, hi)


def float_series_batch(
    conn: Any,
    wanted: Sequence[tuple[int, str, str, bool]],
    lo: int,
    hi: int,
    *,
    windows: Sequence[Window] | None = None,
    limit: int | None = None,
    descending: bool = False,
) -> list[FloatSeries | None]:
    """Points of many float series ``(run pk, path, lineage mode, include previews)``.

    Steps are in micro-steps, within ``[lo, hi]``. None marks a series that does not exist for
    the run (not even through its lineage).

    With ``windows`` (per series, within ``[lo, hi]``) and ``limit``, only the chunks holding
    the first ``limit`` points of each window in the requested order are read, along the
    lineage (the parent's points up to the fork step, then the run's own): a series may come
    back with more points than those, never with fewer, and its previews are the same as a
    full read's (they follow the last committed step, taken from chunk bounds).
    """
    modes: dict[str, set[int]] = {}
    for pk, _, mode, _ in wanted:
        modes.setdefault(mode, set()).add(pk)
    links_by_mode = {mode: lineage_links(conn, pks, mode) for mode, pks in modes.items()}
    pairs: set[tuple[int, str]] = set()
    for pk, path, mode, _ in wanted:
        for link in links_by_mode[mode].get(pk, []):
            pairs.add((link.run_pk, path))
    ids = attribute_ids(conn, pairs, "float_series")
    last_committed: dict[int, int | None] = {}  # windowed reads: per series with previews
    if windows is not None and limit is not None:
        bounds = chunk_bounds(conn, sorted(set(ids.values())), lo, hi)
        needed: set[int] = set()
        for i, (pk, path, mode, with_previews) in enumerate(wanted):
            lineage = lineage_parts(links_by_mode[mode].get(pk, []), path, ids, bounds, hi)
            needed.update(_lineage_window_chunks(lineage, windows[i], limit, descending=descending))
            if with_previews:
                last_committed[i] = _lineage_last_step(conn, lineage, lo)
        chunks = _read_chunks(conn, (), lo, hi, sorted(needed))
    else:
        chunks = _read_chunks(conn, sorted(set(ids.values())), lo, hi)
    preview_ids = sorted({ids[(pk, path)] for pk, path, _, p in wanted if p and (pk, path) in ids})
    previews = read_previews(conn, preview_ids, lo, hi) if preview_ids else {}
    out: list[FloatSeries | None] = []
    for i, (pk, path, mode, with_previews) in enumerate(wanted):
        links = links_by_mode[mode].get(pk, [])
        parts: list[FloatSeries] = []
        exists = False
        for link in reversed(links):  # ancestors hold the earlier steps
            attr_id = ids.get((link.run_pk, path))
            if attr_id is None:
                continue
            exists = True
            upper = hi if link.upper_step is None else min(hi, link.upper_step)
            found = chunks.get(attr_id)
            if found and upper >= lo:
                series = _assemble(found, lo, upper)
                if len(series):
                    parts.append(series)
        if not exists:
            out.append(None)
            continue
        own_id = ids.get((pk, path))
        extra = previews.get(own_id) if (with_previews and own_id is not None) else None
        if len(parts) == 1 and not extra:
            result = parts[0]
        elif not parts and not extra:
            result = _EMPTY
        else:
            result = FloatSeries(
                np.concatenate([p.steps for p in parts]) if parts else np.empty(0, np.int64),
                np.concatenate([p.values for p in parts]) if parts else np.empty(0, np.float64),
                np.concatenate([p.timestamps for p in parts]) if parts else np.empty(0, np.int64),
            )
        if with_previews:
            committed = len(result)
            preview = np.zeros(committed + len(extra or ()), np.bool_)
            completion = np.ones(committed + len(extra or ()), np.float32)
            if extra:
                if i in last_committed:  # a windowed read: what a full read would end at
                    last = last_committed[i]
                    after = -1 if last is None else last
                else:
                    after = int(result.steps[-1]) if committed else -1
                extra = [p for p in extra if p[0] > after]
                preview = preview[: committed + len(extra)]
                completion = completion[: committed + len(extra)]
                result = FloatSeries(
                    np.concatenate([result.steps, np.array([p[0] for p in extra], np.int64)]),
                    np.concatenate(
                        [
                            result.values,
                            np.array(
                                [math.nan if p[2] is None else p[2] for p in extra], np.float64
                            ),
                        ]
                    ),
                    np.concatenate([result.timestamps, np.array([p[1] for p in extra], np.int64)]),
                )
                preview[committed:] = True
                completion[committed:] = [p[3] for p in extra]
            result.preview = preview
            result.completion = completion
        out.append(result)
    return out


@dataclass(slots=True)
class FlatSeries:
    """Points of many float series in one set of arrays: series ``i`` holds the points
    ``[starts[i], starts[i] + counts[i])``; ``exists[i]`` is false for a missing series."""

    steps: Int64s
    values: Float64s
    timestamps: Int64s
    preview: npt.NDArray[np.bool_] | None
    completion: npt.NDArray[np.float32] | None
    starts: Int64s
    counts: Int64s
    exists: npt.NDArray[np.bool_]

    def series(self, i: int) -> FloatSeries:
        a, n = int(self.starts[i]), int(self.counts[i])
        return FloatSeries(
            self.steps[a : a + n],
            self.values[a : a + n],
            self.timestamps[a : a + n],
            None if self.preview is None else self.preview[a : a + n],
            None if self.completion is None else self.completion[a : a + n],
        )

    @staticmethod
    def of(series: Sequence[FloatSeries | None]) -> FlatSeries:
        present = [s for s in series if s is not None]
        counts = np.array([0 if s is None else len(s) for s in series], np.int64)
        starts = np.zeros(len(series), np.int64)
        if len(series):
            starts[1:] = np.cumsum(counts)[:-1]
        with_preview = any(s.preview is not None for s in present)

        def cat(arrays: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
            return np.concatenate(arrays) if arrays else np.empty(0, dtype)

        return FlatSeries(
            cat([s.steps for s in present], np.int64),
            cat([s.values for s in present], np.float64),
            cat([s.timestamps for s in present], np.int64),
            cat(
                [
                    s.preview if s.preview is not None else np.zeros(len(s), np.bool_)
                    for s in present
                ],
                np.bool_,
            )
            if with_preview
            else None,
            cat(
                [
                    s.completion if s.completion is not None else np.ones(len(s), np.float32)
                    for s in present
                ],
                np.float32,
            )
            if with_preview
            else None,
            starts,
            counts,
            np.array([s is not None for s in series], np.bool_),
        )


def float_series_flat(
    conn: Any,
    wanted: Sequence[tuple[int, str, str, bool]],
    lo: int,
    hi: int,
    *,
    windows: Sequence[Window] | None = None,
    limit: int | None = None,
    descending: bool = False,
) -> FlatSeries:
    """:func:`float_series_batch` as flat arrays, with a fast path for many small series.

    The fast path (no previews, no run of the request has inherited points) reads every
    single-point chunk of the request without a NumPy call per series: thousands of one-step
    series (a sweep of many runs) cost microseconds each.

    With ``windows`` (per series, within ``[lo, hi]``) and ``limit``, only the first ``limit``
    points of each window in the requested order are needed: only the chunks holding them are
    read (series may come back with more points than that, never with fewer of those), so the
    tail of a long series costs its tail; series with previews or inherited points too
    (:func:`float_series_batch`).
    """
    fast = not any(preview for *_, preview in wanted)
    if fast:
        modes: dict[str, set[int]] = {}
        for pk, _, mode, _ in wanted:
            modes.setdefault(mode, set()).add(pk)
        for mode, pks in modes.items():
            if mode != LINEAGE_OWN and any(
                len(links) > 1 for links in lineage_links(conn, pks, mode).values()
            ):
                fast = False
                break
    if not fast:  # previews or inherited points: windowed along each lineage
        return FlatSeries.of(
            float_series_batch(
                conn, wanted, lo, hi, windows=windows, limit=limit, descending=descending
            )
        )
    pairs = {(pk, path) for pk, path, _, _ in wanted}
    ids = attribute_ids(conn, pairs, "float_series")
    chunk_ids = None
    if windows is not None and limit is not None:
        attr_of = [ids.get((pk, path)) for pk, path, _, _ in wanted]
        chunk_ids = _needed_chunks(conn, attr_of, windows, limit, descending=descending)
    chunks = _read_chunks_split(conn, sorted(set(ids.values())), lo, hi, chunk_ids)
    single_at = dict(zip(chunks.single_attr, range(len(chunks.single_attr)), strict=True))
    n = len(wanted)
    exists = np.zeros(n, np.bool_)
    counts = np.zeros(n, np.int64)
    picks: list[int] = []
    arrays: dict[int, FloatSeries] = {}
    for i, (pk, path, _, _) in enumerate(wanted):
        attr_id = ids.get((pk, path))
        if attr_id is None:
            continue
        exists[i] = True
        at = single_at.get(attr_id)
        if at is not None:
            counts[i] = 1
            picks.append(at)
            continue
        found = chunks.multi.get(attr_id)
        if found:
            series = _assemble(found, lo, hi)
            counts[i] = len(series)
            arrays[i] = series
    index = np.asarray(picks, dtype=np.int64)
    scalar_steps = np.asarray(chunks.single_step, dtype=np.int64)[index]
    scalar_ts = np.asarray(chunks.single_ts, dtype=np.int64)[index]
    scalar_values = (
        np.frombuffer(b"".join(chunks.single_vals), dtype="<f8").astype(np.float64)[index]
        if chunks.single_vals
        else np.empty(0, np.float64)
    )
    starts = np.zeros(n, np.int64)
    if n:
        starts[1:] = np.cumsum(counts)[:-1]
    if not arrays:
        return FlatSeries(
            scalar_steps, scalar_values, scalar_ts, None, None, starts, counts, exists
        )
    series_list: list[FloatSeries | None] = []
    k = 0
    for i in range(n):
        if not exists[i]:
            series_list.append(None)
        elif i in arrays:
            series_list.append(arrays[i])
        elif counts[i]:
            series_list.append(
                FloatSeries(scalar_steps[k : k + 1], scalar_values[k : k + 1], scalar_ts[k : k + 1])
            )
            k += 1
        else:
            series_list.append(_EMPTY)
    return FlatSeries.of(series_list)
