"""HTTP handlers of the web UI: HTML pages and their ``.json`` twins, over ``api.py``.

Every handler checks the session first. Pages answer a redirect to the sign-in page without a
session and an HTML error page for refusals and bad input; JSON routes answer the server's one
error shape (401 without a session, 403 outside the session's projects, 400 for bad input,
404 for unknown projects and runs). The work itself runs in a worker thread (the store is
synchronous SQLite).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from despina.errors import AuthError, DespinaError, InvalidQuery, NqlError, RunNotFound
from despina.query.exceptions import NeptuneError, NeptuneProjectInaccessible
from despina.query.service import QueryService
from despina.server.auth import load_server_key
from despina.server.downloads import blob_response
from despina.server.errors import ApiError, bad_request, install_error_handlers
from despina.server.ui import api
from despina.server.ui.charts import MAX_BUCKETS, Axis, MetricPatternError
from despina.server.ui.compare import compare_data
from despina.server.ui.format import display
from despina.server.ui.models import models_data
from despina.server.ui.session import (
    COOKIE,
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_SECONDS,
    Sessions,
    SignInCodes,
    Viewer,
    new_csrf_binding,
    valid_csrf_binding,
)
from despina.server.ui.tables import DEFAULT_SORT, MAX_PAGE, RunsRequest
from despina.store import Store
from despina.store.access import find_project
from despina.store.lifecycle import restore_runs, set_description, trash_runs
from despina.store.run_edits import edit_tags
from despina.store.saved_views import VIEW_KINDS, delete_view, list_views, save_view
from despina.wording import counted

__all__ = ["DOWNLOAD_CSP", "PAGE_CSP", "UI_ROUTES", "UiState", "ui_state"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
MAX_COLUMNS = 200
MAX_CHART_RUNS = 100
MAX_SELECTED_RUNS = 10_000
"""Runs a charts page accepts; it draws the first ``MAX_CHART_RUNS`` and says so."""
MAX_FORM_BYTES = 64 * 1024
MAX_COMPARE_IDS = 1000
Handler = Callable[[Request], Awaitable[Response]]

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
"""The Content-Security-Policy of every UI answer: scripts only from the server's own files (no
inline script, no eval), nothing framed or embedded. Data for scripts travels in JSON blocks
(``<script type="application/json">``), which are never executed."""
DOWNLOAD_CSP = PAGE_CSP + "; sandbox"
"""Downloaded files (sent as attachments) are also sandboxed, should a browser render one."""
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass
class UiState:
    """What the UI handlers share, kept on the application beside the server's state."""

    service: QueryService
    sessions: Sessions
    codes: SignInCodes


def ui_state(app: Starlette) -> UiState:
    """The UI state of ``app`` (created on first use from the server's state)."""
    state: UiState | None = getattr(app.state, "despina_ui", None)
    if state is None:
        server = app.state.despina
        state = UiState(
            # the retrieval endpoints' service: one attribute cache (kept on disk too) per server
            server.retrieval.queries,
            Sessions(server.store, load_server_key(server.store)),
            SignInCodes(server.store),
        )
        app.state.despina_ui = state
    return state


@cache
def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["vendor"] = vendor_files
    env.globals["max_chart_runs"] = MAX_CHART_RUNS
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["display"] = display
    env.filters["counted"] = counted
    return env


