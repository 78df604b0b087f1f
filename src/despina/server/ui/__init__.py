"""The web UI of ``despina serve``: runs tables with NQL search, charts and run pages.

Server-rendered pages (Jinja templates) with a little JavaScript for the charts (uPlot, vendored
under ``static/vendor``), each with a ``.json`` twin; both call the same functions (``api.py``) over the query
service. Mounted by ``create_app`` through :data:`UI_ROUTES`.
"""

from __future__ import annotations

import getpass
import time

from starlette.applications import Starlette

from despina.server.auth import mint_api_token
from despina.server.ui.views import UI_ROUTES, ui_state
from despina.store.access import list_api_keys, list_project_infos

__all__ = ["UI_ROUTES", "first_sign_in_link"]

DEFAULT_WORKSPACE = "default"


def first_sign_in_link(app: Starlette, base_url: str) -> str | None:
    """On a home without any API token: mint the first one and return a one-time sign-in link.

    The token is a workspace token for each workspace of the store (``default`` when the
    store has no project yet); the link signs in with all of them once, within an hour.
    Returns ``None`` when the home already has tokens.
    """
    store = app.state.despina.store
    if list_api_keys(store):
        return None
    workspaces = sorted({info.workspace for info in list_project_infos(store)})
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "despina"
    keys = []
    for workspace in workspaces or [DEFAULT_WORKSPACE]:
        _, key = mint_api_token(
            store,
            url=base_url,
            workspace=workspace,
            username=user,
            name=f"first sign-in {time.strftime('%Y-%m-%d')}",
        )
        keys.append(key.key_id)
    code = ui_state(app).codes.issue(keys)
    return f"{base_url.rstrip('/')}/sign-in/link?code={code}"
