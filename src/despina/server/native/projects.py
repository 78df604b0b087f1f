"""Native endpoints of ``despina.init_project`` with an API token: the project tables (as Arrow
streams) and the trash (docs/remote-api.md).

Each runs the function the in-process project calls (:func:`despina.project.tables.fetch_table`,
:func:`despina.project.backends.change_trash`, ``lifecycle.set_description``) on the server's
store, so a remote table or refusal is the same as an in-process one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from despina.server.auth import Principal
from despina.server.errors import bad_request
from despina.server.native.common import NativeRoute, arrow_response, native_endpoint, project_in
from despina.store import lifecycle

__all__ = ["ROUTES"]


def table_call(state: Any, principal: Principal, body: Any, params: Mapping[str, str]) -> Any:
    """``POST /projects/table``: a project table, as an Arrow stream."""
    from despina.project.tables import fetch_table
    from despina.project.wire import encode_table

    project = project_in(principal, body)
    columns = _field(body, "columns", list, None)
    table = fetch_table(
        state.store,
        project,
        _field(body, "kind", str, "run"),
        query=_field(body, "query", str, None),
        columns=columns,
        trashed=_field(body, "trashed", bool, False),
        limit=body.get("limit"),
        sort_by=body.get("sort_by", "sys/creation_time"),
        ascending=_field(body, "ascending", bool, False),
        model_id=_field(body, "model_id", str, None),
    )
    return arrow_response(encode_table(table))


def trash_call(state: Any, principal: Principal, body: Any, params: Mapping[str, str]) -> Any:
    """``POST /projects/trash``: trash, restore or delete runs; answers ``{"count": n}``."""
    from despina.project.backends import TRASH_ACTIONS, change_trash

    project = project_in(principal, body)
    action = _field(body, "action", str, None)
    if action not in TRASH_ACTIONS:
        raise bad_request(f"'action' must be one of {', '.join(TRASH_ACTIONS)}, got {action!r}")
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_request("'ids' must be a list of run ids (strings)")
    return {"count": change_trash(state.store, project, action, ids)}


def description_call(state: Any, principal: Principal, body: Any, params: Mapping[str, str]) -> Any:
    """``POST /projects/description``: set ``sys/description`` of a run."""
    project = project_in(principal, body)
    run = _field(body, "run", str, None)
    description = _field(body, "description", str, None)
    if run is None or description is None:
        raise bad_request("the request must name 'run' and 'description' (strings)")
    lifecycle.set_description(state.store, project, run, description)
    return {}


def _field(body: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = body.get(name, default)
    if value is not None and not isinstance(value, kind):
        raise bad_request(f"{name!r} must be a {kind.__name__}, got {value!r}")
    return value


ROUTES: list[NativeRoute] = [
    native_endpoint("/projects/table", table_call),
    native_endpoint("/projects/trash", trash_call, write=True),
    native_endpoint("/projects/description", description_call, write=True),
]