@cache
def vendor_files() -> dict[str, str]:
    """The chart library's files in ``static/vendor`` (committed with the package, its version
    in their names; ``make ui-update`` refreshes them from npm)."""
    found = {}
    folder = STATIC_DIR / "vendor"
    for path in sorted(folder.glob("uPlot-*.min.*")) if folder.is_dir() else []:
        found["js" if path.suffix == ".js" else "css"] = f"/ui/static/vendor/{path.name}"
    return found


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page of the UI; its forms carry the CSRF token of the browser's CSRF cookie (set here
    when the browser has none yet)."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    binding = valid_csrf_binding(request.cookies.get(CSRF_COOKIE))
    fresh = binding is None
    if binding is None:
        binding = new_csrf_binding()
    csrf = ui_state(request.app).sessions.csrf_token(binding)
    html = (
        _templates()
        .get_template(name)
        .render(request=request, viewer=viewer, path=request.url.path, csrf=csrf, **context)
    )
    response = HTMLResponse(html, status_code=status)
    if fresh:
        _set_cookie(request, response, CSRF_COOKIE, binding, max_age=None)
    return response


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    """Cookies of the UI: never readable by scripts, not sent on cross-site subrequests or
    posts, and ``Secure`` when the request came over HTTPS (as uvicorn reports its scheme)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def _secured(handler: Handler, policy: str = PAGE_CSP) -> Handler:
    """Every UI answer, errors included, carries the security headers and ``policy``."""
    handlers = install_error_handlers()

    async def secured(request: Request) -> Response:
        try:
            response = await handler(request)
        except Exception as exc:  # answered here, so that error answers get the headers too
            found = next(h for c in type(exc).__mro__ if (h := handlers.get(c)) is not None)
            response = await found(request, exc)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = policy
        return response

    secured.__name__ = handler.__name__
    return secured


# -- access ----------------------------------------------------------------------------------


def _viewer(request: Request) -> Viewer:
    """The viewer of a request: its ``Authorization: Bearer`` token when it has one (scripts:
    a JWT access token or an API token), else its session (401 without either)."""
    sessions = ui_state(request.app).sessions
    authorization = request.headers.get("authorization")
    viewer: Viewer | None
    if authorization is not None:
        viewer = sessions.bearer(authorization, request.app.state.despina.auth)
    else:
        viewer = sessions.viewer(request.cookies.get(COOKIE))
    if viewer is None:
        raise AuthError(
            "not signed in: sign in at /sign-in with an API token, or send "
            "'Authorization: Bearer <API token or access token>'"
        )
    request.state.viewer = viewer
    return viewer


def _project(request: Request) -> str:
    """The project of the path, checked against the session (401, 403, 404)."""
    viewer = _viewer(request)
    name = f"{request.path_params['workspace']}/{request.path_params['project']}"
    viewer.require(name)
    if find_project(request.app.state.despina.store, name) is None:
        raise ApiError(404, f"project {name!r} does not exist")
    return name


def _html(handler: Handler) -> Handler:
    """Pages: a redirect to sign in without a session, an HTML error page for refusals."""

    async def page(request: Request) -> Response:
        try:
            _refuse_nul(request)
            return await handler(request)
        except AuthError as exc:
            if exc.status == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/sign-in?{urlencode({'next': target})}", 303)
            return _error_page(request, exc.status, str(exc))
        except ApiError as exc:
            return _error_page(request, exc.status, exc.message)
        except NeptuneProjectInaccessible as exc:
            return _error_page(request, 404, str(exc))
        except NeptuneError as exc:
            return _error_page(request, 400, str(exc))
        except DespinaError as exc:
            status = int(getattr(exc, "status", 500))
            if status >= 500:
                raise
            return _error_page(request, status, str(exc))

    page.__name__ = handler.__name__
    return page


def _refuse_nul(request: Request) -> None:
    """A 400 for a parameter holding a NUL character: no name, path or run id holds one, and
    PostgreSQL cannot even look one up (the same answer on both backends)."""
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise bad_request(f"parameter {name!r} holds a NUL character (\\x00): {value[:100]!r}")


def _json(handler: Handler) -> Handler:
    """JSON twins: errors in the server's one shape, NQL errors with their span."""

    async def twin(request: Request) -> Response:
        try:
            _refuse_nul(request)
            return await handler(request)
        except NqlError as exc:
            raise nql_error(exc) from None
        except NeptuneProjectInaccessible as exc:
            raise ApiError(404, str(exc)) from None
        except NeptuneError as exc:
            raise bad_request(str(exc)) from None

    twin.__name__ = handler.__name__
    return twin


def nql_error(exc: NqlError) -> ApiError:
    """A 400 for an NQL error, carrying the span to underline."""
    return bad_request(
        str(exc),
        title=getattr(exc, "title", "Invalid query"),
        position=exc.start,
        start=exc.start,
        end=exc.end,
        line=exc.line,
        col=exc.col,
        description=exc.description,
    )


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message=message)


def _json_response(data: Any) -> JSONResponse:
    return JSONResponse(data)


# -- parameters --------------------------------------------------------------------------------


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw!r:.40}") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{name} must be a number, got {raw!r:.40}") from None
    if not math.isfinite(value):
        raise bad_request(f"{name} must be a finite number, got {raw!r:.40}")
    return value


def _choice(request: Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name) or default
    if value not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}, got {value!r:.40}")
    return value


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "") in ("1", "true", "on", "yes")


def _list(request: Request, name: str, limit: int) -> list[str]:
    values = [v for v in request.query_params.getlist(name) if v != ""]
    if len(values) > limit:
        raise bad_request(f"at most {limit} {name} parameters are allowed, got {len(values)}")
    if any(len(v) > 1000 for v in values):
        raise bad_request(f"a {name} parameter is longer than 1000 characters")
    return values


