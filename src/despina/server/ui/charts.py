"""Chart data of the web UI: one chart per metric, one line per run, at most 1,000 buckets.

Every bucket carries the point the line is drawn through and the smallest and largest finite
value of the bucket, so a spike between two drawn points is still visible as the band around
the line. Forked runs are read through their lineage (inherited points up to each fork step).

* The whole step range is bucketed by the query service (``Snapshot.buckets``, §13.1 of the
  query spec, from chunk statistics: interior chunks are never decoded).
* Lines of many points (on the step, absolute-time and relative-time axes, whole or zoomed)
  come from block summaries of 16 points (``summaries.py``), kept in memory and in the store:
  the first view after a server start reads one row per series, not its points. A series'
  timestamps never decrease, so the time axes bucket the same blocks by time.
* A zoomed window of few points, and the metric axis, read the points in the window and bucket
  them here with NumPy over that window only: zooming re-buckets the visible range.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from despina.errors import InvalidQuery
from despina.query.filters import AttributeFilter
from despina.query.points import SeriesSet, StepRange
from despina.query.resolve import restrict_types
from despina.query.service import Container, Snapshot
from despina.server.ui import summaries as _summaries
from despina.server.ui.tables import exact_selector
from despina.store.chart_marks import nonfinite_counts
from despina.userregex import InvalidPattern, compile_user_regex

__all__ = [
    "MAX_BUCKETS",
    "MAX_CHARTS",
    "Axis",
    "Chart",
    "Line",
    "MetricPatternError",
    "chart",
    "float_series_names",
    "pick_metrics",
    "tail",
]

MAX_BUCKETS = 1000
"""The most buckets (points) of one line."""
MAX_CHARTS = 60
"""The most charts one page draws."""

Axis = Literal["step", "time", "relative", "metric"]
"""The x axis: the step; the point's time (epoch ms); the time since the run was created (ms);
or another metric's value at the same step (``x_metric``, e.g. tokens seen or epoch)."""
F64 = npt.NDArray[np.float64]


@dataclass
class Line:
    """One run's line: per bucket the drawn point (``x``, ``y``) and the band (``low``, ``high``).

    ``x`` is the step, or the timestamp in epoch milliseconds on the time axis. ``points`` is
    how many points the buckets summarise; ``last_step`` the step of the run's last point of
    the metric (what a live update asks to continue after), None without points.
    """

    run: str
    x: list[float]
    y: list[float | None]
    low: list[float | None]
    high: list[float | None]
    points: int = 0
    last_step: float | None = None
    marks: list[tuple[float, str]] = field(default_factory=list)
    """Where the line has NaN or infinite values (which it cannot draw): ``(x, kind)`` with
    kind ``"nan"``, ``"+inf"`` or ``"-inf"``, one per bucket and kind, at the bucket's last
    such point."""


@dataclass
class Chart:
    """One metric's chart: its x range, the lines, and the requested runs without the metric."""

    metric: str
    axis: Axis
    x_range: tuple[float, float] | None
    window: tuple[float, float] | None
    lines: list[Line] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def float_series_names(snap: Snapshot, containers: Sequence[Container]) -> list[str]:
    """Every float series path of ``containers`` (inherited through forks too), sorted."""
    if not containers:
        return []
    selector = restrict_types(AttributeFilter(), ["float_series"])
    return sorted({path for path, _ in snap.definitions(list(containers), selector)})


