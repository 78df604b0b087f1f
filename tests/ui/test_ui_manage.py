"""Managing runs from the web UI against a real ``despina serve``: tags and group tags, the
description, trash and restore, each a form posted with the page's CSRF token, refused without
it and for a session that does not reach the project, and seen by the query API at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ui_helpers import ServerProcess, Tokens, csrf_field, sign_in, sign_in_tab, watch_errors

from despina.project import Project

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
RUN = "kittiwake-lr0.0003-s0"
EDIT = f"{PROJECT}/runs/edit"


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> httpx.Client:
    browser = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(browser, tokens.workspace).status_code == 303
    return browser


def _csrf(client: httpx.Client) -> str:
    token = csrf_field(client.get(f"{PROJECT}/run", params={"id": RUN}).text)
    assert token
    return token


def _run(server: ServerProcess, run: str = RUN) -> dict[str, Any]:
    table = Project("demo/despina", home=server.home).fetch_runs_table(
        columns=["sys/custom_run_id", "sys/tags", "sys/group_tags", "sys/description"],
        trashed=None,
    )
    rows = [r for r in table.to_rows() if r["sys/custom_run_id"] == run]
    assert len(rows) == 1
    row = dict(rows[0])
    for path in ("sys/tags", "sys/group_tags"):  # string sets come back comma-joined
        value = row.get(path)
        row[path] = set(value.split(",")) if isinstance(value, str) and value else set()
    return row


def test_tags_description_trash_and_restore(client: httpx.Client, server: ServerProcess) -> None:
    csrf = _csrf(client)
    answer = client.post(
        EDIT,
        data={"csrf": csrf, "run": RUN, "action": "tags", "add": "keep, best", "remove": "demo"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{PROJECT}/run?id={RUN}&done=tags&changed=1"
    tags = _run(server)["sys/tags"]
    assert {"keep", "best"} <= tags and "demo" not in tags
    client.post(
        EDIT,
        data={
            "csrf": csrf,
            "run": RUN,
            "action": "tags",
            "path": "sys/group_tags",
            "add": "sweep-3",
        },
    )
    assert _run(server)["sys/group_tags"] == {"sweep-3"}
    client.post(
        EDIT,
        data={
            "csrf": csrf,
            "run": RUN,
            "action": "description",
            "description": "the <b>baseline</b>",
        },
    )
    assert _run(server)["sys/description"] == "the <b>baseline</b>"
    page = client.get(f"{PROJECT}/run", params={"id": RUN, "done": "description"}).text
    assert "Description saved." in page and "the &lt;b&gt;baseline&lt;/b&gt;" in page
    # trash and restore several runs at once, back to the table page
    other = "kittiwake-lr0.001-s1"
    answer = client.post(
        EDIT,
        data={
            "csrf": csrf,
            "run": [RUN, other],
            "action": "trash",
            "next": f"{PROJECT}?view=runs&done=old",
        },
    )
    assert answer.headers["location"] == f"{PROJECT}?view=runs&done=trash&changed=2"
    assert "2 runs moved to the trash." in client.get(answer.headers["location"]).text
    rows = (
        Project("demo/despina", home=server.home)
        .fetch_runs_table(columns=["sys/custom_run_id"])
        .to_rows()
    )
    assert {RUN, other}.isdisjoint(r["sys/custom_run_id"] for r in rows)
    client.post(EDIT, data={"csrf": csrf, "run": [RUN, other], "action": "restore"})
    rows = (
        Project("demo/despina", home=server.home)
        .fetch_runs_table(columns=["sys/custom_run_id"])
        .to_rows()
    )
    assert {RUN, other} <= {r["sys/custom_run_id"] for r in rows}


def test_refusals_change_nothing(
    client: httpx.Client, server: ServerProcess, tokens: Tokens
) -> None:
    before = _run(server)
    # no CSRF token, or another browser's
    assert client.post(EDIT, data={"run": RUN, "action": "trash"}).status_code == 403
    assert (
        client.post(EDIT, data={"csrf": "x" * 40, "run": RUN, "action": "trash"}).status_code == 403
    )
    csrf = _csrf(client)
    assert client.post(EDIT, data={"csrf": csrf, "run": RUN, "action": "drop"}).status_code == 400
    assert client.post(EDIT, data={"csrf": csrf, "action": "trash"}).status_code == 400
    missing = client.post(EDIT, data={"csrf": csrf, "run": "no-such-run", "action": "trash"})
    assert missing.status_code == 404 and "no-such-run" in missing.text
    bad = client.post(
        EDIT, data={"csrf": csrf, "run": RUN, "action": "tags", "path": "sys/name", "add": "x"}
    )
    assert bad.status_code == 400 and "sys/tags" in bad.text
    # a session that does not reach the project
    stranger = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(stranger, tokens.other_project).status_code == 303
    token = csrf_field(stranger.get("/projects").text)
    refused = stranger.post(EDIT, data={"csrf": token, "run": RUN, "action": "trash"})
    assert refused.status_code == 403
    assert _run(server) == before


def test_in_the_browser(browser: Any, server: ServerProcess, tokens: Tokens) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    watch_errors(page)
    try:
        sign_in_tab(page, server, tokens.workspace)
        page.goto(server.url + f"{PROJECT}/run?id={RUN}")
        page.fill("#edit-tags-add", "from-the-browser")
        page.click("form.manage-tags button[type=submit]")
        page.wait_for_url("**done=tags**")
        assert "from-the-browser" in page.locator("p.tags .tag").all_text_contents()
        page.click("#edit-trash")
        page.wait_for_url("**done=trash**")
        assert page.is_visible("h1 .badge.trash") and page.is_visible("#edit-restore")
        page.click("#edit-restore")
        page.wait_for_url("**done=restore**")
        assert not page.is_visible("h1 .badge.trash")
        # the runs table trashes its selection
        page.goto(server.url + f"{PROJECT}?view=runs&limit=50")
        page.check(f"#runs-table input[value='{RUN}']")
        page.click("#trash-selected")
        page.wait_for_url("**done=trash**")
        assert "1 run moved to the trash." in page.text_content("#done")
        assert page.locator(f"#runs-table tr[data-run='{RUN}']").count() == 0
        assert page.text_content("#selection-count") == "0 runs selected"
        assert not page.errors
    finally:
        context.close()