def _runs_request(request: Request) -> RunsRequest:
    view = _choice(request, "view", ("experiments", "runs"), "experiments")
    limit = _int(request, "limit", 50, 1, MAX_PAGE)
    page = _int(request, "page", 1, 1, 10**9)
    offset = _int(request, "offset", (page - 1) * limit, 0, 10**12)
    query = request.query_params.get("q", "")
    if len(query) > 20_000:
        raise bad_request("the query is longer than 20,000 characters")
    return RunsRequest(
        kind="experiment" if view == "experiments" else "run",
        nql=query,
        sort=request.query_params.get("sort") or DEFAULT_SORT,
        direction="asc" if _choice(request, "dir", ("asc", "desc"), "desc") == "asc" else "desc",
        offset=offset,
        limit=limit,
        trashed=_flag(request, "trashed"),
    )


def _columns(request: Request, service: QueryService, project: str, kind: str) -> list[str]:
    """The table's columns: ``col=`` in order (default: the project's usual ones), the pinned
    ones (``pin=``) first."""
    columns = list(dict.fromkeys(_list(request, "col", MAX_COLUMNS)))
    if not columns:
        columns = api.default_columns(service, project, kind)
    pins = set(_list(request, "pin", MAX_COLUMNS))
    return [c for c in columns if c in pins] + [c for c in columns if c not in pins]


def _column_tools(request: Request, columns: list[str]) -> list[dict[str, Any]]:
    """Per column, the links that move it left or right, remove it, and pin or unpin it (a
    pinned column comes first and stays in view when the table scrolls sideways)."""
    pins = [c for c in _list(request, "pin", MAX_COLUMNS) if c in columns]
    tools = []
    for i, column in enumerate(columns):

        def moved(j: int, i: int = i) -> list[str]:
            order = list(columns)
            order[i], order[j] = order[j], order[i]
            return order

        pinned = column in pins
        tools.append(
            {
                "pinned": pinned,
                "left": _table_url(request, col=moved(i - 1)) if i > 0 else None,
                "right": _table_url(request, col=moved(i + 1)) if i + 1 < len(columns) else None,
                "remove": _table_url(
                    request,
                    col=[c for c in columns if c != column] or None,
                    pin=[p for p in pins if p != column] or None,
                ),
                "pin": _table_url(
                    request,
                    col=columns,
                    pin=[p for p in pins if p != column] if pinned else [*pins, column],
                ),
            }
        )
    return tools


AXES: tuple[Axis, ...] = ("step", "time", "relative", "metric")


def _axis(request: Request) -> Axis:
    chosen = _choice(request, "x", AXES, "step")
    return next(axis for axis in AXES if axis == chosen)


def _x_metric(request: Request) -> str | None:
    """The metric on the x axis (``?x=metric&xmetric=<path>``)."""
    name = request.query_params.get("xmetric", "").strip()
    if len(name) > 1024:
        raise bad_request("xmetric is longer than 1024 characters")
    return name or None


def _patterns(request: Request) -> list[str]:
    return [p for raw in _list(request, "metric", 100) for p in raw.split()]


# -- sign-in -------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/projects"
    return target


async def _form(request: Request) -> dict[str, str]:
    """A posted form (URL-encoded, at most 64 KiB): the first value of each field."""
    return {name: values[0] for name, values in (await _form_fields(request)).items()}


async def _form_fields(request: Request) -> dict[str, list[str]]:
    """A posted form (URL-encoded, at most 64 KiB): every value of each field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, f"the form is over {MAX_FORM_BYTES // 1024} KiB")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise bad_request("the form must be UTF-8") from None
    return fields


def _csrf_ok(request: Request, form: dict[str, str]) -> bool:
    """Whether the form carries the token of this browser's CSRF cookie (a form of ours)."""
    binding = valid_csrf_binding(request.cookies.get(CSRF_COOKIE))
    return ui_state(request.app).sessions.csrf_ok(binding, form.get(CSRF_FIELD))


CSRF_REFUSED = (
    "This form expired or was sent from another site: reload the sign-in page and try again "
    "(your browser must accept cookies from this server)."
)


async def _signed_in(request: Request, key_ids: list[str], target: str) -> Response:
    """A new session with ``key_ids`` (plus those of the browser's current session, which it
    replaces: the id changes whenever what it reaches does)."""
    state = ui_state(request.app)
    current = request.cookies.get(COOKIE)

    def start() -> str:
        keys = [*key_ids, *state.sessions.key_ids(current)]
        return state.sessions.start(keys, replaces=current)

    session_id = await run_in_threadpool(start)
    response = RedirectResponse(_safe_next(target), 303)
    _set_cookie(request, response, COOKIE, session_id, max_age=SESSION_SECONDS)
    return response


async def home(request: Request) -> Response:
    return RedirectResponse("/projects", 303)


