"""Reading series points for the query service: lineage modes, step ranges, tails, previews.

Points come back as flat NumPy columns (:class:`FloatBatch`) so that frames are built without
a Python object per point. A float series whose aggregates say it holds exactly one committed
point (over its full lineage) is answered from those aggregates without reading chunks: the
common case of a metric logged once per run costs no chunk reads at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from despina.query.float_batch import attrs_with_previews, float_series_batch
from despina.query.float_batch import read_previews as read_preview_rows
from despina.query.lineage import lineage_links
from despina.store.schema import ATTRIBUTE_TYPES
from despina.store.series import (
    FloatPoints,
    LineageLink,
    read_float_points,
    read_float_tail,
)
from despina.store.sql.series_reads import series_attribute, series_point_rows

__all__ = [
    "POINT_SERIES_TYPES",
    "FloatBatch",
    "LineageMode",
    "PointRows",
    "SeriesRequest",
    "SeriesSet",
    "StepRange",
    "attr_chain",
    "effective_links",
    "point_series",
    "read_float_series",
    "read_point_series",
    "read_previews",
    "step_bound",
]

LineageMode = Literal["full", "experiment", "own"]
"""Which ancestors contribute points: all, those of the same experiment (walking up stops at
the first ancestor of another experiment), or none (spec/query-api.md §10.2)."""

MICRO = 1_000_000
MAX_STEP = 2**62


@dataclass(frozen=True, slots=True)
class StepRange:
    """An inclusive step range in the API's float steps; ``None`` ends are open."""

    start: float | None = None
    end: float | None = None

    def micro_bounds(self) -> tuple[int | None, int | None]:
        """Micro-step bounds one micro-step wider than the range (exact filtering follows)."""
        lo = None if self.start is None else math.floor(self.start * MICRO) - 1
        hi = None if self.end is None else math.ceil(self.end * MICRO) + 1
        return (None if lo is None or lo < 0 else lo), hi

    def mask(self, steps: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_] | None:
        """Which ``steps`` lie in the range (``None``: all of them)."""
        if self.start is None and self.end is None:
            return None
        keep = np.ones(len(steps), dtype=bool)
        if self.start is not None:
            keep &= steps >= self.start
        if self.end is not None:
            keep &= steps <= self.end
        return keep


def step_bound(step: float, *, lower: bool, strict: bool = False) -> int:
    """The micro-step bound of a float step: ``>= step`` (lower) or ``<= step`` (upper).

    Steps returned to clients are ``micro / 1e6``; a float within 1e-3 micro-steps of an
    integer micro-step is taken as that micro-step, so bounds round-trip exactly. ``strict``
    excludes the step itself.
    """
    try:
        scaled = float(step) * MICRO
    except OverflowError:  # an int beyond the float range
        scaled = math.inf if step > 0 else -math.inf
    # beyond every storable step (and within SQLite's int64): also finite floats and ints
    # such as 1e300 or 2**64 that a client may send as a bound
    if not math.isfinite(scaled) or abs(scaled) >= 2**62:
        return -(2**62) if (scaled < 0) else 2**62
    nearest = round(scaled)
    if abs(scaled - nearest) < 1e-3:
        bound = int(nearest)
        if strict:
            bound += 1 if lower else -1
        return bound
    return math.ceil(scaled) if lower else math.floor(scaled)


@dataclass(frozen=True, slots=True)
class SeriesRequest:
    """One series of one run, with its own attribute row (``attr_id`` None when the run has no
    row for the path) and that row's aggregates: ``count`` (committed points over the full
    lineage), ``last_step`` (micro), ``last_value``, ``last_ts``."""

    run_pk: int
    parent_pk: int | None
    path: str
    type: str
    attr_id: int | None
    count: int = -1
    last_step: int = -1
    last_value: float = math.nan
    last_ts: int = 0


@dataclass(frozen=True)
class FloatBatch:
    """Points of several float series, concatenated in request order. Series ``i`` owns rows
    ``offsets[i]:offsets[i + 1]``, sorted by step."""

    offsets: npt.NDArray[np.int64]
    steps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.int64]
    is_preview: npt.NDArray[np.bool_]
    completion: npt.NDArray[np.float64]

    def series_index(self) -> npt.NDArray[np.int64]:
        """The series number of every row."""
        counts = np.diff(self.offsets)
        return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def effective_links(
    conn: Any,
    request: SeriesRequest,
    mode: LineageMode,
    memo: dict[int, list[LineageLink]],
) -> list[LineageLink]:
    """The runs whose points form ``request``'s series under ``mode``, the run itself first."""
    if request.parent_pk is None or mode == "own":
        return [LineageLink(request.run_pk, None, None)]
    links = memo.get(request.run_pk)
    if links is None:
        found = lineage_links(conn, [request.run_pk], "full")
        links = memo[request.run_pk] = found.get(request.run_pk, [])
    if not links:
        return links
    if mode == "experiment":
        kept = [links[0]]
        for link in links[1:]:
            if link.experiment_name != links[0].experiment_name:
                break
            kept.append(link)
        return kept
    return links


