"""What the web UI shows, as plain JSON-ready data: the functions behind every page and its
``.json`` twin. HTTP-agnostic: the views in ``views.py`` parse the request, check access, call
one function here in a worker thread and render the answer as HTML or JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from despina.errors import InvalidQuery, RunNotFound
from despina.query.filters import AttributeFilter
from despina.query.points import SeriesSet, StepRange
from despina.query.resolve import restrict_types
from despina.query.service import Container, QueryService
from despina.server.ui import charts as _charts
from despina.server.ui.format import display, iso_time, json_safe, json_value
from despina.server.ui.tables import (
    Cell,
    RunsRequest,
    exact_selector,
    find_containers,
    find_object_container,
    read_cells,
    read_page,
)
from despina.store.access import list_project_infos
from despina.store.blobs import BlobStore
from despina.store.run_states import run_states
from despina.store.runs_table import newest_run_attributes, project_run_counts, run_is_trashed
from despina.store.sysattrs import SYS_COLUMNS, SYS_STRING_SETS

__all__ = [
    "Download",
    "attributes_data",
    "chart_data",
    "chart_tail_data",
    "charts_data",
    "default_columns",
    "download",
    "live_rows_data",
    "projects_data",
    "run_data",
    "runs_data",
]

SYS_TABLE_COLUMNS = ("sys/creation_time", "sys/tags", "sys/failed")
SPARK_BUCKETS = 80
STRING_TAIL = 60
HISTOGRAM_TAIL = 30
MAX_SPARKLINES = 300


def projects_data(service: QueryService, reaches: Any) -> dict[str, Any]:
    """The projects ``reaches(name)`` allows, with their run counts."""
    store = service.store
    counts = project_run_counts(store)
    projects = [
        {
            "name": info.full_name,
            "workspace": info.workspace,
            "project": info.name,
            "description": info.description,
            "created": iso_time(info.created_ms),
            "runs": int(counts.get(info.id, 0)),
        }
        for info in list_project_infos(store)
        if reaches(info.full_name)
    ]
    return {"projects": projects}


def default_columns(service: QueryService, project: str, kind: str) -> list[str]:
    """Columns shown before the user picks any: a few ``sys/`` fields, up to three configs and
    up to four metrics (losses and accuracies first) of the newest run."""
    with service.snapshot(project) as snap:
        pairs = newest_run_attributes(snap)
    columns = (["sys/experiment/name"] if kind == "run" else []) + list(SYS_TABLE_COLUMNS)
    configs = [
        p for p, t in pairs if t in ("float", "int", "string", "bool") and not p.startswith("sys/")
    ]
    metrics = [p for p, t in pairs if t == "float_series"]

    def rank(path: str) -> int:
        name = path.lower()
        return 0 if "loss" in name else 1 if "acc" in name else 2

    metrics.sort(key=lambda p: (rank(p), p))
    return columns + configs[:3] + metrics[:4]


def runs_data(
    service: QueryService, project: str, request: RunsRequest, columns: Sequence[str]
) -> dict[str, Any]:
    """One page of the runs table.

    Raises:
        NqlError: the filter does not parse or resolve.
        InvalidQuery: a column cannot be sorted.
    """
    with service.snapshot(project) as snap:
        page = read_page(snap, request, columns)
        states = run_states(snap, [c.pk for c in page.rows])
    rows = []
    for container, run_id, trashed, cells in zip(
        page.rows, page.run_ids, page.trashed, page.cells, strict=True
    ):
        rows.append(
            {
                "label": container.label,
                "run_id": run_id,
                "experiment": container.experiment_name,
                "trashed": trashed,
                "forked": container.parent_pk is not None,
                "state": states.get(container.pk, "finished"),
                "cells": _cells(cells),
            }
        )
    return {
        "project": project,
        "view": "experiments" if request.kind == "experiment" else "runs",
        "query": request.nql,
        "sort": {"column": request.sort, "direction": request.direction, "type": page.sort_type},
        "offset": request.offset,
        "limit": request.limit,
        "total": page.total,
        "trashed": request.trashed,
        "columns": list(columns),
        "rows": rows,
    }


def _cells(cells: dict[str, Cell]) -> dict[str, dict[str, Any]]:
    return {
        path: {
            "type": cell.type,
            "value": json_value(cell.type, cell.value),
            "text": display(cell.type, cell.value),
        }
        for path, cell in cells.items()
    }


def live_rows_data(
    service: QueryService, project: str, run_ids: Sequence[str], columns: Sequence[str]
) -> dict[str, Any]:
    """What a live runs table refreshes: the state and the cells of ``columns`` of the runs
    ``run_ids`` (the table asks for its running rows only); unknown runs are left out."""
    with service.snapshot(project) as snap:
        containers = find_containers(snap, run_ids)
        states = run_states(snap, [c.pk for c in containers])
        cells = read_cells(snap, containers, columns)
    return {
        "rows": [
            {"run_id": c.label, "state": states.get(c.pk, "finished"), "cells": _cells(found)}
            for c, found in zip(containers, cells, strict=True)
        ],
    }


def attributes_data(service: QueryService, project: str) -> dict[str, Any]:
    """Every ``(path, type)`` of the project's runs, ``sys/`` fields included."""
    with service.snapshot(project) as snap:
        found = snap.definitions(None, restrict_types(AttributeFilter(), None))
    sys_paths = {(c.path, c.type) for c in SYS_COLUMNS.values()} | {
        (p, "string_set") for p in SYS_STRING_SETS
    }
    pairs = sorted(set(found) | {p for p in sys_paths if p[0] in {a for a, _ in found}})
    return {"attributes": [{"path": p, "type": t} for p, t in pairs]}


