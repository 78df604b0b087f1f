"""Edits of a run made after logging, by a person (the web UI): tags and group tags.

Trash, restore and the description are in :mod:`despina.store.lifecycle`. Tags go through the
writer's own rule (:class:`~despina.store.batch.ModifySet`), as if the run had logged them: the
same size limits and the same ``set_members`` rows for NQL's ``CONTAINS``.
"""

from __future__ import annotations

from collections.abc import Sequence

from despina.errors import InvalidQuery
from despina.store import Store
from despina.store.batch import Batch, IngestIssue, ModifySet
from despina.store.lifecycle import find_runs
from despina.store.writer import RunWriter

__all__ = ["EDITABLE_SETS", "edit_tags"]

EDITABLE_SETS = ("sys/tags", "sys/group_tags")
"""The string sets a person may edit."""


def edit_tags(
    store: Store,
    project: str,
    run: str,
    path: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> list[IngestIssue]:
    """Add and remove elements of a run's ``sys/tags`` or ``sys/group_tags``.

    Returns what the writer reported (e.g. a set over its size limit, then unchanged).

    Raises:
        InvalidQuery: ``path`` is not one of :data:`EDITABLE_SETS`, or a tag is empty.
        RunNotFound: no such run.
    """
    if path not in EDITABLE_SETS:
        raise InvalidQuery(f"only {' and '.join(EDITABLE_SETS)} can be edited, not {path!r}")
    if any(not tag.strip() for tag in (*add, *remove)):
        raise InvalidQuery("a tag cannot be empty")
    project_id = store.project_id(project)
    with store.read() as conn:
        (pk,) = find_runs(conn, project_id, [run]).values()
    writer = RunWriter(store, pk)
    return writer.apply(Batch(ops=[ModifySet(path, list(add), list(remove))]))