class MetricPatternError(InvalidQuery):
    """A metric pattern that is neither a metric name nor a valid regular expression; the
    charts page shows it in place, under the pattern."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(
            f"metric pattern {pattern!r} is not a metric name nor a valid regular "
            f"expression ({reason}); escape special characters, e.g. 'train\\.loss'"
        )
        self.pattern = pattern
        self.reason = reason


def pick_metrics(available: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """The metrics named by ``patterns``: each is an exact name, else a regular expression
    searched in the names; in the order of first appearance.

    Raises:
        MetricPatternError: a pattern is neither a metric name nor a valid regular expression.
    """
    chosen: dict[str, None] = {}
    names = set(available)
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        if pattern in names:
            chosen[pattern] = None
            continue
        try:
            regex = compile_user_regex(pattern)  # RE2: linear time, see despina.userregex
        except InvalidPattern as exc:
            raise MetricPatternError(pattern, exc.reason) from None
        chosen.update((name, None) for name in available if regex.search(name))
    return list(chosen)


def chart(
    snap: Snapshot,
    containers: Sequence[Container],
    metric: str,
    *,
    axis: Axis = "step",
    window: tuple[float, float] | None = None,
    buckets: int = MAX_BUCKETS,
    x_metric: str | None = None,
) -> Chart:
    """The chart of ``metric`` for ``containers`` (in their order).

    ``window`` limits the x axis (in its units) and re-buckets it. On the ``metric`` axis a
    point is drawn at ``x_metric``'s value at the same step; steps where ``x_metric`` has no
    value (or a non-finite one) are left out.

    Raises:
        InvalidQuery: ``buckets`` is out of 2..1000, the window is empty or reversed, or the
            ``metric`` axis has no ``x_metric``.
    """
    if axis == "metric" and not x_metric:
        raise InvalidQuery("the metric x axis needs the metric to put on it: ?xmetric=<path>")
    if not 2 <= buckets <= MAX_BUCKETS:
        raise InvalidQuery(f"buckets must be between 2 and {MAX_BUCKETS}, got {buckets}")
    if window is not None and not (
        math.isfinite(window[0]) and math.isfinite(window[1]) and window[0] < window[1]
    ):
        raise InvalidQuery(
            "the zoom window from..to must be two finite numbers with from below to; got "
            f"from={window[0]:g}, to={window[1]:g}"
        )
    series = snap.series(list(containers), exact_selector([metric], ["float_series"]))
    labels = [containers[int(c)].label for c in series.container.tolist()]
    result = Chart(metric, axis, None, window)
    have = set(labels)
    result.missing = [c.label for c in containers if c.label not in have]
    if not len(series):
        return result
    from_blocks = None
    # on the time axes a window's share of the points is known only from the blocks
    if _summaries_pay(series, window if axis == "step" else None, buckets) and axis != "metric":
        from_blocks = _from_blocks(snap, containers, series, labels, window, buckets, axis)
    if from_blocks is not None:
        result.lines, result.x_range = from_blocks
    elif axis == "step" and window is None:
        result.lines, result.x_range = _from_service(snap, series, labels, buckets)
    else:
        xs = _x_values(snap, containers, series, axis, window, x_metric)
        result.lines, result.x_range = _from_points(series, labels, xs, window, buckets)
    _mark_nonfinite(snap, containers, series, labels, result, axis, buckets)
    last = {label: int(series.last_step[i]) for i, label in enumerate(labels)}
    for line in result.lines:
        micro = last.get(line.run, -1)
        line.last_step = micro / _summaries.MICRO if micro >= 0 and line.points else None
    order = {c.label: i for i, c in enumerate(containers)}
    result.lines.sort(key=lambda line: order.get(line.run, len(order)))
    return result


def tail(
    snap: Snapshot,
    containers: Sequence[Container],
    metric: str,
    after: Sequence[float | None],
    *,
    axis: Axis = "step",
    width: float | None = None,
) -> Chart:
    """The points of ``metric`` logged after step ``after[i]`` by ``containers[i]`` (None:
    all of them): what a live chart appends to the lines it has.

    With ``width`` (the chart's bucket width, in steps or ms on the time axis) the new points
    are bucketed like the chart's own buckets, at most :data:`MAX_BUCKETS` per line; without
    it, up to ``MAX_BUCKETS`` points are sent as they are (else bucketed to that many).
    Only the chunks after the smallest ``after`` are read.

    Raises:
        InvalidQuery: ``after`` does not give one step per container, or ``width`` is not a
            positive finite number.
    """
    if len(after) != len(containers):
        raise InvalidQuery(
            f"give one after= step per run: got {len(after)} for {len(containers)} runs"
        )
    if width is not None and not (math.isfinite(width) and width > 0):
        raise InvalidQuery(f"width must be a positive number, got {width}")
    if axis == "metric":
        raise InvalidQuery(
            "live updates follow the step and time axes; a chart against another metric "
            "is redrawn whole (reload it)"
        )
    result = Chart(metric, axis, None, None)
    series = snap.series(list(containers), exact_selector([metric], ["float_series"]))
    if not len(series):
        result.missing = [c.label for c in containers]
        return result
    bounds = [float(a) for a in after if a is not None]
    start = min(bounds) if len(bounds) == len(after) else None
    batch = snap.float_series(series, mode="full", step_range=StepRange(start, None))
    have = set()
    for i in range(len(series)):
        c = int(series.container[i])
        label = containers[c].label
        have.add(label)
        at = slice(int(batch.offsets[i]), int(batch.offsets[i + 1]))
        steps, y = batch.steps[at], batch.values[at]
        x = steps if axis == "step" else batch.timestamps[at].astype(np.float64)
        if axis == "relative":
            x = x - float(containers[c].creation_ms)
        if after[c] is not None:
            keep = steps > float(after[c])  # type: ignore[arg-type]
            steps, x, y = steps[keep], x[keep], y[keep]
        if axis in ("time", "relative"):
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[order]
        last_step = float(steps.max()) if len(steps) else after[c]
        if not len(x):
            line = _line(label, x, y, y, y, 0)
        else:
            lo, hi = float(x[0]), float(x[-1])
            needed = len(x) if width is None else int((hi - lo) // width) + 1
            if needed > MAX_BUCKETS:
                line = _bucketed(label, x, y, lo, hi, MAX_BUCKETS)
            elif width is not None and needed < len(x):
                line = _bucketed(label, x, y, lo, lo + needed * width, needed)
            else:  # no more points than buckets: the points themselves
                line = _line(label, x, y, y, y, len(x))
        line.last_step = last_step
        result.lines.append(line)
    result.missing = [c.label for c in containers if c.label not in have]
    return result


MAX_MARKS = 1000
"""The most non-finite markers one line carries (one per bucket and kind)."""


def _mark_nonfinite(
    snap: Snapshot,
    containers: Sequence[Container],
    series: SeriesSet,
    labels: list[str],
    result: Chart,
    axis: Axis,
    buckets: int,
) -> None:
    """Mark where lines have NaN or ±inf values: only the series whose attribute counts say
    they have some are read, point by point, within the chart's x range (not on the metric
    axis, where a point's x is another metric's value)."""
    if result.x_range is None or axis == "metric":
        return
    counts = nonfinite_counts(snap, series.attr_id.tolist())
    flagged = [i for i in range(len(series)) if int(series.attr_id[i]) in counts]
    if not flagged:
        return
    lo, hi = result.x_range
    step_range = StepRange(lo, hi) if axis == "step" else StepRange()
    subset = _subset(series, np.asarray(flagged, dtype=np.int64))
    batch = snap.float_series(subset, mode="full", step_range=step_range)
    by_label = {line.run: line for line in result.lines}
    width = (hi - lo) / buckets if hi > lo else 1.0
    for j, i in enumerate(flagged):
        line = by_label.get(labels[i])
        if line is None:
            continue
        at = slice(int(batch.offsets[j]), int(batch.offsets[j + 1]))
        y = batch.values[at]
        bad = ~np.isfinite(y)
        if not bad.any():
            continue
        x = batch.steps[at] if axis == "step" else batch.timestamps[at].astype(np.float64)
        if axis == "relative":
            x = x - float(containers[int(subset.container[j])].creation_ms)
        x, y = x[bad], y[bad]
        keep = (x >= lo) & (x <= hi)
        x, y = x[keep], y[keep]
        kinds = np.where(np.isnan(y), 0, np.where(y > 0, 1, 2))
        index = np.clip(((x - lo) / width).astype(np.int64), 0, buckets - 1)
        seen: dict[tuple[int, int], float] = {}
        for bucket, kind, where in zip(index.tolist(), kinds.tolist(), x.tolist(), strict=True):
            seen[(bucket, kind)] = where  # the last such point of the bucket
        names = ("nan", "+inf", "-inf")
        line.marks = [(where, names[kind]) for (_, kind), where in sorted(seen.items())][:MAX_MARKS]


def _subset(series: SeriesSet, index: npt.NDArray[np.int64]) -> SeriesSet:
    """The series at ``index`` of ``series``."""
    columns = {
        f.name: getattr(series, f.name)[index]
        for f in dataclasses.fields(series)
        if isinstance(getattr(series, f.name), np.ndarray)
    }
    return dataclasses.replace(series, **columns)


def _summaries_pay(series: SeriesSet, window: tuple[float, float] | None, buckets: int) -> bool:
    """Whether buckets span enough blocks for block summaries (else points are read)."""
    most = float(series.count.max()) if len(series) else 0.0
    if window is not None:
        extent = max(float(series.last_step.max()) / _summaries.MICRO, 1.0)
        most *= min(1.0, (window[1] - window[0]) / extent)
    return most / buckets >= _summaries.MIN_BLOCKS_PER_BUCKET * _summaries.BLOCK


def _from_blocks(
    snap: Snapshot,
    containers: Sequence[Container],
    series: SeriesSet,
    labels: list[str],
    window: tuple[float, float] | None,
    buckets: int,
    axis: Axis,
) -> tuple[list[Line], tuple[float, float] | None] | None:
    """The lines from block summaries; None when points must be read instead (a time axis
    whose lineage goes back in time at a fork, or a time window of too few blocks)."""
    store = snap.service.store
    found = _summaries.lineage_blocks(
        snap, _store_key(store), series, _summaries.shared_cache(), store
    )
    if axis in ("time", "relative"):
        found = [
            b.on_time(
                float(containers[int(series.container[i])].creation_ms)
                if axis == "relative"
                else 0.0
            )
            for i, b in enumerate(found)
        ]
        if not all(b.monotonic() for b in found):
            return None
        if window is not None:
            most = max(
                int(np.searchsorted(b.first_x, window[1], side="right"))
                - int(np.searchsorted(b.last_x, window[0], side="left"))
                for b in found
            )
            if most < _summaries.MIN_BLOCKS_PER_BUCKET * buckets:
                return None
    nonempty = [b for b in found if len(b)]
    if not nonempty:
        return [_line(label, *(np.empty(0),) * 4, 0) for label in labels], None
    if window is not None:
        lo, hi = window
    else:
        lo = min(float(b.first_x[0]) for b in nonempty)
        hi = max(float(b.last_x[-1]) for b in nonempty)
    lines = []
    for i, (label, blocks) in enumerate(zip(labels, found, strict=True)):
        x, y, low, high, used = _summaries.bucket_blocks(blocks, lo, hi, buckets)
        points = int(series.count[i]) if window is None else used * _summaries.BLOCK
        lines.append(_line(label, x, y, low, high, points))
    return lines, (lo, hi)


def _store_key(store: object) -> str:
    """What tells one store from another in the process's summary cache."""
    return str(getattr(store, "db_path", None) or getattr(store, "display", id(store)))