def _containers(service: QueryService, project: str, run_ids: Sequence[str]) -> list[Container]:
    with service.snapshot(project) as snap:
        return find_containers(snap, run_ids)


def charts_data(
    service: QueryService,
    project: str,
    run_ids: Sequence[str],
    patterns: Sequence[str],
    group: str | None = None,
) -> dict[str, Any]:
    """The runs and metrics a charts page draws: metrics named by ``patterns`` (names or
    regular expressions; default: the losses, else the first few) among the runs' series.

    With ``group`` (an attribute path, e.g. a config or ``sys/tags``), ``groups`` maps each run
    to its value of that attribute as text (``""`` when the run has none): the page draws one
    line per group.

    Raises:
        InvalidQuery: a bad regular expression.
    """
    with service.snapshot(project) as snap:
        containers = find_containers(snap, run_ids)
        available = _charts.float_series_names(snap, containers)
        states = run_states(snap, [c.pk for c in containers])
        values = read_cells(snap, containers, [group]) if group else None
    if any(p.strip() for p in patterns):
        metrics = _charts.pick_metrics(available, patterns)
    else:
        metrics = [m for m in available if "loss" in m.lower()][:6] or available[:4]
    # charts are grouped by namespace (``train/``, ``val/``), namespaces in order of appearance
    first_seen: dict[str, int] = {}
    for name in metrics:
        first_seen.setdefault(name.rpartition("/")[0], len(first_seen))
    metrics.sort(key=lambda name: first_seen[name.rpartition("/")[0]])
    known = {c.label for c in containers}
    return {
        "project": project,
        "runs": [c.label for c in containers],
        "states": {c.label: states.get(c.pk, "finished") for c in containers},
        "unknown_runs": [r for r in run_ids if r not in known],
        "patterns": [p for p in patterns if p.strip()],
        "metrics": metrics[: _charts.MAX_CHARTS],
        "more_metrics": max(0, len(metrics) - _charts.MAX_CHARTS),
        "available": available,
        "group": group or "",
        "groups": (
            {}
            if values is None or group is None
            else {
                c.label: display(found[group].type, found[group].value) if group in found else ""
                for c, found in zip(containers, values, strict=True)
            }
        ),
    }


def chart_data(
    service: QueryService,
    project: str,
    run_ids: Sequence[str],
    metric: str,
    *,
    axis: _charts.Axis,
    window: tuple[float, float] | None,
    buckets: int,
    x_metric: str | None = None,
) -> dict[str, Any]:
    """The lines of one chart (see :func:`despina.server.ui.charts.chart`).

    Raises:
        InvalidQuery: a bad window or bucket count, or the metric axis without ``x_metric``.
    """
    with service.snapshot(project) as snap:
        containers = find_containers(snap, run_ids)
        found = _charts.chart(
            snap,
            containers,
            metric,
            axis=axis,
            window=window,
            buckets=buckets,
            x_metric=x_metric,
        )
        states = run_states(snap, [c.pk for c in containers])
    return _chart_json(found, containers, states, run_ids)


def _chart_json(
    found: _charts.Chart,
    containers: Sequence[Container],
    states: Mapping[int, str],
    run_ids: Sequence[str],
) -> dict[str, Any]:
    return {
        "metric": found.metric,
        "axis": found.axis,
        "range": None if found.x_range is None else list(found.x_range),
        "window": None if found.window is None else list(found.window),
        "lines": [
            {
                "run": line.run,
                "points": line.points,
                "last_step": line.last_step,
                "x": line.x,
                "y": line.y,
                "low": line.low,
                "high": line.high,
                "marks": line.marks,
            }
            for line in found.lines
        ],
        "states": {c.label: states.get(c.pk, "finished") for c in containers},
        "missing": found.missing,
        "unknown_runs": [r for r in run_ids if r not in {c.label for c in containers}],
    }