async def _current_viewer(request: Request) -> None:
    """Remember the viewer, if signed in (the sign-in page says who is)."""
    state = ui_state(request.app)
    cookie = request.cookies.get(COOKIE)
    request.state.viewer = await run_in_threadpool(state.sessions.viewer, cookie)


async def sign_in_form(request: Request) -> Response:
    await _current_viewer(request)
    return render(request, "sign_in.html", next=_safe_next(request.query_params.get("next")))


async def sign_in(request: Request) -> Response:
    form = await _form(request)
    token = form.get("token", "").strip()
    target = _safe_next(form.get("next"))
    state = ui_state(request.app)
    if not _csrf_ok(request, form):
        await _current_viewer(request)
        return render(request, "sign_in.html", 403, next=target, error=CSRF_REFUSED)
    if not token:
        return render(request, "sign_in.html", 400, next=target, error="Paste an API token.")
    try:
        key = await run_in_threadpool(state.sessions.check_token, token)
    except AuthError as exc:
        return render(request, "sign_in.html", 401, next=target, error=str(exc))
    return await _signed_in(request, [key.key_id], target)


async def sign_in_link(request: Request) -> Response:
    code = request.query_params.get("code", "")
    state = ui_state(request.app)
    keys = state.codes.redeem(code) if code else None
    if not keys:
        return render(
            request,
            "sign_in.html",
            400,
            next="/projects",
            error="This sign-in link was already used or has expired (restarting 'despina "
            "serve' prints a new one); or paste an API token ('despina token create "
            "--workspace WS' prints one).",
        )
    return await _signed_in(request, keys, "/projects")


async def sign_out(request: Request) -> Response:
    """End the session server-side (a copy of the cookie stops working too)."""
    form = await _form(request)
    if not _csrf_ok(request, form):
        await _current_viewer(request)
        return _error_page(request, 403, CSRF_REFUSED.replace("sign-in page", "page"))
    state = ui_state(request.app)
    await run_in_threadpool(state.sessions.end, request.cookies.get(COOKIE))
    response = RedirectResponse("/sign-in", 303)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )
    return response


# -- projects --------------------------------------------------------------------------------


async def _projects(request: Request) -> dict[str, Any]:
    viewer = _viewer(request)
    service = ui_state(request.app).service
    return await run_in_threadpool(api.projects_data, service, viewer.reaches)


@_html
async def projects_page(request: Request) -> Response:
    return render(request, "projects.html", data=await _projects(request))


@_json
async def projects_json(request: Request) -> Response:
    return _json_response(await _projects(request))


# -- runs table ------------------------------------------------------------------------------


def _table_url(request: Request, **changes: Any) -> str:
    """The table URL with some parameters changed (``None`` removes one)."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    for key, value in changes.items():
        if value is None:
            continue
        if isinstance(value, list):
            items.extend((key, v) for v in value)
        else:
            items.append((key, str(value)))
    query = urlencode(items)
    return request.url.path + (f"?{query}" if query else "")


async def _runs(request: Request) -> tuple[str, RunsRequest, dict[str, Any]]:
    project = _project(request)
    service = ui_state(request.app).service
    runs_request = _runs_request(request)
    columns = await run_in_threadpool(_columns, request, service, project, runs_request.kind)
    data = await run_in_threadpool(api.runs_data, service, project, runs_request, columns)
    return project, runs_request, data


@_html
async def runs_page(request: Request) -> Response:
    try:
        project, runs_request, data = await _runs(request)
    except NqlError as exc:
        project = _project(request)
        return render(
            request,
            "runs.html",
            400,
            project=project,
            data=None,
            query=request.query_params.get("q", ""),
            view=request.query_params.get("view", "experiments"),
            nql_error=exc,
            url=lambda **changes: _table_url(request, **changes),
        )
    return render(
        request,
        "runs.html",
        project=project,
        data=data,
        query=runs_request.nql,
        view=data["view"],
        nql_error=None,
        url=lambda **changes: _table_url(request, **changes),
        column_tools=_column_tools(request, data["columns"]),
        **await _views_context(request, project),
    )


@_json
async def runs_json(request: Request) -> Response:
    _, _, data = await _runs(request)
    return _json_response(data)


@_json
async def attributes_json(request: Request) -> Response:
    project = _project(request)
    service = ui_state(request.app).service
    return _json_response(await run_in_threadpool(api.attributes_data, service, project))


# -- charts --------------------------------------------------------------------------------


async def _charts(request: Request) -> tuple[str, dict[str, Any]]:
    project = _project(request)
    service = ui_state(request.app).service
    runs = _list(request, "run", MAX_CHART_RUNS)
    data = await run_in_threadpool(
        api.charts_data, service, project, runs, _patterns(request), _group(request)
    )
    data["axis"] = _axis(request)
    data["log"] = _flag(request, "log")
    return project, data


def _group(request: Request) -> str | None:
    """The ``group=`` attribute path that groups a chart's runs, if any."""
    group = request.query_params.get("group", "").strip()
    if len(group) > 1024:
        raise bad_request("the group attribute path is longer than 1024 characters")
    return group or None