def _from_service(
    snap: Snapshot, series: SeriesSet, labels: list[str], buckets: int
) -> tuple[list[Line], tuple[float, float] | None]:
    found = snap.buckets(series, limit=buckets - 1, mode="full", include_min_max=True)
    lines = []
    for i, label in enumerate(labels):
        at = slice(int(found.offsets[i]), int(found.offsets[i + 1]))
        first = found.index[at] == 0
        x = np.where(first, found.first_x[at], found.last_x[at])
        y = np.where(first, found.first_y[at], found.last_y[at])
        low, high = found.y_min[at], found.y_max[at]
        keep = np.isfinite(x)
        lines.append(_line(label, x[keep], y[keep], low[keep], high[keep], int(series.count[i])))
    return lines, found.x_range


def _x_values(
    snap: Snapshot,
    containers: Sequence[Container],
    series: SeriesSet,
    axis: Axis,
    window: tuple[float, float] | None,
    x_metric: str | None,
) -> list[tuple[F64, F64]]:
    """Per series, its points as ``(x, y)`` on the axis, in x order (within ``window`` on the
    time axes: the step axis' window is applied when reading)."""
    step_range = StepRange(*window) if axis == "step" and window is not None else StepRange()
    batch = snap.float_series(series, mode="full", step_range=step_range)
    by_container: dict[int, tuple[F64, F64]] = {}
    if axis == "metric" and x_metric:
        other = snap.series(list(containers), exact_selector([x_metric], ["float_series"]))
        found = snap.float_series(other, mode="full")
        for i in range(len(other)):
            at = slice(int(found.offsets[i]), int(found.offsets[i + 1]))
            by_container[int(other.container[i])] = (found.steps[at], found.values[at])
    out = []
    for i in range(len(series)):
        at = slice(int(batch.offsets[i]), int(batch.offsets[i + 1]))
        y = batch.values[at]
        if axis == "step":
            x = batch.steps[at]
        elif axis == "metric":
            steps = batch.steps[at]
            x_steps, x_values = by_container.get(
                int(series.container[i]), (np.empty(0), np.empty(0))
            )
            where = np.clip(np.searchsorted(x_steps, steps), 0, max(len(x_steps) - 1, 0))
            same = (x_steps[where] == steps) if len(x_steps) else np.zeros(len(steps), bool)
            x = np.where(same, x_values[where] if len(x_steps) else 0.0, np.nan)
            keep = np.isfinite(x)
            x, y = x[keep], y[keep]
        else:
            x = batch.timestamps[at].astype(np.float64)
            if axis == "relative":
                x = x - float(containers[int(series.container[i])].creation_ms)
        if axis != "step":
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[order]
            if window is not None:
                keep = (x >= window[0]) & (x <= window[1])
                x, y = x[keep], y[keep]
        out.append((x, y))
    return out


