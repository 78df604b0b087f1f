"""Cell values of the query API's frames, mirroring ``neptune_query.types`` (spec §7.2, §7.3)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["File", "Histogram"]


@dataclass(frozen=True)
class Histogram:
    """A logged histogram: ``type`` is ``"COUNTING"`` (counts) or ``"DENSITY"`` (densities)."""

    type: str
    edges: list[float]
    values: list[float]


@dataclass(frozen=True)
class File:
    """A file in the store, as found in a table or series cell; pass it to ``download_files``.

    Exactly one of ``experiment_name`` (experiments API) and ``run_id`` (runs API) is set;
    ``path`` is the storage key of the content, ``step`` the series step (``None`` for a file
    attribute).
    """

    project_identifier: str
    experiment_name: str | None
    run_id: str | None
    attribute_path: str
    step: float | None
    path: str
    size_bytes: int
    mime_type: str

    def __post_init__(self) -> None:
        if not (self.experiment_name or self.run_id):
            raise ValueError("Either 'experiment_name' or 'run_id' must be set for File.")
        if self.experiment_name and self.run_id:
            raise ValueError("Only one of 'experiment_name' or 'run_id' should be set for File.")

    def __repr__(self) -> str:
        return f"File(size={_humanize_size(self.size_bytes)}, mime_type={self.mime_type})"

    @property
    def container_identifier(self) -> str:
        """The experiment name or the run ID the file belongs to."""
        return self.experiment_name or self.run_id or ""


def _humanize_size(size_bytes: int) -> str:
    if size_bytes < 1024:
        return f"{size_bytes} B"
    if size_bytes < 1024**2:
        return f"{size_bytes / 1024:.2f} KB"
    if size_bytes < 1024**3:
        return f"{size_bytes / 1024**2:.2f} MB"
    return f"{size_bytes / 1024**3:.2f} GB"