def _charts_despite(
    service: QueryService,
    project: str,
    runs: list[str],
    patterns: list[str],
    group: str | None = None,
) -> tuple[dict[str, Any], MetricPatternError | None]:
    """The charts of the valid patterns, and the first bad pattern's error: a typo in one
    pattern keeps the other charts on the page (the JSON twin answers 400 instead)."""
    first: MetricPatternError | None = None
    remaining = list(patterns)
    while True:
        try:
            data = api.charts_data(service, project, runs, remaining, group)
        except MetricPatternError as exc:
            first = first or exc
            remaining = [p for p in remaining if p != exc.pattern]
            continue
        if first is not None and not remaining:
            data["metrics"], data["more_metrics"] = [], 0
        data["patterns"] = [p for p in patterns if p.strip()]
        return data, first


def _pattern_error(patterns: list[str], error: MetricPatternError) -> dict[str, Any]:
    """Where the bad pattern sits in the metric box's text (patterns joined by spaces)."""
    text = " ".join(patterns)
    start = 0
    for pattern in patterns:
        if pattern == error.pattern:
            break
        start += len(pattern) + 1
    return {
        "text": text,
        "start": start,
        "end": start + len(error.pattern),
        "message": f"not a metric name nor a valid regular expression: {error.reason}",
    }


@_html
async def charts_page(request: Request) -> Response:
    project = _project(request)
    service = ui_state(request.app).service
    chosen = _list(request, "run", MAX_SELECTED_RUNS)
    runs = chosen[:MAX_CHART_RUNS]
    # the browser sends the first runs of a bigger selection and how many were selected
    selected = max(len(chosen), _int(request, "selected", 0, 0, 10**9))
    patterns = _patterns(request)
    group = _group(request)
    data, error = await run_in_threadpool(_charts_despite, service, project, runs, patterns, group)
    data["selected"] = selected
    data["band"] = _choice(request, "band", ("minmax", "std"), "minmax")
    data["together"] = _flag(request, "together")
    data["axis"] = _axis(request)
    data["log"] = _flag(request, "log")
    config = {
        "chartUrl": f"/p/{project}/chart.json",
        "chartsUrl": f"/p/{project}/charts.json",
        "runUrl": f"/p/{project}/run",
        "runs": data["runs"],
        "states": data["states"],
        "tailUrl": f"/p/{project}/chart-tail.json",
        "metrics": data["metrics"],
        "axis": data["axis"],
        "log": data["log"],
        "group": data["group"],
        "groups": data["groups"],
        "band": data["band"],
        "together": data["together"],
        "xmetric": _x_metric(request) or "",
    }
    return render(
        request,
        "charts.html",
        400 if error else 200,
        project=project,
        data=data,
        config=config,
        metric_error=_pattern_error(patterns, error) if error else None,
        **await _views_context(request, project),
    )


@_json
async def charts_json(request: Request) -> Response:
    try:
        _, data = await _charts(request)
    except MetricPatternError as exc:
        where = _pattern_error(_patterns(request), exc)
        raise bad_request(
            str(exc),
            title="Invalid metric pattern",
            pattern=exc.pattern,
            start=where["start"],
            end=where["end"],
            description=where["message"],
        ) from None
    return _json_response(data)


def _chart_request(request: Request, runs_hint: str) -> tuple[str, QueryService, list[str], str]:
    """The project, query service, ``run=`` list and ``metric=`` of a chart request.

    Raises:
        ApiError: 400 without a metric or a run (``runs_hint`` shows how to give them).
    """
    project = _project(request)  # access first: a project out of reach is a 403, not a 400
    runs = _list(request, "run", MAX_CHART_RUNS)
    metric = request.query_params.get("metric", "")
    if not metric:
        raise bad_request("give the metric to chart: ?metric=<float series path>")
    if not runs:
        raise bad_request(f"give at least one run: {runs_hint}")
    return project, ui_state(request.app).service, runs, metric


