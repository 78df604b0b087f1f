"""The web UI's defences against a real ``despina serve``: security headers on every answer (a
strict Content-Security-Policy, ``nosniff``, ``Referrer-Policy``), no inline script, CSRF tokens
on sign-in and sign-out, cookie flags, and sessions kept (hashed) in the store so that signing
out or revoking a token ends them server-side."""

from __future__ import annotations

import hashlib
from html.parser import HTMLParser

import httpx
import pytest
from ui_helpers import HISTOGRAM_RUN, ServerProcess, Tokens, csrf_field, mint, sign_in

from despina.store import Store
from despina.store.access import list_api_keys, revoke_api_key

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
FORK = "kittiwake-fork0-at200"
CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> httpx.Client:
    browser = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(browser, tokens.workspace).status_code == 303
    return browser


def _csp(answer: httpx.Response) -> dict[str, str]:
    policy = answer.headers.get("content-security-policy", "")
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives[name] = value.strip()
    return directives


def _assert_secured(answer: httpx.Response, what: str) -> None:
    assert answer.headers.get("x-content-type-options") == "nosniff", what
    assert answer.headers.get("referrer-policy") == "same-origin", what
    directives = _csp(answer)
    for name, value in CSP_DIRECTIVES.items():
        assert directives.get(name) == value, (what, name, answer.headers)
    assert "'unsafe-inline'" not in answer.headers["content-security-policy"], what


