"""The web UI of ``despina serve``: runs tables with NQL search, charts and run pages.

Server-rendered pages (Jinja templates) with a little JavaScript for the charts (uPlot, vendored
under ``static/vendor``), each with a ``.json`` twin; both call the same functions (``api.py``)
over the query service. Mounted by ``create_app`` through :data:`UI_ROUTES`.
"""

from __future__ import annotations

import getpass

from starlette.applications import Starlette

from despina.server.ui.session import operator_key
from despina.server.ui.views import UI_ROUTES, ui_state

__all__ = ["UI_ROUTES", "sign_in_link", "start_up_message"]


def sign_in_link(app: Starlette, base_url: str) -> str:
    """A one-time link (it works once, within an hour) signing a browser in as the operator.

    The operator reaches every workspace, also those created after the link was used: the
    link's session holds the operator's key (``despina.server.ui.session.operator_key``),
    created on first use and kept until revoked.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "despina"
    key = operator_key(app.state.despina.store, user)
    code = ui_state(app).codes.issue([key.key_id])
    return f"{base_url.rstrip('/')}/sign-in/link?code={code}"


def start_up_message(app: Starlette, base_url: str, *, link: bool = True) -> str:
    """What ``despina serve`` prints at every start: a fresh sign-in link for the operator (or,
    with ``link=False``, how to get in), and how everyone else signs in."""
    base = base_url.rstrip("/")
    others = (
        f"Others sign in at {base}/sign-in with a token from "
        "'despina token create --workspace WS' (or --project WS/PROJECT)."
    )
    if not link:
        return f"Web UI: {base}/\n  {others}"
    return (
        "Open the web UI as this server's operator (every workspace; the link works once, "
        f"within an hour; each start prints a new one):\n  {sign_in_link(app, base)}\n  {others}"
    )