@_json
async def chart_json(request: Request) -> Response:
    project, service, runs, metric = _chart_request(request, "?run=<run id>&run=...")
    low, high = _float(request, "from"), _float(request, "to")
    if (low is None) != (high is None):
        raise bad_request("give both from and to (a zoom window), or neither")
    window = None if low is None or high is None else (low, high)
    buckets = _int(request, "buckets", MAX_BUCKETS, 2, MAX_BUCKETS)
    data = await run_in_threadpool(
        lambda: api.chart_data(
            service,
            project,
            runs,
            metric,
            axis=_axis(request),
            window=window,
            buckets=buckets,
            x_metric=_x_metric(request),
        )
    )
    return _json_response(data)


def _after(request: Request) -> list[float | None]:
    """The ``after=`` steps of a live update, one per ``run=`` (blank: from the first point)."""
    steps: list[float | None] = []
    for raw in request.query_params.getlist("after"):
        if raw == "":
            steps.append(None)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise bad_request(f"after must be a step number, got {raw!r:.40}") from None
        if not math.isfinite(value):
            raise bad_request(f"after must be a finite step, got {raw!r:.40}")
        steps.append(value)
    return steps


@_json
async def chart_tail_json(request: Request) -> Response:
    """A live chart's update: the points of ``metric`` each run logged after its ``after``
    step (bucketed by ``width``, the chart's bucket width), and the runs' states."""
    project, service, runs, metric = _chart_request(request, "?run=<run id>&after=<last step>&...")
    after = _after(request)
    if len(after) != len(runs):
        raise bad_request(f"give one after= per run= (got {len(after)} for {len(runs)} runs)")
    width = _float(request, "width")
    if width is not None and width <= 0:
        raise bad_request(f"width must be a positive number, got {width}")
    data = await run_in_threadpool(
        lambda: api.chart_tail_data(
            service, project, runs, metric, after, axis=_axis(request), width=width
        )
    )
    return _json_response(data)


@_json
async def runs_live_json(request: Request) -> Response:
    """A live runs table's update: the state and cells (``col=``) of the runs ``run=``."""
    project = _project(request)
    service = ui_state(request.app).service
    runs = _list(request, "run", MAX_PAGE)
    columns = list(dict.fromkeys(_list(request, "col", MAX_COLUMNS)))
    data = await run_in_threadpool(api.live_rows_data, service, project, runs, columns)
    return _json_response(data)


# -- run page ------------------------------------------------------------------------------


def _run_id(request: Request) -> str:
    run_id = request.query_params.get("id", "")
    if not run_id:
        raise bad_request("give the run: ?id=<run id>")
    return run_id


async def _run(request: Request) -> tuple[str, dict[str, Any]]:
    project = _project(request)
    run_id = _run_id(request)
    service = ui_state(request.app).service
    return project, await run_in_threadpool(api.run_data, service, project, run_id)


# -- managing runs (forms with the CSRF token; the same reach as the API's) -----------------------

EDIT_ACTIONS = ("trash", "restore", "description", "tags")


def _words(text: str) -> list[str]:
    """Tags typed in a box: separated by commas or new lines, trimmed, empty ones dropped."""
    return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


def _apply_edit(store: Store, project: str, runs: list[str], form: dict[str, str]) -> int:
    """Carry out one edit; returns how many runs it changed."""
    action = form.get("action", "")
    if action not in EDIT_ACTIONS:
        raise bad_request(f"action must be one of {', '.join(EDIT_ACTIONS)}, got {action!r:.40}")
    try:
        if action == "trash":
            return trash_runs(store, project, runs)
        if action == "restore":
            return restore_runs(store, project, runs)
        if len(runs) != 1:
            raise bad_request(f"{action} edits one run at a time, got {len(runs)}")
        if action == "description":
            text = form.get("description", "")
            if len(text.encode()) > 64 * 1024:
                raise bad_request("the description is over 64 KiB")
            set_description(store, project, runs[0], text)
            return 1
        path = form.get("path", "sys/tags")
        issues = edit_tags(
            store,
            project,
            runs[0],
            path,
            _words(form.get("add", "")),
            _words(form.get("remove", "")),
        )
        if issues:
            raise bad_request("; ".join(issue.message for issue in issues))
        return 1
    except RunNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except InvalidQuery as exc:
        raise bad_request(str(exc)) from None


@_html
async def runs_edit(request: Request) -> Response:
    """Trash, restore, describe or tag runs (``run=`` fields; one for a description or tags),
    then back to ``next`` (a page of this server) or the first run's page."""
    project = _project(request)
    fields = await _form_fields(request)
    form = {name: values[0] for name, values in fields.items()}
    if not _csrf_ok(request, form):
        return _error_page(request, 403, CSRF_REFUSED.replace("sign-in page", "page"))
    runs = [r for r in fields.get("run", []) if r]
    if not runs:
        raise bad_request("give the runs to change: run=<run id>")
    if len(runs) > MAX_SELECTED_RUNS:
        raise bad_request(f"at most {MAX_SELECTED_RUNS:,} runs at once, got {len(runs):,}")
    store = request.app.state.despina.store
    changed = await run_in_threadpool(_apply_edit, store, project, runs, form)
    fallback = f"/p/{project}/run?{urlencode({'id': runs[0]})}"
    target = _safe_next(form.get("next")) if form.get("next") else fallback
    # the page says what was done (a fixed message per action: nothing from the form is shown)
    target = re.sub(r"[?&](done|changed)=[^&]*", "", target)
    sep = "&" if "?" in target else "?"
    done = urlencode({"done": form["action"], "changed": changed})
    return RedirectResponse(f"{target}{sep}{done}", 303)