def attr_chain(
    conn: Any, request: SeriesRequest, links: list[LineageLink]
) -> list[tuple[LineageLink, int]]:
    """``(link, attribute id)`` for every link that has the series, oldest first."""
    found = []
    for link in reversed(links):
        if link.run_pk == request.run_pk and request.attr_id is not None:
            found.append((link, request.attr_id))
            continue
        row = series_attribute(conn, link.run_pk, request.path, (request.type,))
        if row is not None:
            found.append((link, row[0]))
    return found


def read_previews(
    conn: Any, attr_ids: list[int]
) -> dict[int, tuple[list[int], list[int], list[float], list[float]]]:
    """Preview points per attribute id as columns: steps, timestamps, values (NaN for a
    missing value) and completion."""
    out: dict[int, tuple[list[int], list[int], list[float], list[float]]] = {}
    for attr_id, rows in read_preview_rows(conn, attr_ids).items():
        out[attr_id] = (
            [row[0] for row in rows],
            [row[1] for row in rows],
            [math.nan if row[2] is None else row[2] for row in rows],
            [row[3] for row in rows],
        )
    return out


def _own_points(
    conn: Any,
    attr_id: int,
    link: LineageLink,
    bounds: tuple[int | None, int | None],
    tail: int | None,
) -> FloatPoints:
    lo, hi = bounds
    if link.upper_step is not None:
        hi = link.upper_step if hi is None else min(hi, link.upper_step)
    if lo is not None and hi is not None and hi < lo:
        return FloatPoints.empty()
    if tail is not None:
        return read_float_tail(conn, attr_id, tail, lo, hi)
    return read_float_points(conn, attr_id, lo, hi)


@dataclass(frozen=True)
class SeriesSet:
    """Series to read, as columns: container index (into the caller's container list), run
    and parent row ids (-1: root), path codes (into :attr:`paths`), type, own attribute id,
    and the attribute row's aggregates over the full lineage."""

    container: npt.NDArray[np.int64]
    run: npt.NDArray[np.int64]
    parent: npt.NDArray[np.int64]
    path: npt.NDArray[np.int64]
    paths: tuple[str, ...]
    type_code: npt.NDArray[np.int8]
    attr_id: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    last_step: npt.NDArray[np.int64]
    last_value: npt.NDArray[np.float64]
    last_ts: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.run)

    def type_of(self, i: int) -> str:
        """The type name of series ``i``."""
        return ATTRIBUTE_TYPES[int(self.type_code[i])]

    def request(self, i: int) -> SeriesRequest:
        """Series ``i`` as a :class:`SeriesRequest`."""
        parent = int(self.parent[i])
        return SeriesRequest(
            run_pk=int(self.run[i]),
            parent_pk=None if parent < 0 else parent,
            path=self.paths[int(self.path[i])],
            type=self.type_of(i),
            attr_id=int(self.attr_id[i]),
            count=int(self.count[i]),
            last_step=int(self.last_step[i]),
            last_value=float(self.last_value[i]),
            last_ts=int(self.last_ts[i]),
        )


def read_float_series(
    conn: Any,
    series: SeriesSet,
    *,
    mode: LineageMode,
    step_range: StepRange,
    tail_limit: int | None,
    previews: bool,
) -> FloatBatch:
    """Committed (and, with ``previews``, preview) points of float series, in ``series`` order.

    Per series: lineage by ``mode``, then the inclusive ``step_range``, then the last
    ``tail_limit`` points (spec/query-api.md §8.4). Series of exactly one committed point are
    answered from their aggregates when ``mode`` covers the lineage the aggregates cover.
    """
    fast = (series.count == 1) & ((series.parent < 0) | (mode == "full"))
    if previews and fast.any():
        with_previews = attrs_with_previews(conn, series.attr_id[fast].tolist())
        fast &= ~np.isin(series.attr_id, list(with_previews))
    slow = np.flatnonzero(~fast & ((series.count != 0) | previews))
    if not previews and tail_limit is None:
        whole = _read_whole(conn, series, slow.tolist(), mode, step_range)
        return _assemble(series, fast, whole, step_range)
    memo: dict[int, list[LineageLink]] = {}
    chains: dict[int, list[tuple[LineageLink, int]]] = {}
    for at in slow.tolist():
        req = series.request(at)
        chains[at] = attr_chain(conn, req, effective_links(conn, req, mode, memo))
    preview_rows = (
        read_previews(conn, [a for chain in chains.values() for _, a in chain]) if previews else {}
    )
    bounds = step_range.micro_bounds()
    parts: dict[int, _Points] = {}
    for i, chain in chains.items():
        if previews or tail_limit is None:
            points = FloatPoints.concat(
                [_own_points(conn, a, link, bounds, None) for link, a in chain]
            )
        else:
            points = _tail_of_chain(conn, chain, bounds, tail_limit)
        completion = None
        if previews:
            points, completion = _with_previews(points, chain, preview_rows)
        parts[i] = _finish(points, completion, step_range, tail_limit)
    return _assemble(series, fast, parts, step_range)


