"""What a writer applies to one run in one transaction, and what it reports back.

Both entry points build these: ``despina.Run`` from its in-memory buffer, the server from a
decoded ``RunOperation``. Values are already typed (the store's type names); rules that need the
stored state (type conflicts, step order, fork points) are checked by the writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "NO_STEP",
    "Assign",
    "Batch",
    "IngestIssue",
    "MetricColumn",
    "ModifySet",
    "PointAppend",
    "PreviewPoint",
]

NO_STEP = -1
"""Micro-step of a point logged without a step: the store uses the series' last step + 1."""

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class IngestIssue:
    """Rejected (``error``) or ignored (``warning``) items, with their Neptune ingest code.

    ``count`` is how many items of the same code and path this one issue stands for.
    """

    code: str
    message: str
    path: str | None = None
    severity: str = ERROR
    count: int = 1


@dataclass(slots=True)
class Assign:
    """Set a single-value attribute (overwrites). ``value`` is typed per ``type``:

    float → float, int → int, bool → bool, string → str, datetime → epoch ms int,
    string_set → frozenset[str], file → dict(path, size_bytes, mime_type).
    """

    path: str
    type: str
    value: Any


@dataclass(slots=True)
class ModifySet:
    """Add and remove elements of a string set (tags)."""

    path: str
    add: list[str]
    remove: list[str]


@dataclass(slots=True)
class MetricColumn:
    """Committed points for one float series, in arrival order."""

    steps: list[int] | npt.NDArray[np.int64]
    values: list[float] | npt.NDArray[np.float64]
    timestamps: list[int] | npt.NDArray[np.int64]


@dataclass(slots=True)
class PreviewPoint:
    """A provisional float-series point."""

    path: str
    step: int
    value: float
    timestamp: int
    completion: float


@dataclass(slots=True)
class PointAppend:
    """A point of a string, histogram or file series; ``value`` is str (JSON for the latter two)."""

    path: str
    type: str
    step: int
    timestamp: int
    value: str


@dataclass(slots=True)
class Batch:
    """Everything to apply to one run at once; ``ops`` keeps assigns and set changes in order."""

    ops: list[Assign | ModifySet] = field(default_factory=list)
    metrics: dict[str, MetricColumn] = field(default_factory=dict)
    previews: list[PreviewPoint] = field(default_factory=list)
    points: list[PointAppend] = field(default_factory=list)
    blobs: list[tuple[str, str, int, str]] = field(default_factory=list)
    """Stored contents to register: (storage key, sha256, size, mime type)."""
    ping_ms: int | None = None
    first_types: dict[str, str] = field(default_factory=dict)
    """Path → the type it was logged with first, for paths this batch writes with several types.

    The parts of a batch are applied in a fixed order (ops, metrics, previews, points), not in
    the order they were logged; with this map the writer refuses every item whose type is not
    the path's first one, so a path keeps its first type whichever part comes first. Producers
    that merge differently typed items into one batch fill it in logging order."""

    def is_empty(self) -> bool:
        return not (self.ops or self.metrics or self.previews or self.points or self.blobs)
