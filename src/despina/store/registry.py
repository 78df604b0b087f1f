"""The model registry in the store: models and model versions are objects of ``runs`` with
``kind`` = ``model`` / ``model_version``, so they hold attributes and series like runs.

A model's ``sys/id`` is ``<PROJECT_KEY>-<KEY>``; a version's is ``<MODEL_ID>-<n>`` with ``n``
counting from 1 per model. A version has ``sys/stage`` (``none`` when created) and
``sys/model_id``.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid

from despina.errors import ConfigError, RunNotFound
from despina.store import Store
from despina.store.runs import CreatedRun
from despina.store.sysattrs import SYS_STRING_SETS

__all__ = ["STAGES", "change_stage", "create_model", "create_model_version", "open_object"]

STAGES = ("none", "staging", "production", "archived")
_KEY = re.compile(r"^[A-Z0-9]{1,10}$")


def _insert(
    conn: sqlite3.Connection,
    project_id: int,
    object_id: str,
    kind: str,
    owner: str,
    model_pk: int | None,
) -> int:
    now = int(time.time() * 1000)
    cursor = conn.execute(
        "INSERT INTO runs (project_id, run_id, short_no, uuid, family, owner, creation_ms, "
        "modification_ms, ping_ms, closed, kind, object_id, model_pk, stage) "
        "VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
        (
            project_id,
            object_id,
            str(uuid.uuid4()),
            object_id,
            owner,
            now,
            now,
            now,
            kind,
            object_id,
            model_pk,
            "none" if kind == "model_version" else None,
        ),
    )
    pk = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO attributes (run_id, path, type, text) VALUES (?, ?, 'string_set', '[]')",
        [(pk, path) for path in SYS_STRING_SETS],
    )
    return pk


def open_object(store: Store, project: str, object_id: str, kind: str) -> CreatedRun:
    """An existing model or model version by its ``sys/id``.

    Raises:
        RunNotFound: there is no such object in the project.
    """
    project_id = store.project_id(project)
    row = (
        store.connection()
        .execute(
            "SELECT id FROM runs WHERE project_id = ? AND object_id = ? AND kind = ?",
            (project_id, object_id, kind),
        )
        .fetchone()
    )
    if row is None:
        noun = "model" if kind == "model" else "model version"
        raise RunNotFound(f"no {noun} {object_id!r} in project {project!r}")
    return CreatedRun(int(row[0]), project_id, [], True)


def create_model(store: Store, project: str, key: str, owner: str) -> tuple[str, CreatedRun]:
    """Create model ``<PROJECT_KEY>-<key>``; returns its id and row.

    Raises:
        ConfigError: the key is not 1–10 upper-case letters or digits, or the model exists.
    """
    if not _KEY.match(key):
        raise ConfigError(
            f"model key {key!r} must be 1 to 10 upper-case letters or digits, e.g. 'PRETRAINED'"
        )
    project_id = store.project_id(project, create=True)
    conn = store.connection()
    (project_key,) = conn.execute(
        "SELECT project_key FROM projects WHERE id = ?", (project_id,)
    ).fetchone()
    object_id = f"{project_key}-{key}"
    with store.write() as conn:
        if store.dialect == "postgresql":  # creations in a project take turns (as in create_run)
            conn.execute("SELECT id FROM projects WHERE id = ? FOR NO KEY UPDATE", (project_id,))
        if conn.execute(
            "SELECT 1 FROM runs WHERE project_id = ? AND run_id = ?", (project_id, object_id)
        ).fetchone():
            raise ConfigError(
                f"model {object_id!r} already exists; open it with "
                f"init_model(with_id={object_id!r})"
            )
        pk = _insert(conn, project_id, object_id, "model", owner, None)
    return object_id, CreatedRun(pk, project_id, [], False)


def create_model_version(
    store: Store, project: str, model_id: str, owner: str
) -> tuple[str, CreatedRun]:
    """Create the next version ``<model_id>-<n>`` of a model; returns its id and row.

    Raises:
        RunNotFound: the model does not exist.
    """
    model = open_object(store, project, model_id, "model")
    with store.write() as conn:  # count and insert together: concurrent creators get distinct n
        if store.dialect == "postgresql":  # the model's row lock: its version creators take turns
            conn.execute("SELECT id FROM runs WHERE id = ? FOR NO KEY UPDATE", (model.pk,))
        (count,) = conn.execute(
            "SELECT count(*) FROM runs WHERE model_pk = ? AND kind = 'model_version'", (model.pk,)
        ).fetchone()
        object_id = f"{model_id}-{count + 1}"
        pk = _insert(conn, model.project_id, object_id, "model_version", owner, model.pk)
    return object_id, CreatedRun(pk, model.project_id, [], False)


def change_stage(store: Store, pk: int, stage: str) -> None:
    """Move a model version to ``stage``.

    Raises:
        ConfigError: the stage is not one of ``STAGES``.
    """
    if stage not in STAGES:
        raise ConfigError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    with store.write() as conn:
        conn.execute(
            "UPDATE runs SET stage = ?, modification_ms = ?, revision = revision + 1 "
            "WHERE id = ? AND kind = 'model_version'",
            (stage, int(time.time() * 1000), pk),
        )
