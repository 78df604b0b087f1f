"""The model registry page: every model of a project with its versions and their stages.

Read through ``despina.project`` (the same tables as ``init_project().fetch_models_table()``
and ``Model.fetch_model_versions_table()``), so the page and the Python API agree.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from despina.project import Project
from despina.query.service import QueryService
from despina.server.ui.format import json_safe
from despina.store import Store
from despina.store.objects import file_paths_of_objects

__all__ = ["models_data"]

_MODEL_SYS = ("sys/id", "sys/creation_time", "sys/owner", "sys/tags", "sys/description")
_VERSION_SYS = ("sys/id", "sys/stage", "sys/creation_time", "sys/owner", "sys/tags")


def _cell(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _cell(value) for key, value in row.items()}


def models_data(store: Store, project: str, service: QueryService | None = None) -> dict[str, Any]:
    """Models (newest first), each with its versions (newest first) and their attributes, read
    through the server's open ``store``.

    ``file_paths`` lists the attributes that hold files, which the page links for download.
    """
    registry = Project.over(store, project)
    file_paths: set[str] = set()
    if service is not None:
        with service.snapshot(project) as snap:
            file_paths = file_paths_of_objects(snap)
    models = []
    for row in registry.fetch_models_table().to_rows():
        model = _plain(row)
        versions = [
            _plain(version)
            for version in registry.fetch_model_versions_table(str(model["sys/id"])).to_rows()
        ]
        user_paths = sorted({p for v in versions for p in v if not p.startswith("sys/")})
        models.append(
            {
                "id": model["sys/id"],
                "sys": {k: model.get(k) for k in _MODEL_SYS},
                "attributes": {k: v for k, v in model.items() if not k.startswith("sys/")},
                "version_columns": user_paths,
                "versions": [
                    {
                        "sys": {k: v.get(k) for k in _VERSION_SYS},
                        "attributes": {p: v.get(p) for p in user_paths},
                    }
                    for v in versions
                ],
            }
        )
    return json_safe({"project": project, "models": models, "file_paths": sorted(file_paths)})