def _read_whole(
    conn: Any,
    series: SeriesSet,
    at: list[int],
    mode: LineageMode,
    step_range: StepRange,
) -> dict[int, _Points]:
    """Every committed point in ``step_range`` of the series ``at``, read as one batch (the
    same batch read the server's float-series endpoint uses)."""
    if not at:
        return {}
    lo, hi = step_range.micro_bounds()
    wanted = [(int(series.run[i]), series.paths[int(series.path[i])], mode, False) for i in at]
    found = float_series_batch(
        conn, wanted, -MAX_STEP if lo is None else lo, MAX_STEP if hi is None else hi
    )
    parts: dict[int, _Points] = {}
    for i, points in zip(at, found, strict=True):
        whole = (
            FloatPoints.empty()
            if points is None
            else FloatPoints(points.steps, points.values, points.timestamps)
        )
        parts[i] = _finish(whole, None, step_range, None)
    return parts


_Points = tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64] | None,
]
"""Steps (float), values, timestamps and completion (``None``: all committed) of one series."""


def _assemble(
    series: SeriesSet,
    fast: npt.NDArray[np.bool_],
    parts: dict[int, _Points],
    step_range: StepRange,
) -> FloatBatch:
    """Place the one-point series (vectorised) and the read ones into one :class:`FloatBatch`."""
    n = len(series)
    fast_steps = series.last_step[fast] / MICRO
    fast_keep = step_range.mask(fast_steps)
    sizes = np.zeros(n, dtype=np.int64)
    fast_at = np.flatnonzero(fast)
    sizes[fast_at] = 1 if fast_keep is None else fast_keep.astype(np.int64)
    for i, part in parts.items():
        sizes[i] = len(part[0])
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    steps = np.empty(total)
    values = np.empty(total)
    stamps = np.empty(total, dtype=np.int64)
    completion = np.ones(total)
    kept = fast_at if fast_keep is None else fast_at[fast_keep]
    slots = offsets[kept]
    steps[slots] = series.last_step[kept] / MICRO
    values[slots] = series.last_value[kept]
    stamps[slots] = series.last_ts[kept]
    for i, (p_steps, p_values, p_stamps, p_completion) in parts.items():
        at = slice(int(offsets[i]), int(offsets[i + 1]))
        steps[at], values[at], stamps[at] = p_steps, p_values, p_stamps
        if p_completion is not None:
            completion[at] = p_completion
    return FloatBatch(offsets, steps, values, stamps, completion < 1.0, completion)


def _tail_of_chain(
    conn: Any,
    chain: list[tuple[LineageLink, int]],
    bounds: tuple[int | None, int | None],
    tail: int,
) -> FloatPoints:
    """The last ``tail`` points along a chain, reading the newest run first."""
    parts: list[FloatPoints] = []
    found = 0
    for link, attr_id in reversed(chain):
        points = _own_points(conn, attr_id, link, bounds, tail - found)
        parts.append(points)
        found += len(points)
        if found >= tail:
            break
    parts.reverse()
    return FloatPoints.concat(parts)


def _with_previews(
    points: FloatPoints,
    chain: list[tuple[LineageLink, int]],
    preview_rows: dict[int, tuple[list[int], list[int], list[float], list[float]]],
) -> tuple[FloatPoints, npt.NDArray[np.float64]]:
    """Committed points merged with the previews of every run of the chain, in step order;
    the completion column is 1.0 for committed points."""
    extra = []
    for link, attr_id in chain:
        found = preview_rows.get(attr_id)
        if found is None:
            continue
        steps = np.array(found[0], np.int64)
        keep = slice(None) if link.upper_step is None else steps <= link.upper_step
        extra.append(
            (
                steps[keep],
                np.array(found[2])[keep],
                np.array(found[1], np.int64)[keep],
                np.array(found[3])[keep],
            )
        )
    completion = np.ones(len(points))
    if not extra:
        return points, completion
    steps = np.concatenate([points.steps, *[e[0] for e in extra]])
    values = np.concatenate([points.values, *[e[1] for e in extra]])
    stamps = np.concatenate([points.timestamps, *[e[2] for e in extra]])
    completion = np.concatenate([completion, *[e[3] for e in extra]])
    order = np.argsort(steps, kind="stable")
    return FloatPoints(steps[order], values[order], stamps[order]), completion[order]


