"""The logging client: ``despina.Run`` and what it needs."""

from __future__ import annotations

from despina.client.run import Run
from despina.client.source import SourceTrackingConfig

__all__ = ["Run", "SourceTrackingConfig"]