def _from_points(
    series: SeriesSet,
    labels: list[str],
    xs: list[tuple[F64, F64]],
    window: tuple[float, float] | None,
    buckets: int,
) -> tuple[list[Line], tuple[float, float] | None]:
    nonempty = [x for x, _ in xs if len(x)]
    if window is not None:
        lo, hi = window
    elif nonempty:
        lo, hi = min(float(x[0]) for x in nonempty), max(float(x[-1]) for x in nonempty)
    else:
        return [_line(label, *(np.empty(0),) * 4, 0) for label in labels], None
    lines = [
        _bucketed(label, x, y, lo, hi, buckets) for label, (x, y) in zip(labels, xs, strict=True)
    ]
    return lines, (lo, hi)


def _bucketed(label: str, x: F64, y: F64, lo: float, hi: float, buckets: int) -> Line:
    """Equal-width buckets over ``[lo, hi]``: each bucket's last point and its finite range."""
    if not len(x):
        return _line(label, x, y, y, y, 0)
    width = (hi - lo) / buckets if hi > lo else 1.0
    index = np.clip(((x - lo) / width).astype(np.int64), 0, buckets - 1)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], len(x)]
    finite = np.where(np.isfinite(y), y, np.nan)
    with np.errstate(invalid="ignore"):
        low = np.fmin.reduceat(finite, starts)
        high = np.fmax.reduceat(finite, starts)
    last = ends - 1
    return _line(label, x[last], y[last], low, high, len(x))


def _nullable(values: F64) -> list[float | None]:
    """The values as a list, non-finite ones as ``None`` (JSON ``null``)."""
    finite = np.isfinite(values)
    if finite.all():
        out: list[float | None] = values.tolist()
        return out
    boxed = values.astype(object)
    boxed[~finite] = None
    return list(boxed.tolist())


def _line(label: str, x: F64, y: F64, low: F64, high: F64, points: int) -> Line:
    return Line(label, x.tolist(), _nullable(y), _nullable(low), _nullable(high), points)