def _finish(
    points: FloatPoints,
    completion: npt.NDArray[np.float64] | None,
    step_range: StepRange,
    tail_limit: int | None,
) -> _Points:
    steps = points.steps / MICRO
    values, stamps = points.values, points.timestamps
    keep = step_range.mask(steps)
    if keep is not None:
        steps, values, stamps = steps[keep], values[keep], stamps[keep]
        completion = None if completion is None else completion[keep]
    if tail_limit is not None and len(steps) > tail_limit:
        cut = len(steps) - tail_limit
        steps, values, stamps = steps[cut:], values[cut:], stamps[cut:]
        completion = None if completion is None else completion[cut:]
    return steps, values, stamps, completion


@dataclass(frozen=True)
class PointRows:
    """Points of one string, histogram or file series: steps (float), timestamps (ms) and the
    stored text of each value."""

    steps: list[float]
    timestamps: list[int]
    values: list[str]


def read_point_series(
    conn: Any,
    series: SeriesSet,
    *,
    mode: LineageMode,
    step_range: StepRange,
    tail_limit: int | None,
) -> list[PointRows]:
    """Points of string, histogram and file series, per request (§8.5)."""
    memo: dict[int, list[LineageLink]] = {}
    lo, hi = step_range.micro_bounds()
    out = []
    for i in range(len(series)):
        req = series.request(i)
        found = point_series(
            conn,
            effective_links(conn, req, mode, memo),
            req.path,
            -1 if lo is None else lo,
            MAX_STEP if hi is None else hi,
            descending=False,
            limit=MAX_STEP,
            types=(req.type,),
        )
        rows = [] if found is None else found[1]
        steps = [s / MICRO for s, _, _ in rows]
        keep = [
            i
            for i, s in enumerate(steps)
            if (step_range.start is None or s >= step_range.start)
            and (step_range.end is None or s <= step_range.end)
        ]
        if tail_limit is not None:
            keep = keep[-tail_limit:]
        out.append(
            PointRows(
                [steps[i] for i in keep], [rows[i][1] for i in keep], [rows[i][2] for i in keep]
            )
        )
    return out


POINT_SERIES_TYPES = ("string_series", "histogram_series", "file_series")


def point_series(
    conn: Any,
    links: list[LineageLink],
    path: str,
    lo: int,
    hi: int,
    *,
    descending: bool,
    limit: int,
    types: Sequence[str] = POINT_SERIES_TYPES,
    max_bytes: int | None = None,
) -> tuple[str, list[tuple[int, int, str]]] | None:
    """``(type, [(step, ts, value)])`` of a string/histogram/file series along ``links``
    (child first), up to ``limit`` points in the requested order, steps in ``[lo, hi]``
    (micro); None when the series does not exist for the run.

    The type is the first of ``types`` found walking from the child; ancestors holding the
    path with another type contribute nothing. With ``max_bytes``, reading stops after the
    row that takes the values' total length past it (values hold up to a MiB each, so a page
    is bounded by bytes as well as by rows)."""
    if not links:
        return None
    type_: str | None = None
    ids: list[tuple[LineageLink, int]] = []
    for link in links:
        found = series_attribute(conn, link.run_pk, path, types)
        if found is None:
            continue
        if type_ is None:
            type_ = found[1]
        if found[1] == type_:
            ids.append((link, found[0]))
    if type_ is None:
        return None
    out: list[tuple[int, int, str]] = []
    # links run child → root: descending order reads the child first
    sequence = ids if descending else list(reversed(ids))
    size = 0
    for link, attr_id in sequence:
        if len(out) >= limit or (max_bytes is not None and size > max_bytes):
            break
        upper = hi if link.upper_step is None else min(hi, link.upper_step)
        if upper < lo:
            continue
        rows = series_point_rows(
            conn, attr_id, lo, upper, descending=descending, limit=limit - len(out)
        )
        if max_bytes is None:
            out.extend(rows)
            continue
        for row in rows:  # the cursor steps row by row: nothing past the budget is read
            out.append(row)
            size += len(row[2])
            if size > max_bytes:
                break
    return type_, out
