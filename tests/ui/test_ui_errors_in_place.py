"""A bad NQL query or metric pattern never replaces the page with an error page: the page is
drawn with the error in place (the bad span marked, a caret under it), and the ``.json`` twins
answer 400 with the span so that the page can show it without leaving."""

from __future__ import annotations

import httpx
import pytest
from ui_helpers import ServerProcess, Tokens, sign_in

PROJECT = "/p/demo/despina"
RUN = "kittiwake-lr0.0003-s0"


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30)
    assert sign_in(client, tokens.workspace).status_code == 303
    return client


def test_charts_twin_names_the_bad_pattern_and_its_span(client: httpx.Client) -> None:
    answer = client.get(f"{PROJECT}/charts.json?run={RUN}&metric=train/loss&metric=val/(")
    assert answer.status_code == 400
    body = answer.json()
    assert "'val/('" in body["message"]
    assert (body["pattern"], body["start"], body["end"]) == ("val/(", 11, 16)


def test_charts_page_shows_a_bad_pattern_in_place(client: httpx.Client) -> None:
    page = client.get(f"{PROJECT}/charts?run={RUN}&metric=train/loss+val/(")
    assert page.status_code == 400
    assert "error-page" not in page.text
    assert 'id="metric-error"' in page.text
    assert '<mark class="nql-bad">val/(</mark>' in page.text
    assert '<pre class="nql-caret" aria-hidden="true">' + " " * 11 + "^^^^^</pre>" in page.text
    assert 'id="chart-controls"' in page.text and 'value="train/loss val/("' in page.text
    assert 'data-metric="train/loss"' in page.text  # the valid pattern is still drawn


def test_runs_page_shows_a_bad_query_in_place_with_a_caret(client: httpx.Client) -> None:
    page = client.get(PROJECT, params={"q": "lr > 1 AND"})
    assert page.status_code == 400
    assert "error-page" not in page.text
    assert '<pre class="nql-caret" aria-hidden="true">' + " " * 10 + "^</pre>" in page.text
    assert 'value="lr &gt; 1 AND"' in page.text
