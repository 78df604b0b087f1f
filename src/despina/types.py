"""Value types for logging: files and histograms (mirroring ``neptune_scale.types``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["File", "Histogram", "as_file", "as_histogram"]


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


def _neptune_scale_class(name: str) -> Any:
    """``neptune_scale.types.<name>`` when that module is loaded, else ``None``.

    neptune-scale is optional for despina users: a value can only be one of its objects if the
    module was imported already, so ``sys.modules`` is consulted instead of importing it.
    """
    module = sys.modules.get("neptune_scale.types")
    found = getattr(module, name, None) if module is not None else None
    return found if isinstance(found, type) else None


def as_file(value: Any) -> File | None:
    """``value`` as a despina :class:`File` when it is one or a ``neptune_scale.types.File``."""
    if isinstance(value, File):
        return value
    theirs = _neptune_scale_class("File")
    if theirs is not None and isinstance(value, theirs):
        return File(
            source=value.source,
            mime_type=value.mime_type,
            size=value.size,
            destination=value.destination,
        )
    return None


def as_histogram(value: Any) -> Histogram | None:
    """``value`` as a despina :class:`Histogram` (also from a ``neptune_scale.types.Histogram``)."""
    if isinstance(value, Histogram):
        return value
    theirs = _neptune_scale_class("Histogram")
    if theirs is not None and isinstance(value, theirs):
        return Histogram(bin_edges=value.bin_edges, counts=value.counts, densities=value.densities)
    return None
