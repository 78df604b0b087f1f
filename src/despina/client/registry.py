"""The model registry, in the style of the old ``neptune`` client.

``despina.init_model(key="PRETRAINED")`` creates model ``<PROJECT_KEY>-PRETRAINED``;
``despina.init_model(with_id="BIRDS-PRETRAINED")`` opens it again.
``despina.init_model_version(model="BIRDS-PRETRAINED")`` creates the next version
(``BIRDS-PRETRAINED-1``, ``-2``, …); ``with_id=`` opens one. Models and versions log configs,
tags, files and series exactly like runs (they are :class:`~despina.Run` objects), and a version
moves between stages with :meth:`ModelVersion.change_stage`.

With an API token (as for :class:`~despina.Run`) the server assigns the ids: creating a model or
version asks the server at once (it must answer), then logging goes through the local queue like
a run's, and a stage change is queued in order after what was logged before it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from despina.client.run import Callback, Run, _os_user
from despina.client.stores import acquire_store, release_store
from despina.errors import ConfigError
from despina.store.http.connection import connection_for
from despina.store.http.tokens import remote_token
from despina.store.registry import (
    STAGES,
    change_stage,
    create_model,
    create_model_version,
    open_object,
)

__all__ = ["Model", "ModelVersion", "init_model", "init_model_version"]


class Model(Run):
    """A registered model: create with :func:`init_model`."""

    def __init__(
        self,
        *,
        key: str | None = None,
        with_id: str | None = None,
        project: str | None = None,
        name: str | None = None,
        mode: str | None = None,
        on_error_callback: Callback | None = None,
        on_warning_callback: Callback | None = None,
        home: str | os.PathLike[str] | None = None,
        api_token: str | None = None,
        log_directory: str | Path | None = None,
    ) -> None:
        if (key is None) == (with_id is None):
            raise ValueError("pass key= to create a model or with_id= to open one (not both)")
        self._setup(project, mode, on_error_callback, on_warning_callback, None)
        self._home = home
        self._api_token = api_token  # the versions table reads where the model logs
        if self._mode == "disabled":
            self._run_id = with_id or str(key)
            return
        token = remote_token(api_token, home)
        if token is not None:
            if with_id is None:
                answer = connection_for(token).post_json(
                    "/models/create", {"project": self._project, "key": key}
                )
                with_id = str(answer["id"])
            self._run_id = with_id
            self._open_remote(token, log_directory, "open", {"id": with_id, "kind": "model"})
            if name is not None:
                self.log_configs({"name": name})
            return
        store = acquire_store(home)
        try:
            if with_id is not None:
                created = open_object(store, self._project, with_id, "model")
                self._run_id = with_id
            else:
                assert key is not None
                self._run_id, created = create_model(store, self._project, key, _os_user())
        except BaseException:
            release_store(store)
            raise
        self._attach(store, created)
        if name is not None:
            self.log_configs({"name": name})

    @property
    def id(self) -> str:
        """``sys/id`` of the model, e.g. ``BIRDS-PRETRAINED``."""
        return self._run_id

    def fetch_model_versions_table(
        self,
        query: str | None = None,
        columns: list[str] | None = None,
        trashed: bool | None = False,
        limit: int | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
        progress_bar: Any = None,
    ) -> Any:
        """The versions of this model as a table (``.to_pandas()``), filtered with NQL."""
        from despina.project import Project

        project = Project(self._project, home=self._home, api_token=self._api_token)
        return project.fetch_model_versions_table(
            self._run_id, query, columns, trashed, limit, sort_by, ascending
        )

    def __repr__(self) -> str:
        return f"Model(project={self._project!r}, id={self._run_id!r})"


class ModelVersion(Run):
    """A version of a registered model: create with :func:`init_model_version`."""

    def __init__(
        self,
        *,
        model: str | None = None,
        with_id: str | None = None,
        project: str | None = None,
        mode: str | None = None,
        on_error_callback: Callback | None = None,
        on_warning_callback: Callback | None = None,
        home: str | os.PathLike[str] | None = None,
        api_token: str | None = None,
        log_directory: str | Path | None = None,
    ) -> None:
        if (model is None) == (with_id is None):
            raise ValueError("pass model= (a model id) to create a version or with_id= to open one")
        self._setup(project, mode, on_error_callback, on_warning_callback, None)
        if self._mode == "disabled":
            self._run_id = with_id or f"{model}-0"
            return
        token = remote_token(api_token, home)
        if token is not None:
            if with_id is None:
                answer = connection_for(token).post_json(
                    "/model-versions/create", {"project": self._project, "model": model}
                )
                with_id = str(answer["id"])
            self._run_id = with_id
            self._open_remote(
                token, log_directory, "open", {"id": with_id, "kind": "model_version"}
            )
            return
        store = acquire_store(home)
        try:
            if with_id is not None:
                created = open_object(store, self._project, with_id, "model_version")
                self._run_id = with_id
            else:
                assert model is not None
                self._run_id, created = create_model_version(
                    store, self._project, model, _os_user()
                )
        except BaseException:
            release_store(store)
            raise
        self._attach(store, created)

    @property
    def id(self) -> str:
        """``sys/id`` of the version, e.g. ``BIRDS-PRETRAINED-3``."""
        return self._run_id

    def change_stage(self, stage: str) -> None:
        """Move the version to ``none``, ``staging``, ``production`` or ``archived``.

        Raises:
            ConfigError: an unknown stage.
        """
        if self._remote is not None:
            if stage not in STAGES:
                raise ConfigError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
            if not self._closed:
                self.wait_for_submission()  # queued after everything logged before it
                queue, sender = self._remote
                body = json.dumps({"id": self._run_id, "stage": stage}).encode()
                sender.queued(queue.append("stage", body))
            return
        if self._store is None:
            return
        self.wait_for_processing()
        change_stage(self._store, self._writer.run_pk, stage)

    def __repr__(self) -> str:
        return f"ModelVersion(project={self._project!r}, id={self._run_id!r})"


def init_model(
    key: str | None = None,
    *,
    with_id: str | None = None,
    project: str | None = None,
    name: str | None = None,
    mode: str | None = None,
    home: str | os.PathLike[str] | None = None,
    api_token: str | None = None,
    log_directory: str | Path | None = None,
) -> Model:
    """Create a model with ``key`` (id ``<PROJECT_KEY>-<KEY>``) or open one ``with_id``."""
    return Model(
        key=key,
        with_id=with_id,
        project=project,
        name=name,
        mode=mode,
        home=home,
        api_token=api_token,
        log_directory=log_directory,
    )


def init_model_version(
    model: str | None = None,
    *,
    with_id: str | None = None,
    project: str | None = None,
    mode: str | None = None,
    home: str | os.PathLike[str] | None = None,
    api_token: str | None = None,
    log_directory: str | Path | None = None,
) -> ModelVersion:
    """Create the next version of ``model`` (a model id) or open a version ``with_id``."""
    return ModelVersion(
        model=model,
        with_id=with_id,
        project=project,
        mode=mode,
        home=home,
        api_token=api_token,
        log_directory=log_directory,
    )