def chart_tail_data(
    service: QueryService,
    project: str,
    run_ids: Sequence[str],
    metric: str,
    after: Sequence[float | None],
    *,
    axis: _charts.Axis,
    width: float | None,
) -> dict[str, Any]:
    """The points of one chart's runs after the steps the browser has (see
    :func:`despina.server.ui.charts.tail`), and the runs' states, read together: the answer
    that says a run finished also carries its last points.

    Raises:
        InvalidQuery: not one ``after`` per run, or a bad width.
    """
    if len(after) != len(run_ids):
        raise InvalidQuery(
            f"give one after= step per run: got {len(after)} for {len(run_ids)} runs"
        )
    wanted = dict(zip(run_ids, after, strict=True))
    with service.snapshot(project) as snap:
        containers = find_containers(snap, run_ids)
        steps = [wanted[c.label] for c in containers]
        found = _charts.tail(snap, containers, metric, steps, axis=axis, width=width)
        states = run_states(snap, [c.pk for c in containers])
    return _chart_json(found, containers, states, run_ids)


def _run_container(service: QueryService, project: str, run_id: str) -> Container:
    found = _containers(service, project, [run_id])
    if not found:
        raise RunNotFound(f"no run {run_id!r} in project {project!r}")
    return found[0]


def run_data(service: QueryService, project: str, run_id: str) -> dict[str, Any]:
    """Everything about one run: ``sys/`` fields, configs, tags, series (with sparkline
    buckets, string tails, recent histograms) and files.

    Raises:
        RunNotFound: no such run in the project.
    """
    container = _run_container(service, project, run_id)
    with service.snapshot(project) as snap:
        table = snap.table([container], restrict_types(AttributeFilter(), None))
        trashed = run_is_trashed(snap, container.pk)
        floats = snap.series([container], restrict_types(AttributeFilter(), ["float_series"]))
        counts = {_path(floats, i): int(floats.count[i]) for i in range(len(floats))}
        spark_paths = sorted(counts)[:MAX_SPARKLINES]
        sparks: dict[str, Any] = {}
        if spark_paths:
            spark = snap.series([container], exact_selector(spark_paths, ["float_series"]))
            buckets = snap.buckets(spark, limit=SPARK_BUCKETS, mode="full", include_min_max=True)
            for i in range(len(spark)):
                at = slice(int(buckets.offsets[i]), int(buckets.offsets[i + 1]))
                x = buckets.last_x[at]
                keep = [j for j, v in enumerate(x.tolist()) if math.isfinite(v)]
                sparks[_path(spark, i)] = {
                    "x": [float(x[j]) for j in keep],
                    "y": json_safe([float(buckets.last_y[at][j]) for j in keep]),
                    "low": json_safe([float(buckets.y_min[at][j]) for j in keep]),
                    "high": json_safe([float(buckets.y_max[at][j]) for j in keep]),
                }
        tails: dict[str, list[dict[str, Any]]] = {}
        strings = snap.series([container], restrict_types(AttributeFilter(), ["string_series"]))
        for i, rows in enumerate(snap.point_series(strings, tail_limit=STRING_TAIL)):
            tails[_path(strings, i)] = [
                {"step": s, "time": iso_time(t), "value": v}
                for s, t, v in zip(rows.steps, rows.timestamps, rows.values, strict=True)
            ]
        hists: dict[str, list[dict[str, Any]]] = {}
        histograms = snap.series(
            [container], restrict_types(AttributeFilter(), ["histogram_series"])
        )
        for i, rows in enumerate(snap.point_series(histograms, tail_limit=HISTOGRAM_TAIL)):
            hists[_path(histograms, i)] = [
                {"step": s, "time": iso_time(t), "histogram": json_safe(_json(v))}
                for s, t, v in zip(rows.steps, rows.timestamps, rows.values, strict=True)
            ]
        galleries: dict[str, list[dict[str, Any]]] = {}
        file_series = snap.series([container], restrict_types(AttributeFilter(), ["file_series"]))
        for i, rows in enumerate(snap.point_series(file_series, tail_limit=GALLERY_TAIL)):
            galleries[_path(file_series, i)] = [
                {"step": s, "time": iso_time(t), **_file_meta(_json(v))}
                for s, t, v in zip(rows.steps, rows.timestamps, rows.values, strict=True)
            ]
    sys_fields: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    tags: dict[str, list[str]] = {}
    metrics: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    for column in table.columns:
        if not len(column.rows):
            continue
        value = column.values[0]
        value = value.item() if hasattr(value, "item") else value
        entry = {
            "path": column.path,
            "type": column.type,
            "value": json_value(column.type, value),
            "text": display(column.type, value),
        }
        if column.path in SYS_STRING_SETS:
            tags[column.path] = list(value or [])
        elif column.path.startswith("sys/"):
            sys_fields.append(entry)
        elif column.type == "float_series":
            entry["count"] = counts.get(column.path, 0)
            metrics.append(entry)
        elif column.type in ("file", "file_series"):
            if isinstance(value, dict):
                entry["size"] = value.get("size_bytes")
                entry["mime_type"] = value.get("mime_type")
                entry["image"] = entry["mime_type"] in IMAGE_TYPES
            files.append(entry)
        elif column.type in ("string_series", "histogram_series"):
            continue
        else:
            configs.append(entry)
    return {
        "project": project,
        "run_id": container.label,
        "experiment": container.experiment_name,
        "trashed": trashed,
        "sys": sorted(sys_fields, key=lambda e: e["path"]),
        "tags": tags,
        "configs": sorted(configs, key=lambda e: e["path"]),
        "metrics": sorted(metrics, key=lambda e: e["path"]),
        "sparklines": sparks,
        "string_series": tails,
        "histograms": hists,
        "files": sorted(files, key=lambda e: e["path"]),
        "galleries": galleries,
    }


IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Image types the run page shows inline (never SVG: it can carry script)."""
GALLERY_TAIL = 24
"""The most recent files of a file series shown in its gallery."""


def _file_meta(value: Any) -> dict[str, Any]:
    """What a page shows of a stored file reference: its name, size, type, whether inline."""
    meta = value if isinstance(value, dict) else {}
    mime = str(meta.get("mime_type") or "")
    key = str(meta.get("path") or "")
    return {
        "name": key.rsplit("/", 1)[-1],
        "size": meta.get("size_bytes"),
        "mime_type": mime,
        "image": mime in IMAGE_TYPES,
    }


def _path(series: SeriesSet, i: int) -> str:
    return series.paths[int(series.path[i])]


def _json(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


@dataclass(frozen=True, slots=True)
class Download:
    """A stored file to send: its content in the store's blob store, its name and type."""

    blobs: BlobStore
    sha256: str
    size: int
    filename: str
    mime_type: str


def download(
    service: QueryService,
    project: str,
    run_id: str,
    attribute: str,
    step: float | None = None,
    kind: str = "run",
) -> Download:
    """The file of a run's ``file`` attribute, or of a ``file_series`` at ``step`` (default:
    its last file). With ``kind="object"``, ``run_id`` is the ``sys/id`` of a model or model
    version.

    Raises:
        RunNotFound: no such run.
        InvalidQuery: the run has no file attribute ``attribute``, or no file at ``step``.
        LookupError: the content is missing from the store (404).
    """
    if kind == "object":
        with service.snapshot(project) as snap:
            found = find_object_container(snap, run_id)
        if found is None:
            raise RunNotFound(f"no model or model version {run_id!r} in project {project!r}")
        container = found
    else:
        container = _run_container(service, project, run_id)
    with service.snapshot(project) as snap:
        if step is None:
            table = snap.table([container], exact_selector([attribute], ["file", "file_series"]))
            values = [c.values[0] for c in table.columns if len(c.rows)]
        else:
            series = snap.series([container], exact_selector([attribute], ["file_series"]))
            rows = snap.point_series(series, step_range=StepRange(step, step))
            values = [
                _json(v) for r in rows for s, v in zip(r.steps, r.values, strict=True) if s == step
            ]
        if not values or not isinstance(values[0], dict):
            at = "" if step is None else f" at step {step:g}"
            raise InvalidQuery(
                f"run {run_id!r} has no file attribute {attribute!r}{at}; the run page lists "
                "its files"
            )
        meta = values[0]
        location = snap.blob(str(meta.get("path", "")))
        blobs = snap.service.store.blobs
    if location is None:
        raise RunNotFound(
            f"the content of {attribute!r} of run {run_id!r} is not in the store (it may still "
            "be uploading)"
        )
    key = str(meta.get("path", ""))
    name = key.rsplit("/", 1)[-1] or attribute.rsplit("/", 1)[-1]
    mime_type = str(meta.get("mime_type") or "application/octet-stream")
    return Download(blobs, location[0], location[1], name, mime_type)
