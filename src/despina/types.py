"""Value types for logging: files and histograms (mirroring ``neptune_scale.types``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["File", "Histogram"]


@dataclass
class File:
    """A file to assign or log: a local path or the content as bytes.

    ``mime_type``, ``size`` and ``destination`` (the storage key) override what despina would
    otherwise guess or generate.
    """

    source: str | Path | bytes
    mime_type: str | None = None
    size: int | None = None
    destination: str | None = None


@dataclass
class Histogram:
    """A histogram: ``bin_edges`` and exactly one of ``counts`` (ints) or ``densities``."""

    bin_edges: Any
    counts: Any = None
    densities: Any = None

    def edges_as_list(self) -> list[float]:
        return [float(x) for x in _as_list(self.bin_edges)]

    def counts_as_list(self) -> list[int] | None:
        return None if self.counts is None else list(_as_list(self.counts))

    def densities_as_list(self) -> list[float] | None:
        return None if self.densities is None else [float(x) for x in _as_list(self.densities)]


def _as_list(values: Any) -> list[Any]:
    tolist = getattr(values, "tolist", None)
    return list(tolist()) if callable(tolist) else list(values)
