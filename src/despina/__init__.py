"""despina: a self-hosted experiment tracker, at home with Neptune's clients and queries.

``despina.Run`` logs runs (the ``neptune_scale.Run`` API) into the embedded store;
``despina.query`` reads them back as pandas DataFrames (the ``neptune_query`` API).
Heavy modules (pandas) are imported only where they are used.
"""

from __future__ import annotations

from despina._version import __version__
from despina.client import Run, SourceTrackingConfig
from despina.client.logging_handler import NeptuneLoggingHandler
from despina.client.registry import Model, ModelVersion, init_model, init_model_version
from despina.errors import DespinaError
from despina.project import Project, init_project

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
