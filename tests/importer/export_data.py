"""Exports in neptune-exporter's exact layout for the importer tests (exporter-format.md §2–§6).

``write_export(root)`` writes ``root/data`` and ``root/files`` and returns what was written, so
tests compare what they read back with the values here:

* project ``ws/three`` (3.x layout): ``base`` (every type, rows shuffled, two parts, a duplicate
  step), ``fork-1`` (forked from ``base`` at step 50, marked head of ``exp-a``), ``fork-2``
  (forked from ``fork-1`` through its ``sys/id``), ``orphan`` (parent not exported), ``cyc-a`` /
  ``cyc-b`` (parents of each other), ``solo`` (no experiment, an unknown type); damaged runs:
  ``incomplete`` (no ``part_0``), ``corrupt`` (not Parquet), ``noschema`` (a column missing);
  a ``models/`` directory.
* project ``ws/two`` (2.x layout): ``TWO-1`` and ``TWO-2`` (custom run id ``custom-2``), both
  named ``train``; file sets, artifacts, file series by index, 2.x-only ``sys/`` values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from despina.importer.layout import sanitize
from despina.importer.testing import export_table, row, write_run

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
THREE = "ws/three"
TWO = "ws/two"


@dataclass
class Export:
    root: Path
    data: Path
    files: Path
    metrics: dict[tuple[str, str], list[tuple[Decimal, float, int]]] = field(default_factory=dict)
    """(run, path) → own points (step, value, timestamp) as they must be imported."""
    strings: dict[tuple[str, str], list[tuple[Decimal, str]]] = field(default_factory=dict)
    singles: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    """(run, attribute path or path@step) → file content."""


def _series(
    export: Export, run: str, path: str, points: list[tuple[float | str, float]], t: int
) -> list[dict[str, Any]]:
    rows = []
    own = []
    for i, (step, value) in enumerate(points):
        stamp = t + i * 1000
        rows.append(row(path, "float_series", value, step=step, timestamp=stamp))
        own.append((Decimal(str(step)).quantize(Decimal("0.000001")), value, stamp))
    export.metrics[(run, path)] = own
    return rows


def _file(export: Export, project: str, relative: str, content: bytes) -> str:
    target = export.files / sanitize(project) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return relative


def _sys3(
    run: str,
    number: int,
    name: str,
    created: int,
    *,
    tags: list[str] | None = None,
    is_head: bool = False,
    extra: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    return [
        row("sys/custom_run_id", "string", run),
        row("sys/id", "string", f"THR-{number}"),
        row("sys/name", "string", name),
        row("sys/creation_time", "datetime", created),
        row("sys/modification_time", "datetime", created + 500_000),
        row("sys/ping_time", "datetime", created + 400_000),
        row("sys/owner", "string", "alice"),
        row("sys/failed", "bool", False),
        row("sys/archived", "bool", False),
        row("sys/tags", "string_set", tags or []),
        row("sys/group_tags", "string_set", ["g"] if tags else []),
        row("sys/experiment/is_head", "bool", is_head),
        *(extra or []),
    ]


def _fork(parent: str, step: float) -> list[dict[str, Any]]:
    return [
        row("sys/forking/parent", "string", parent),
        row("sys/forking/step", "float", step),
    ]


def _three(export: Export) -> None:
    data = export.data
    base_rows = _sys3("base", 1, "exp-a", T0, tags=["t1", "t2"])
    base_rows += [
        row("sys/description", "string", "the base run"),
        row("sys/family", "string", "base"),
        row("sys/diagnostics/attributes/float_series_count", "int", 2),
        row("params/lr", "float", 0.01),
        row("params/epochs", "int", 10),
        row("params/name", "string", "resnet"),
        row("params/flag", "bool", True),
        row("params/when", "datetime", T0 + 123),
        row("params/set", "string_set", ["x", "y"]),
        row("params/empty_set", "string_set", None),
        row("params/nan", "float", math.nan),
        row("params/none", "string", None),  # all value columns null: skipped, reported
    ]
    export.singles["base"] = {
        "params/lr": 0.01,
        "params/epochs": 10,
        "params/name": "resnet",
        "params/flag": True,
        "params/set": {"x", "y"},
        "params/empty_set": set(),
    }
    loss = [(s * 0.5, 1.0 / (1 + s)) for s in range(101)]
    loss[10] = (5.0, math.nan)
    loss[11] = (5.5, math.inf)
    loss[12] = (6.0, -math.inf)
    base_rows += _series(export, "base", "metrics/loss", loss, T0)
    acc = [(s, s / 100) for s in range(100)]
    acc_rows = _series(export, "base", "metrics/acc", acc, T0)
    duplicate = row("metrics/acc", "float_series", 0.999, step=3, timestamp=T0)
    base_rows += [*acc_rows, duplicate]
    base_rows += [
        row("logs/stdout", "string_series", f"line {i}", step=i, timestamp=T0 + i) for i in range(5)
    ]
    export.strings[("base", "logs/stdout")] = [(Decimal(i), f"line {i}") for i in range(5)]
    base_rows += [
        row(
            "hist/w",
            "histogram_series",
            {"type": "COUNTING", "edges": [0.0, 1.0, 2.0], "values": [3.0, 4.0]},
            step=0,
            timestamp=T0,
        ),
        row(
            "hist/w",
            "histogram_series",
            {"type": "DENSITY", "edges": [0.0, 0.5], "values": [0.25]},
            step=1,
            timestamp=T0 + 1,
        ),
    ]
    config = _file(export, THREE, "base/files/config.yaml", b"lr: 0.01\n")
    export.blobs[("base", "files/config")] = b"lr: 0.01\n"
    base_rows.append(row("files/config", "file", config))
    for step in range(3):
        content = f"png {step}".encode()
        name = _file(export, THREE, f"base/preds/img/step_{step}_000000.png", content)
        export.blobs[("base", f"preds/img@{step}")] = content
        base_rows.append(row("preds/img", "file_series", name, step=step, timestamp=T0 + step))
    base_rows.append(row("files/missing", "file", "base/files/nowhere.bin"))
    rng = np.random.default_rng(7)
    order = rng.permutation(len(base_rows))
    shuffled = [base_rows[i] for i in order]
    if shuffled.index(duplicate) < shuffled.index(acc_rows[3]):  # the first row read is kept
        export.metrics[("base", "metrics/acc")][3] = (Decimal("3.000000"), 0.999, T0)
    half = len(shuffled) // 2
    write_run(
        data,
        THREE,
        "base",
        [
            export_table(THREE, "base", shuffled[:half]),
            export_table(THREE, "base", shuffled[half:]),
        ],
    )

    fork1 = _sys3("fork-1", 2, "exp-a", T0 + 10_000, is_head=True, extra=_fork("base", 25.0))
    fork1.append(row("params/lr", "float", 0.02))
    fork1 += _series(
        export, "fork-1", "metrics/loss", [(25.5 + s, 0.1 - s / 1000) for s in range(30)], T0
    )
    fork1.append(row("metrics/loss", "float_series", 9.0, step=20, timestamp=T0))  # ≤ fork step
    export.singles["fork-1"] = {"params/lr": 0.02}
    write_run(data, THREE, "fork-1", [export_table(THREE, "fork-1", fork1)])

    fork2 = _sys3("fork-2", 3, "exp-a", T0 + 20_000, extra=_fork("THR-2", 40.5))  # by sys/id
    fork2 += _series(export, "fork-2", "metrics/loss", [(41 + s, 0.05) for s in range(5)], T0)
    write_run(data, THREE, "fork-2", [export_table(THREE, "fork-2", fork2)])

    orphan = _sys3("orphan", 4, "", T0 + 30_000, extra=_fork("not-exported", 5.0))
    orphan += _series(export, "orphan", "metrics/loss", [(s, 1.0) for s in range(3)], T0)
    write_run(data, THREE, "orphan", [export_table(THREE, "orphan", orphan)])

    for name, number, parent in (("cyc-a", 5, "cyc-b"), ("cyc-b", 6, "cyc-a")):
        rows = _sys3(name, number, "", T0 + 40_000 + number, extra=_fork(parent, 1.0))
        write_run(data, THREE, name, [export_table(THREE, name, rows)])

    solo = _sys3("solo", 7, "", T0 + 50_000)
    solo += [
        row("params/x", "int", 1),
        row("params/weird", "git_ref", "abc", column="string_value"),
        row("metrics/short", "float_series", 1.5, step="0.000001", timestamp=T0),
    ]
    export.singles["solo"] = {"params/x": 1}
    export.metrics[("solo", "metrics/short")] = [(Decimal("0.000001"), 1.5, T0)]
    write_run(data, THREE, "solo", [export_table(THREE, "solo", solo)])

    # damaged runs
    incomplete = export_table(THREE, "incomplete", _sys3("incomplete", 8, "", T0))
    write_run(data, THREE, "incomplete", [incomplete, incomplete], complete=False)
    project_dir = data / sanitize(THREE)
    (project_dir / f"{sanitize('corrupt')}_part_0.parquet").write_bytes(b"PAR1 not really")
    partial = export_table(THREE, "noschema", _sys3("noschema", 9, "", T0)).drop_columns(
        ["histogram_value"]
    )
    pq.write_table(partial, project_dir / f"{sanitize('noschema')}_part_0.parquet")
    models = project_dir / "models"
    models.mkdir()
    write_run(models, "model", "m1", [export_table("model", "m1", [])])


def _sys2(short: str, created: int, **extra: Any) -> list[dict[str, Any]]:
    rows = [
        row("sys/id", "string", short),
        row("sys/name", "string", "train"),
        row("sys/creation_time", "datetime", created),
        row("sys/modification_time", "datetime", created + 1000),
        row("sys/ping_time", "datetime", created + 900),
        row("sys/owner", "string", "bob"),
        row("sys/trashed", "bool", False),
        row("sys/failed", "bool", True),
        row("sys/hostname", "string", "gpu-box"),
        row("sys/running_time", "float", 12.5),
        row("sys/size", "float", 2048.0),
        row("sys/tags", "string_set", ["v2"]),
    ]
    rows += [row(path, "string", value) for path, value in extra.items()]
    return rows


def _two(export: Export) -> None:
    data = export.data
    one = _sys2("TWO-1", T0)
    one += _series(export, "TWO-1", "monitoring/cpu", [(i, 10.0 * i) for i in range(20)], T0)
    zipped = _file(export, TWO, "ws/two/TWO-1/source_code/files/source.zip", b"PK\x03\x04zip")
    export.blobs[("TWO-1", "source_code/files")] = b"PK\x03\x04zip"
    one.append(row("source_code/files", "file_set", str(Path(zipped).parent)))
    listing = json.dumps([{"filePath": "a.csv", "fileHash": "h", "type": "file", "size": 3}])
    art = _file(export, TWO, "ws/two/TWO-1/artifacts/data/files_list.json", listing.encode())
    export.blobs[("TWO-1", "artifacts/data")] = listing.encode()
    one.append(row("artifacts/data", "artifact", art))
    for index in range(2):
        name = _file(export, TWO, f"ws/two/TWO-1/images/x/{index}.png", f"img {index}".encode())
        export.blobs[("TWO-1", f"images/x@{index}")] = f"img {index}".encode()
        one.append(row("images/x", "file_series", name, step=index))  # 2.x: no timestamp
    one.append(row("params/opt", "string", "adam"))
    export.singles["TWO-1"] = {"params/opt": "adam", "sys/hostname": "gpu-box"}
    write_run(data, TWO, "TWO-1", [export_table(TWO, "TWO-1", one)])

    two = _sys2("TWO-2", T0 + 60_000, **{"sys/custom_run_id": "custom-2"})
    two += _series(export, "custom-2", "monitoring/cpu", [(i, 1.0) for i in range(5)], T0)
    for member in ("a.py", "b.py"):
        _file(export, TWO, f"ws/two/TWO-2/source_code/files/{member}", member.encode())
        export.blobs[("custom-2", f"source_code/files/{member}")] = member.encode()
    two.append(row("source_code/files", "file_set", "ws/two/TWO-2/source_code/files"))
    write_run(data, TWO, "TWO-2", [export_table(TWO, "TWO-2", two)])


def write_export(root: Path) -> Export:
    export = Export(root, root / "data", root / "files")
    _three(export)
    _two(export)
    return export