# -- saved views ----------------------------------------------------------------------------

_NOT_SAVED = re.compile(r"(^|&)(done|changed|saved)=[^&]*")


async def _views_context(request: Request, project: str) -> dict[str, Any]:
    """What a page needs for its views menu: the project's views and this page's settings."""
    store = request.app.state.despina.store
    views = await run_in_threadpool(list_views, store, project)
    return {"saved_views": views, "page_query": _NOT_SAVED.sub("", request.url.query).lstrip("&")}


@_html
async def views_edit(request: Request) -> Response:
    """Save this page's settings as a named view of the project, or delete a view."""
    project = _project(request)
    form = await _form(request)
    if not _csrf_ok(request, form):
        return _error_page(request, 403, CSRF_REFUSED.replace("sign-in page", "page"))
    store = request.app.state.despina.store
    action, name, kind = form.get("action"), form.get("name", ""), form.get("kind", "runs")
    if kind not in VIEW_KINDS:
        raise bad_request(f"kind must be one of {', '.join(VIEW_KINDS)}, got {kind!r:.40}")
    base = f"/p/{project}" + ("/charts" if kind == "charts" else "")
    if action == "delete":
        await run_in_threadpool(delete_view, store, project, name)
        return RedirectResponse(base, 303)
    if action != "save":
        raise bad_request(f"action must be save or delete, got {action!r:.40}")
    query = _NOT_SAVED.sub("", form.get("query", "")).lstrip("&?")
    owner = _viewer(request).username
    try:
        await run_in_threadpool(save_view, store, project, name, kind, query, owner)
    except InvalidQuery as exc:
        raise bad_request(str(exc)) from None
    sep = "&" if query else ""
    return RedirectResponse(f"{base}?{query}{sep}{urlencode({'saved': name.strip()})}", 303)


@_json
async def views_json(request: Request) -> Response:
    project = _project(request)
    views = await run_in_threadpool(list_views, request.app.state.despina.store, project)
    return _json_response(
        {
            "views": [
                {
                    "name": v.name,
                    "kind": v.kind,
                    "query": v.query,
                    "owner": v.owner,
                    "updated": v.updated_ms,
                }
                for v in views
            ]
        }
    )


@_html
async def run_page(request: Request) -> Response:
    project, data = await _run(request)
    payload = {
        "sparklines": data["sparklines"],
        "histograms": data["histograms"],
    }
    return render(
        request,
        "run.html",
        project=project,
        data=data,
        payload=payload,
    )


@_json
async def run_json(request: Request) -> Response:
    _, data = await _run(request)
    return _json_response(data)


@_html
async def neptune_run_link(request: Request) -> Response:
    """The run link neptune-scale prints (``/WS/PROJECT/-/run/?customId=RUN``): the run's page."""
    project = _project(request)  # sign-in and access checks as for every page
    run_id = request.query_params.get("customId", "")
    if not run_id:
        raise bad_request("give the run: ?customId=<run id>")
    return RedirectResponse(f"/p/{project}/run?{urlencode({'id': run_id})}", 303)


async def file_download(request: Request) -> Response:
    project = _project(request)
    # a run (?id=<run id>) or a model-registry object (?object=<sys/id>)
    target = request.query_params.get("object", "")
    kind = "object" if target else "run"
    run_id = target or _run_id(request)
    attribute = request.query_params.get("path", "")
    if not attribute:
        raise bad_request("give the file attribute: ?path=<attribute path>")
    service = ui_state(request.app).service
    step = _float(request, "step")
    try:
        found = await run_in_threadpool(
            api.download, service, project, run_id, attribute, step, kind
        )
        # the uploader chose the stored type: sent only if it cannot run script on this origin
        return await run_in_threadpool(
            blob_response, found.blobs, found.sha256, found.size, found.mime_type, found.filename
        )
    except LookupError as exc:  # BlobNotFound too: the content went missing
        raise ApiError(404, str(exc)) from None


# -- compare ---------------------------------------------------------------------------------


