"""despina: a self-hosted experiment tracker, at home with Neptune's clients and queries.

``despina.Run`` logs runs (the ``neptune_scale.Run`` API) into the embedded store;
``despina.query`` reads them back as pandas DataFrames (the ``neptune_query`` API).
Heavy modules (pandas) are imported only where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from despina._version import __version__
from despina.client import Run, SourceTrackingConfig
from despina.client.logging_handler import NeptuneLoggingHandler
from despina.errors import DespinaError

if TYPE_CHECKING:
    from despina.client.registry import Model, ModelVersion, init_model, init_model_version
    from despina.project import Project, init_project

# Loaded on first use: training scripts import despina on every start and need only Run.
_LAZY = {
    "Model": "despina.client.registry",
    "ModelVersion": "despina.client.registry",
    "init_model": "despina.client.registry",
    "init_model_version": "despina.client.registry",
    "Project": "despina.project",
    "init_project": "despina.project",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'despina' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DespinaError",
    "Model",
    "ModelVersion",
    "NeptuneLoggingHandler",
    "Project",
    "Run",
    "SourceTrackingConfig",
    "__version__",
    "init_model",
    "init_model_version",
    "init_project",
]
