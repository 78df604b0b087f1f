"""The on-disk layout of a ``neptune-exporter`` export (exporter-format.md §2, §3, §7.1).

```
<data-path>/<sanitize(project_id)>/<sanitize(run_id)>_part_<n>.parquet
<files-path>/<sanitize(project_id)>/...
```

A run is complete if and only if its ``_part_0.parquet`` exists (the exporter renames part 0
last); ``*.tmp`` files are leftovers of an interrupted export and are ignored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

__all__ = [
    "EXPORT_SCHEMA",
    "MODEL_DIRS",
    "ExportLayout",
    "IncompleteRun",
    "RunFiles",
    "discover",
    "sanitize",
]

EXPORT_SCHEMA = pa.schema(
    [
        ("project_id", pa.string()),
        ("run_id", pa.string()),
        ("attribute_path", pa.string()),
        ("attribute_type", pa.string()),
        ("step", pa.decimal128(18, 6)),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("string_value", pa.string()),
        ("bool_value", pa.bool_()),
        ("datetime_value", pa.timestamp("ms", tz="UTC")),
        ("string_set_value", pa.list_(pa.string())),
        ("file_value", pa.struct([("path", pa.string())])),
        (
            "histogram_value",
            pa.struct(
                [
                    ("type", pa.string()),
                    ("edges", pa.list_(pa.float64())),
                    ("values", pa.list_(pa.float64())),
                ]
            ),
        ),
    ]
)
"""The exporter's Parquet schema, column for column (exporter-format.md §3)."""

MODEL_DIRS = ("models", "model_versions")
"""Sub-directories written by ``export-models``; the model registry is not imported."""

_PART = re.compile(r"^(?P<prefix>.+)_part_(?P<n>\d+)\.parquet(?P<tmp>\.tmp)?$")


def sanitize(text: str) -> str:
    """The exporter's file-name form of a project or run id: every character that is not
    alphanumeric, ``_`` or ``-`` becomes ``_``, then ``-`` and 16 hex characters of a blake2b
    digest of the original text are appended (``org/proj`` → ``org_proj-<hex>``)."""
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in text)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
    return f"{safe}-{digest}"


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The Parquet parts of one complete run, in numeric order of the part number."""

    project_dir: Path
    prefix: str
    parts: tuple[Path, ...]
    missing_parts: tuple[int, ...] = ()
    """Part numbers below the highest one that are absent (reported; the rest is imported)."""

    @property
    def name(self) -> str:
        """``<project directory>/<prefix>``: how reports name the run before it is read."""
        return f"{self.project_dir.name}/{self.prefix}"


@dataclass(frozen=True, slots=True)
class IncompleteRun:
    """Parts of a run whose ``_part_0.parquet`` is missing: an interrupted export."""

    project_dir: Path
    prefix: str
    files: tuple[Path, ...]


@dataclass(slots=True)
class ExportLayout:
    """What :func:`discover` found under a data path."""

    data_path: Path
    project_dirs: list[Path] = field(default_factory=list)
    runs: list[RunFiles] = field(default_factory=list)
    incomplete: list[IncompleteRun] = field(default_factory=list)
    skipped_dirs: list[Path] = field(default_factory=list)
    """Model-registry directories (``models/``, ``model_versions/``), not imported."""
    ignored_files: list[Path] = field(default_factory=list)
    """Files that are not run parts (temporary files of complete runs, stray files)."""


def _has_parts(directory: Path) -> bool:
    return any(_PART.match(p.name) for p in directory.iterdir() if p.is_file())


def discover(data_path: Path) -> ExportLayout:
    """Find the project directories and runs of an export.

    ``data_path`` is the exporter's ``--data-path`` (one sub-directory per project) or a single
    project directory inside it (it holds ``*_part_<n>.parquet`` files itself).

    Raises:
        FileNotFoundError: ``data_path`` is not a directory.
    """
    if not data_path.is_dir():
        raise FileNotFoundError(
            f"export data directory {str(data_path)!r} does not exist or is not a directory; "
            "pass the --data-path the exporter wrote to (default ./exports/data)"
        )
    layout = ExportLayout(data_path)
    if _has_parts(data_path):
        layout.project_dirs.append(data_path)
    else:
        for child in sorted(data_path.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                layout.project_dirs.append(child)
    for project_dir in layout.project_dirs:
        _scan_project(project_dir, layout)
    return layout


def _scan_project(project_dir: Path, layout: ExportLayout) -> None:
    final: dict[str, dict[int, Path]] = {}
    temporary: dict[str, list[Path]] = {}
    for entry in sorted(project_dir.iterdir()):
        if entry.is_dir():
            if entry.name in MODEL_DIRS:
                layout.skipped_dirs.append(entry)
            elif not entry.name.startswith("."):
                layout.ignored_files.append(entry)
            continue
        match = _PART.match(entry.name)
        if match is None:
            if not entry.name.startswith("."):
                layout.ignored_files.append(entry)
            continue
        prefix = match["prefix"]
        if match["tmp"]:
            temporary.setdefault(prefix, []).append(entry)
        else:
            final.setdefault(prefix, {})[int(match["n"])] = entry
    for prefix in sorted(set(final) | set(temporary)):
        parts = final.get(prefix, {})
        if 0 not in parts:
            files = sorted([*parts.values(), *temporary.get(prefix, [])])
            layout.incomplete.append(IncompleteRun(project_dir, prefix, tuple(files)))
            continue
        layout.ignored_files.extend(temporary.get(prefix, []))
        numbers = sorted(parts)
        missing = tuple(n for n in range(numbers[-1]) if n not in parts)
        layout.runs.append(RunFiles(project_dir, prefix, tuple(parts[n] for n in numbers), missing))