async def _compare(request: Request) -> tuple[str, dict[str, Any]]:
    """The runs of ``?id=`` (``?run=`` too: the runs table's selection boxes) side by side."""
    project = _project(request)
    run_ids = _list(request, "id", MAX_COMPARE_IDS) + _list(request, "run", MAX_COMPARE_IDS)
    service = ui_state(request.app).service
    return project, await run_in_threadpool(compare_data, service, project, run_ids)


@_html
async def compare_page(request: Request) -> Response:
    picked = _list(request, "run", MAX_COMPARE_IDS)
    if picked and not _list(request, "id", MAX_COMPARE_IDS):
        # the runs table's form sends its boxes as run= (and its metric field): a clean URL
        _project(request)
        target = f"{request.url.path}?{urlencode([('id', r) for r in picked])}"
        return RedirectResponse(target, 303)
    project, data = await _compare(request)
    payload = {"rows": [{"differs": r["differs"]} for r in data["rows"]]}
    return render(request, "compare.html", project=project, data=data, payload=payload)


@_json
async def compare_json(request: Request) -> Response:
    _, data = await _compare(request)
    if not data["runs"] and not data["unknown_runs"]:
        raise bad_request("give the runs to compare: ?id=<run id>&id=<run id>...")
    return _json_response(data)


# -- model registry --------------------------------------------------------------------------


async def _models(request: Request) -> tuple[str, dict[str, Any]]:
    project = _project(request)
    store = request.app.state.despina.store
    service = ui_state(request.app).service
    return project, await run_in_threadpool(models_data, store, project, service)


@_html
async def models_page(request: Request) -> Response:
    project, data = await _models(request)
    return render(request, "models.html", project=project, data=data)


@_json
async def models_json(request: Request) -> Response:
    _, data = await _models(request)
    return _json_response(data)


# -- static files ----------------------------------------------------------------------------

_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


async def static(request: Request) -> Response:
    name = str(request.path_params["name"])
    path = (STATIC_DIR / name).resolve()
    if (
        STATIC_DIR.resolve() not in path.parents
        or not path.is_file()
        or path.name.startswith(".")
        or path.suffix not in _STATIC_TYPES
    ):
        raise ApiError(404, f"no static file {name!r}")
    cache_control = "public, max-age=31536000, immutable" if "vendor" in path.parts else "no-cache"
    return FileResponse(
        path, media_type=_STATIC_TYPES[path.suffix], headers={"Cache-Control": cache_control}
    )


Method = Literal["GET", "POST"]

_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/", home),
    ("GET", "/sign-in", sign_in_form),
    ("POST", "/sign-in", sign_in),
    ("GET", "/sign-in/link", sign_in_link),
    ("POST", "/sign-out", sign_out),
    ("GET", "/projects", projects_page),
    ("GET", "/projects.json", projects_json),
    ("GET", "/p/{workspace}/{project}", runs_page),
    ("GET", "/p/{workspace}/{project}/runs.json", runs_json),
    ("GET", "/p/{workspace}/{project}/attributes.json", attributes_json),
    ("GET", "/p/{workspace}/{project}/charts", charts_page),
    ("GET", "/p/{workspace}/{project}/charts.json", charts_json),
    ("GET", "/p/{workspace}/{project}/chart.json", chart_json),
    ("GET", "/p/{workspace}/{project}/chart-tail.json", chart_tail_json),
    ("GET", "/p/{workspace}/{project}/runs-live.json", runs_live_json),
    ("GET", "/p/{workspace}/{project}/run", run_page),
    ("GET", "/p/{workspace}/{project}/run.json", run_json),
    ("POST", "/p/{workspace}/{project}/runs/edit", runs_edit),
    ("POST", "/p/{workspace}/{project}/views", views_edit),
    ("GET", "/p/{workspace}/{project}/views.json", views_json),
    ("GET", "/p/{workspace}/{project}/compare", compare_page),
    ("GET", "/p/{workspace}/{project}/compare.json", compare_json),
    ("GET", "/p/{workspace}/{project}/models", models_page),
    ("GET", "/p/{workspace}/{project}/models.json", models_json),
    ("GET", "/ui/static/{name:path}", static),
    ("GET", "/{workspace}/{project}/-/run/", neptune_run_link),
]

UI_ROUTES: list[tuple[str, str, Handler]] = [
    *((method, path, _secured(handler)) for method, path, handler in _ROUTES),
    ("GET", "/p/{workspace}/{project}/file", _secured(_json(file_download), DOWNLOAD_CSP)),
]
"""Every route of the web UI: (method, path, handler), each answering with the security
headers (:data:`PAGE_CSP`, or :data:`DOWNLOAD_CSP` for downloads)."""