PAGES = [
    "/projects",
    "/projects.json",
    PROJECT,
    f"{PROJECT}?view=runs&q=%28",  # an NQL error page
    f"{PROJECT}/runs.json",
    f"{PROJECT}/attributes.json",
    f"{PROJECT}/charts?run={FORK}&metric=train/loss",
    f"{PROJECT}/charts.json?run={FORK}",
    f"{PROJECT}/chart.json?run={FORK}&metric=train/loss",
    f"{PROJECT}/run?id={HISTOGRAM_RUN}",
    f"{PROJECT}/run.json?id={HISTOGRAM_RUN}",
    f"{PROJECT}/models",
    f"{PROJECT}/models.json",
    f"{PROJECT}/file?id={HISTOGRAM_RUN}&path=artifacts/notes",
    "/p/demo/nope",  # an HTML error page
    "/p/demo/nope/runs.json",  # a JSON error
    f"{PROJECT}/runs.json?limit=abc",  # a 400
    "/ui/static/charts.js",
    "/ui/static/ui.css",
    "/ui/static/nope.js",
    "/",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_ui_answer_carries_the_security_headers(client: httpx.Client, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code < 500, answer.text
    _assert_secured(answer, path)


@pytest.mark.parametrize("path", ["/sign-in", "/projects.json", PROJECT, "/sign-in/link?code=x"])
def test_signed_out_answers_carry_the_security_headers(server: ServerProcess, path: str) -> None:
    answer = httpx.get(server.url + path, follow_redirects=False)
    _assert_secured(answer, path)


def test_file_downloads_are_sandboxed_attachments(client: httpx.Client) -> None:
    answer = client.get(f"{PROJECT}/file", params={"id": HISTOGRAM_RUN, "path": "artifacts/notes"})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in _csp(answer)


@pytest.mark.parametrize(
    ("uploaded_type", "served"),
    [
        ("text/html", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("image/png", "image/png"),
    ],
)
def test_file_downloads_keep_only_safe_types(
    server: ServerProcess, client: httpx.Client, uploaded_type: str, served: str
) -> None:
    """An uploader chooses the stored type; the UI sends it only when it cannot run script."""
    import despina
    from despina.types import File

    run_id = f"typed-{uploaded_type.replace('/', '-').replace('+', '-')}"
    with despina.Run(
        project="demo/despina",
        run_id=run_id,
        home=server.home,
        enable_console_log_capture=False,
        source_tracking_config=None,
    ) as run:
        run.assign_files({"page": File(b"<script>alert(1)</script>", mime_type=uploaded_type)})
    answer = client.get(f"{PROJECT}/file", params={"id": run_id, "path": "page"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].split(";")[0] == served
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"].startswith("attachment")


class _Scripts(HTMLParser):
    """Every ``<script>`` element and every inline event handler of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[tuple[str, str]] = []
        self.javascript_urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.javascript_urls.append(value or "")


@pytest.mark.parametrize(
    "path",
    [
        "/projects",
        PROJECT,
        f"{PROJECT}?view=runs&q=%28",
        f"{PROJECT}/charts?run={FORK}&metric=train/loss",
        f"{PROJECT}/run?id={HISTOGRAM_RUN}",
        f"{PROJECT}/models",
        "/sign-in",
    ],
)
def test_pages_run_no_inline_script(client: httpx.Client, path: str) -> None:
    """The CSP forbids inline scripts, so none may be needed: only scripts loaded from the
    server, and JSON data blocks (never executed)."""
    answer = client.get(path)
    parser = _Scripts()
    parser.feed(answer.text)
    for script in parser.scripts:
        src = script.get("src")
        assert (src and src.startswith("/ui/static/")) or script.get("type") == "application/json"
    assert parser.handlers == [] and parser.javascript_urls == []


# -- CSRF ------------------------------------------------------------------------------------


def test_sign_in_needs_the_forms_csrf_token(server: ServerProcess, tokens: Tokens) -> None:
    """Login CSRF: another site must not sign a visitor in with the attacker's token."""
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        # a cross-site form post: no cookie of ours and no token
        forged = browser.post("/sign-in", data={"token": tokens.workspace, "next": "/projects"})
        assert forged.status_code == 403, forged.text
        assert "despina_session" not in forged.cookies
        assert "reload the sign-in page" in forged.text
        form = browser.get("/sign-in")
        token = csrf_field(form.text)
        assert token and "despina_csrf" in browser.cookies
        # the cookie alone is not enough, nor a token of another browser
        for csrf in ["", "x" * len(token), token[:-1]]:
            answer = browser.post("/sign-in", data={"token": tokens.workspace, "csrf": csrf})
            assert answer.status_code == 403, csrf
            assert "despina_session" not in answer.cookies
        # the token alone (without its cookie) is not enough either
        with httpx.Client(base_url=server.url, follow_redirects=False) as other:
            answer = other.post("/sign-in", data={"token": tokens.workspace, "csrf": token})
            assert answer.status_code == 403
        answer = browser.post(
            "/sign-in", data={"token": tokens.workspace, "csrf": token, "next": "/projects"}
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/projects"
        assert browser.get("/projects.json").status_code == 200


def test_sign_out_is_a_post_with_a_csrf_token(server: ServerProcess, tokens: Tokens) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        assert sign_in(browser, tokens.workspace).status_code == 303
        assert browser.get("/sign-out").status_code == 405
        forged = browser.post("/sign-out")
        assert forged.status_code == 403
        assert browser.get("/projects.json").status_code == 200  # still signed in
        page = browser.get("/projects")
        token = csrf_field(page.text)
        assert token is not None
        answer = browser.post("/sign-out", data={"csrf": token})
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"
        assert browser.get("/projects.json").status_code == 401


# -- cookies ---------------------------------------------------------------------------------


def _set_cookie(answer: httpx.Response, name: str) -> str:
    for header in answer.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no {name} cookie set: {answer.headers}")


def _flags(header: str) -> set[str]:
    return {part.strip().lower().partition("=")[0] for part in header.split(";")[1:]}


def test_cookies_are_http_only_same_site_and_secure_over_https(
    server: ServerProcess, tokens: Tokens
) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        form = browser.get("/sign-in")
        csrf_cookie = _set_cookie(form, "despina_csrf")
        answer = browser.post(
            "/sign-in", data={"token": tokens.workspace, "csrf": csrf_field(form.text) or ""}
        )
        session_cookie = _set_cookie(answer, "despina_session")
        for header in (csrf_cookie, session_cookie):
            assert {"httponly", "samesite", "path"} <= _flags(header), header
            assert "samesite=lax" in header.lower() or "samesite=strict" in header.lower()
            assert "secure" not in _flags(header)  # plain http: a Secure cookie would be dropped
    # behind a TLS proxy on this host (uvicorn trusts X-Forwarded-Proto from 127.0.0.1); the
    # cookies are sent by hand: httpx, like a browser, keeps Secure cookies off plain http
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.url, follow_redirects=False, headers=https) as browser:
        form = browser.get("/sign-in")
        csrf_cookie = _set_cookie(form, "despina_csrf")
        binding = csrf_cookie.partition(";")[0].partition("=")[2]
        answer = browser.post(
            "/sign-in",
            data={"token": tokens.workspace, "csrf": csrf_field(form.text) or ""},
            headers={"Cookie": f"despina_csrf={binding}"},
        )
        session_cookie = _set_cookie(answer, "despina_session")
        for header in (csrf_cookie, session_cookie):
            assert {"httponly", "secure", "samesite"} <= _flags(header), header


# -- server-side sessions --------------------------------------------------------------------


def test_signing_out_ends_the_session_server_side(server: ServerProcess, tokens: Tokens) -> None:
    """A copy of the cookie (stolen, or kept by another browser) stops working at sign-out."""
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        assert sign_in(browser, tokens.workspace).status_code == 303
        cookie = browser.cookies["despina_session"]
        copy = httpx.Client(base_url=server.url, cookies={"despina_session": cookie})
        assert copy.get("/projects.json").status_code == 200
        token = csrf_field(browser.get("/projects").text)
        assert browser.post("/sign-out", data={"csrf": token}).status_code == 303
        assert copy.get("/projects.json").status_code == 401
        assert copy.get(PROJECT, follow_redirects=False).status_code == 303
        copy.close()


def test_sessions_are_stored_hashed(server: ServerProcess, tokens: Tokens) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        assert sign_in(browser, tokens.workspace).status_code == 303
        cookie = browser.cookies["despina_session"]
    store = Store.open(server.home)  # whichever backend serves the tests
    try:
        with store.read() as conn:
            rows = conn.execute("SELECT * FROM ui_sessions").fetchall()
    finally:
        store.close()
    assert rows
    dump = repr(rows)
    assert cookie not in dump
    assert hashlib.sha256(cookie.encode()).hexdigest() in dump


def test_a_second_sign_in_rotates_the_session(server: ServerProcess, tokens: Tokens) -> None:
    """Adding a token gives a new session id (no fixation); the old id stops working."""
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        assert sign_in(browser, tokens.foreign).status_code == 303
        first = browser.cookies["despina_session"]
        assert sign_in(browser, tokens.other_project).status_code == 303
        second = browser.cookies["despina_session"]
        assert first != second
        names = sorted(p["name"] for p in browser.get("/projects.json").json()["projects"])
        assert names == ["demo/other", "elsewhere/proj"]
    stale = httpx.get(server.url + "/projects.json", cookies={"despina_session": first})
    assert stale.status_code == 401


def test_revoking_the_token_ends_a_copied_session(server: ServerProcess) -> None:
    token = mint(server.home, server.url, workspace="demo", user="revoked-later")
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        assert sign_in(browser, token).status_code == 303
        cookie = browser.cookies["despina_session"]
    copy = {"despina_session": cookie}
    assert httpx.get(server.url + "/projects.json", cookies=copy).status_code == 200
    store = Store.open(server.home)
    try:
        key_id = next(k for k in list_api_keys(store) if k.username == "revoked-later").key_id
        revoke_api_key(store, key_id)
    finally:
        store.close()
    assert httpx.get(server.url + "/projects.json", cookies=copy).status_code == 401


def test_unknown_and_forged_session_ids_are_refused(server: ServerProcess) -> None:
    for value in ["", "x", "e30.AAAA", "a" * 43, "a" * 5000]:
        answer = httpx.get(server.url + "/projects.json", cookies={"despina_session": value})
        assert answer.status_code == 401, value
