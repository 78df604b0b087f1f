"""Sign-in a newcomer can follow (issue 15, item 10), against real ``despina serve`` processes.

* The one-time link signs in as the server's operator: every workspace, also one created after
  the link was used (a fresh server used to grant only ``default``, so team projects never
  showed).
* Every start prints a fresh link (a restart used to print nothing at all), or, with
  ``--no-sign-in-link``, where to sign in.
* Scripts read the ``.json`` twins with ``Authorization: Bearer``: the JWT access token of the
  Neptune API, the API token itself, or its bare ``api_key``, with the same access checks.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ui_helpers import ServerProcess, mint

from despina.store import Store
from despina.store.access import list_api_keys, revoke_api_key

LINK = re.compile(r"(http://\S+/sign-in/link\?code=\S+)")


def links(server: ServerProcess) -> list[str]:
    return LINK.findall(server.log())


def create_project(home: Path, name: str) -> None:
    store = Store.open(home)
    try:
        store.create_project(name)
    finally:
        store.close()


def visible(client: httpx.Client) -> list[str]:
    answer = client.get("/projects.json")
    assert answer.status_code == 200, answer.text
    return sorted(p["name"] for p in answer.json()["projects"])


@pytest.fixture()
def fresh(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server over an empty home: no project, no token."""
    proc = ServerProcess(tmp_path / "home")
    proc.start()
    yield proc
    proc.stop()


def test_the_link_of_a_fresh_server_reaches_team_projects_created_later(
    fresh: ServerProcess,
) -> None:
    [link] = links(fresh)
    with httpx.Client(base_url=fresh.url, follow_redirects=False, timeout=30) as browser:
        assert browser.get(link).status_code == 303
        assert visible(browser) == []
        create_project(fresh.home, "my-team/birds")
        create_project(fresh.home, "other-team/cats")
        assert visible(browser) == ["my-team/birds", "other-team/cats"]
        assert browser.get("/p/my-team/birds/runs.json").status_code == 200
    store = Store.open(fresh.home)
    try:
        keys = list_api_keys(store)
    finally:
        store.close()
    assert [k.scope for k in keys] == ["*/*"]  # one operator key, listed by 'despina token list'


def test_every_start_prints_a_fresh_link(fresh: ServerProcess) -> None:
    create_project(fresh.home, "my-team/birds")
    mint(fresh.home, fresh.url, workspace="my-team")  # the home has tokens now
    fresh.stop()
    fresh.start()
    first, second = links(fresh)
    assert first != second
    with httpx.Client(base_url=fresh.url, follow_redirects=False, timeout=30) as browser:
        assert browser.get(first).status_code == 400  # the old process's link died with it
        assert browser.get(second).status_code == 303
        assert visible(browser) == ["my-team/birds"]
    assert "despina token create --workspace WS" in fresh.log()


def test_revoking_the_operator_key_ends_operator_sessions(fresh: ServerProcess) -> None:
    [link] = links(fresh)
    with httpx.Client(base_url=fresh.url, follow_redirects=False, timeout=30) as browser:
        assert browser.get(link).status_code == 303
        assert browser.get("/projects.json").status_code == 200
        store = Store.open(fresh.home)
        try:
            [key] = list_api_keys(store)
            assert revoke_api_key(store, key.key_id)
        finally:
            store.close()
        assert browser.get("/projects.json").status_code == 401
    fresh.stop()
    fresh.start()  # a new operator key for the new link
    with httpx.Client(base_url=fresh.url, follow_redirects=False, timeout=30) as browser:
        assert browser.get(links(fresh)[-1]).status_code == 303
        assert browser.get("/projects.json").status_code == 200


def test_no_sign_in_link_prints_where_to_sign_in(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "home", extra_args=("--no-access-log", "--no-sign-in-link"))
    proc.start()
    try:
        assert links(proc) == []
        assert f"{proc.url}/sign-in" in proc.log()
        assert "despina token create --workspace WS" in proc.log()
    finally:
        proc.stop()
    store = Store.open(proc.home)
    try:
        assert list_api_keys(store) == []
    finally:
        store.close()


# -- Authorization: Bearer on the .json twins --------------------------------------------------


@pytest.fixture(scope="module")
def team(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("bearer") / "home"
    for name in ("my-team/birds", "my-team/cats", "rivals/secret"):
        create_project(home, name)
    proc = ServerProcess(home)
    proc.start()
    yield proc
    proc.stop()


def access_token(server: ServerProcess, api_token: str) -> str:
    answer = httpx.get(
        server.url + "/api/backend/v1/authorization/oauth-token",
        headers={"X-Neptune-Api-Token": api_token},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["accessToken"])


def bare_key(api_token: str) -> str:
    return str(json.loads(base64.b64decode(api_token))["api_key"])


def get(server: ServerProcess, path: str, token: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.mark.parametrize("form", ["jwt", "api token", "bare api_key"])
def test_json_twins_accept_bearer_tokens_with_the_api_checks(
    team: ServerProcess, form: str
) -> None:
    workspace = mint(team.home, team.url, workspace="my-team")
    project = mint(team.home, team.url, workspace="my-team", project="cats")
    as_form = {
        "jwt": lambda t: access_token(team, t),
        "api token": lambda t: t,
        "bare api_key": bare_key,
    }[form]
    token = as_form(workspace)
    assert [p["name"] for p in get(team, "/projects.json", token).json()["projects"]] == [
        "my-team/birds",
        "my-team/cats",
    ]
    for path in ("/p/my-team/birds/runs.json", "/p/my-team/birds/attributes.json"):
        assert get(team, path, token).status_code == 200
    refused = get(team, "/p/rivals/secret/runs.json", token)
    assert refused.status_code == 403 and "rivals/secret" in refused.json()["message"]
    narrow = as_form(project)
    assert get(team, "/p/my-team/cats/runs.json", narrow).status_code == 200
    assert get(team, "/p/my-team/birds/runs.json", narrow).status_code == 403


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("Bearer not-a-token", "not valid"),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl", "access token is not valid"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer", "Bearer"),
        ("Bearer 0123456789abcdef.wrongsecret", "unknown API key"),
    ],
)
def test_bad_bearer_tokens_are_401(team: ServerProcess, header: str, hint: str) -> None:
    answer = httpx.get(team.url + "/projects.json", headers={"Authorization": header})
    assert answer.status_code == 401
    assert hint in answer.json()["message"]


def test_a_revoked_key_is_refused_at_once(team: ServerProcess) -> None:
    token = mint(team.home, team.url, workspace="my-team")
    jwt = access_token(team, token)
    assert get(team, "/projects.json", jwt).status_code == 200
    store = Store.open(team.home)
    try:
        assert revoke_api_key(store, bare_key(token).split(".")[0])
    finally:
        store.close()
    assert get(team, "/projects.json", jwt).status_code == 401
    assert get(team, "/projects.json", token).status_code == 401


def test_bearer_works_for_pages_too(team: ServerProcess) -> None:
    token = mint(team.home, team.url, workspace="my-team")
    page = get(team, "/p/my-team/birds", token)
    assert page.status_code == 200 and "my-team/birds" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
