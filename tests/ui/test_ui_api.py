"""The web UI's JSON routes against a real ``despina serve``: sign-in, access control like the
Neptune endpoints (401 without a session, 403 outside its projects) and bad input (4xx with a
clear message, never 5xx)."""

from __future__ import annotations

import httpx
import pytest
from ui_helpers import (
    FORK_STEP,
    HISTOGRAM_RUN,
    STEPS,
    ServerProcess,
    Tokens,
    csrf_field,
    mint,
    sign_in,
)

from despina.store import Store
from despina.store.access import list_api_keys, revoke_api_key

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
FORK = "kittiwake-fork0-at200"
PARENT = "kittiwake-lr0.0003-s0"


def session(server: ServerProcess, token: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    answer = sign_in(client, token, "/projects")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/projects"
    return client


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> httpx.Client:
    return session(server, tokens.workspace)


def test_start_up_prints_a_one_time_sign_in_link(server: ServerProcess) -> None:
    link = server.sign_in_link()
    assert link is not None, server.log()
    assert link.startswith(server.url + "/sign-in/link?code=")
    with httpx.Client(follow_redirects=False) as browser:
        first = browser.get(link)
        assert first.status_code == 303 and first.headers["location"] == "/projects"
        assert browser.get(server.url + "/projects.json").status_code == 200
    with httpx.Client(follow_redirects=False) as other:
        again = other.get(link)
        assert again.status_code == 400
        assert "already used" in again.text
        assert other.get(server.url + "/projects.json").status_code == 401
    store = Store.open(server.home)
    try:
        minted = [k for k in list_api_keys(store) if k.name.startswith("web UI operator")]
    finally:
        store.close()
    assert [k.scope for k in minted] == ["*/*"]  # every workspace (the server's operator)


@pytest.mark.parametrize(
    "path",
    [
        "/projects.json",
        f"{PROJECT}/runs.json",
        f"{PROJECT}/attributes.json",
        f"{PROJECT}/charts.json?run={FORK}",
        f"{PROJECT}/chart.json?run={FORK}&metric=train/loss",
        f"{PROJECT}/run.json?id={FORK}",
        f"{PROJECT}/file?id={HISTOGRAM_RUN}&path=artifacts/notes",
        f"{PROJECT}/models.json",
    ],
)
def test_json_routes_need_a_session(server: ServerProcess, path: str) -> None:
    answer = httpx.get(server.url + path)
    assert answer.status_code == 401
    assert "sign in" in answer.json()["message"]
    forged = httpx.get(server.url + path, cookies={"despina_session": "e30.AAAA"})
    assert forged.status_code == 401


def test_pages_redirect_to_sign_in(server: ServerProcess) -> None:
    answer = httpx.get(server.url + f"{PROJECT}?view=runs&q=x", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=%2Fp%2Fdemo%2Fdespina%3Fview%3Druns%26q%3Dx"


def test_bad_tokens_are_refused(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as browser:
        for token, reason in [
            ("not a token", "not valid"),
            ("abcdef.secret", "unknown API key"),
        ]:
            answer = sign_in(browser, token)
            assert answer.status_code == 401, token
            assert reason in answer.text
            assert "despina_session" not in answer.cookies
        assert sign_in(browser, "").status_code == 400


def test_access_is_checked_per_project(server: ServerProcess, tokens: Tokens) -> None:
    narrow = session(server, tokens.other_project)
    listed = narrow.get("/projects.json").json()["projects"]
    assert [p["name"] for p in listed] == ["demo/other"]
    for path in [
        f"{PROJECT}/runs.json",
        f"{PROJECT}/run.json?id={FORK}",
        PROJECT,
        f"{PROJECT}/models.json",
        f"{PROJECT}/models",
    ]:
        answer = narrow.get(path)
        assert answer.status_code == 403, path
    denied = narrow.get(f"{PROJECT}/runs.json").json()
    assert denied["errorType"] == "ACCESS_DENIED"
    assert "demo/despina" in denied["message"]
    assert narrow.get("/p/demo/other/runs.json").json()["total"] == 0
    foreign = session(server, tokens.foreign)
    assert foreign.get(f"{PROJECT}/chart.json?run={FORK}&metric=x").status_code == 403
    # a second token adds its workspace to the same session
    both = session(server, tokens.foreign)
    added = both.post(
        "/sign-in",
        data={"token": tokens.other_project, "csrf": csrf_field(both.get("/projects").text)},
    )
    assert added.status_code == 303
    names = sorted(p["name"] for p in both.get("/projects.json").json()["projects"])
    assert names == ["demo/other", "elsewhere/proj"]


def test_revoking_the_key_ends_the_session(server: ServerProcess) -> None:
    token = mint(server.home, server.url, workspace="demo")
    browser = session(server, token)
    assert browser.get(f"{PROJECT}/runs.json").status_code == 200
    store = Store.open(server.home)
    try:
        key_id = [k for k in list_api_keys(store) if k.revoked_ms is None][-1].key_id
        revoke_api_key(store, key_id)
    finally:
        store.close()
    assert browser.get(f"{PROJECT}/runs.json").status_code == 401


def test_unknown_projects_and_runs_are_404(client: httpx.Client) -> None:
    missing = client.get("/p/demo/nope/runs.json")
    assert missing.status_code == 404 and "demo/nope" in missing.json()["message"]
    run = client.get(f"{PROJECT}/run.json?id=no-such-run")
    assert run.status_code == 404 and "no-such-run" in run.json()["message"]
    assert client.get("/p/demo/nope").status_code == 404


def test_runs_table_pages_sorts_and_filters(client: httpx.Client) -> None:
    heads = client.get(f"{PROJECT}/runs.json").json()
    labels = sorted(r["label"] for r in heads["rows"])
    assert labels == ["kittiwake", "seagull", "seagull-lr-sweep"]  # the trashed typo is hidden
    everything = client.get(f"{PROJECT}/runs.json?view=runs&limit=4&col=parameters/lr").json()
    assert everything["total"] == 11 and len(everything["rows"]) == 4
    seen = [r["run_id"] for r in everything["rows"]]
    second = client.get(f"{PROJECT}/runs.json?view=runs&limit=4&page=2").json()
    assert not set(seen) & {r["run_id"] for r in second["rows"]}
    by_lr = client.get(
        f"{PROJECT}/runs.json?view=runs&sort=parameters/lr&dir=asc&col=parameters/lr&limit=500"
    ).json()
    lrs = [r["cells"]["parameters/lr"]["value"] for r in by_lr["rows"]]
    assert lrs == sorted(lrs)
    assert by_lr["sort"] == {"column": "parameters/lr", "direction": "asc", "type": "float"}
    trashed = client.get(f"{PROJECT}/runs.json?view=runs&trashed=1&col=sys/trashed").json()
    assert trashed["total"] == 12
    typo = [r for r in trashed["rows"] if r["run_id"] == "kittiwake-typo"]
    assert typo and typo[0]["trashed"] and typo[0]["cells"]["sys/trashed"]["value"] is True
    query = '`sys/tags`:stringSet CONTAINS "baseline"'
    found = client.get(f"{PROJECT}/runs.json", params={"view": "runs", "q": query}).json()
    assert sorted(r["run_id"] for r in found["rows"]) == [
        "kittiwake-lr0.0003-s0",
        "kittiwake-lr0.001-s1",
        "seagull-lr0.0003-s0",
        "seagull-lr0.001-s1",
    ]


def test_cells_are_typed(client: httpx.Client) -> None:
    columns = [
        "sys/creation_time",
        "sys/tags",
        "sys/failed",
        "parameters/lr",
        "train/loss",
        "parameters/batch_size",
        "runtime/stdout",
        "artifacts/notes",
    ]
    page = client.get(
        f"{PROJECT}/runs.json", params={"view": "runs", "col": columns, "limit": 500}
    ).json()
    row = next(r for r in page["rows"] if r["run_id"] == HISTOGRAM_RUN)
    cells = row["cells"]
    assert cells["sys/creation_time"]["type"] == "datetime"
    assert cells["sys/creation_time"]["value"].endswith("Z")
    assert cells["sys/tags"]["value"] == ["baseline", "demo", "kittiwake"]
    assert cells["sys/failed"]["value"] is False
    assert cells["parameters/batch_size"] == {"type": "int", "value": 256, "text": "256"}
    assert cells["train/loss"]["type"] == "float_series"  # the last value
    assert cells["runtime/stdout"]["value"].startswith(f"step {STEPS - 100:5d}")
    assert cells["artifacts/notes"]["type"] == "file"
    failed = next(r for r in page["rows"] if r["run_id"] == "seagull-diverged")
    assert failed["cells"]["sys/failed"]["value"] is True


def test_nql_errors_carry_their_span(client: httpx.Client) -> None:
    query = "`parameters/lr`:float >= AND x"
    answer = client.get(f"{PROJECT}/runs.json", params={"q": query})
    assert answer.status_code == 400
    body = answer.json()
    assert body["title"] == "Syntax error"
    assert query[body["start"] : body["end"]] == "AND"
    assert body["line"] == 1 and body["col"] == body["start"] + 1
    assert "expected a value after '>='" in body["message"]
    semantic = client.get(f"{PROJECT}/runs.json", params={"q": "`a`:flaot = 1"}).json()
    assert semantic["title"] == "Invalid query"
    assert "`a`:flaot = 1"[semantic["start"] : semantic["end"]] == "flaot"


def test_chart_lines_follow_the_lineage(client: httpx.Client) -> None:
    answer = client.get(
        f"{PROJECT}/chart.json", params={"run": [FORK, PARENT, "ghost"], "metric": "train/loss"}
    ).json()
    assert answer["unknown_runs"] == ["ghost"]
    fork, parent = answer["lines"]
    assert (fork["run"], parent["run"]) == (FORK, PARENT)
    assert fork["x"][0] == 0 and fork["x"][-1] == STEPS - 1  # inherited steps 0..200, own after
    assert fork["y"][:FORK_STEP] == parent["y"][:FORK_STEP]
    assert fork["y"][FORK_STEP + 5] != parent["y"][FORK_STEP + 5]
    for line in answer["lines"]:
        assert len(line["x"]) <= 1000
        for y, low, high in zip(line["y"], line["low"], line["high"], strict=True):
            assert low <= y <= high


def test_buckets_keep_spikes_and_zoom_rebuckets(client: httpx.Client) -> None:
    full = client.get(
        f"{PROJECT}/chart.json", params={"run": PARENT, "metric": "train/loss", "buckets": 20}
    ).json()
    line = full["lines"][0]
    assert len(line["x"]) <= 20
    raw = client.get(f"{PROJECT}/chart.json", params={"run": PARENT, "metric": "train/loss"})
    values = raw.json()["lines"][0]["y"]  # 400 steps, 1,000 buckets: every point
    assert len(values) == STEPS
    assert max(line["high"]) == max(values) and min(line["low"]) == min(values)
    zoom = client.get(
        f"{PROJECT}/chart.json",
        params={"run": PARENT, "metric": "train/loss", "from": 100, "to": 139.5, "buckets": 20},
    ).json()
    assert zoom["window"] == [100, 139.5]
    assert zoom["lines"][0]["points"] == 40
    assert all(100 <= x <= 139.5 for x in zoom["lines"][0]["x"])
    timed = client.get(
        f"{PROJECT}/chart.json", params={"run": PARENT, "metric": "train/loss", "x": "time"}
    ).json()
    assert timed["axis"] == "time" and timed["range"][0] > 1e12  # epoch milliseconds


def test_charts_pick_metrics_by_name_or_regex(client: httpx.Client) -> None:
    picked = client.get(
        f"{PROJECT}/charts.json", params={"run": FORK, "metric": ["train/loss ^val/(f1|loss)$"]}
    ).json()
    assert picked["metrics"] == ["train/loss", "val/f1", "val/loss"]
    default = client.get(f"{PROJECT}/charts.json", params={"run": FORK}).json()
    assert default["metrics"] == ["train/loss", "val/loss"]


def test_run_json_has_everything(client: httpx.Client) -> None:
    run = client.get(f"{PROJECT}/run.json", params={"id": HISTOGRAM_RUN}).json()
    assert {e["path"] for e in run["sys"]} >= {"sys/id", "sys/creation_time", "sys/owner"}
    assert {"parameters/lr", "data/dataset"} <= {e["path"] for e in run["configs"]}
    assert run["tags"]["sys/tags"] == ["baseline", "demo", "kittiwake"]
    assert len(run["metrics"]) == 30 and len(run["sparklines"]) == 30
    assert run["string_series"]["runtime/stdout"][-1]["value"].startswith("step   300")
    hist = run["histograms"]["weights/hist"]
    assert [h["step"] for h in hist] == [0, 10, 20, 30]
    assert hist[-1]["histogram"]["values"] == [30, 5, 10]
    assert [f["path"] for f in run["files"]] == ["artifacts/notes"]


def test_file_download(client: httpx.Client) -> None:
    answer = client.get(f"{PROJECT}/file", params={"id": HISTOGRAM_RUN, "path": "artifacts/notes"})
    assert answer.status_code == 200
    assert answer.content == b"learning rate 1e-3 looks best\n"
    assert "attachment" in answer.headers["content-disposition"]
    wrong = client.get(f"{PROJECT}/file", params={"id": HISTOGRAM_RUN, "path": "train/loss"})
    assert wrong.status_code == 400 and "no file attribute" in wrong.json()["message"]


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        (f"{PROJECT}/runs.json?limit=0", "limit must be between 1 and 500"),
        (f"{PROJECT}/runs.json?limit=abc", "limit must be an integer"),
        (f"{PROJECT}/runs.json?page=0", "page must be between"),
        (f"{PROJECT}/runs.json?dir=up", "dir must be one of asc, desc"),
        (f"{PROJECT}/runs.json?view=tables", "view must be one of experiments, runs"),
        (f"{PROJECT}/runs.json?sort=artifacts/notes", "cannot be sorted"),
        (f"{PROJECT}/runs.json?q=%28", "NQL syntax error"),
        (f"{PROJECT}/runs.json?q=%60m%60%3AfloatSeries%20%3E%20%22-inf%22", "NQL error"),
        (f"{PROJECT}/chart.json?run={FORK}", "give the metric"),
        (f"{PROJECT}/chart.json?metric=train/loss", "give at least one run"),
        (f"{PROJECT}/chart.json?run={FORK}&metric=a&from=1", "give both from and to"),
        (f"{PROJECT}/chart.json?run={FORK}&metric=a&from=2&to=1", "from=2, to=1"),
        (f"{PROJECT}/chart.json?run={FORK}&metric=a&from=nan&to=1", "finite number"),
        (f"{PROJECT}/chart.json?run={FORK}&metric=a&buckets=1", "buckets must be between"),
        (f"{PROJECT}/chart.json?run={FORK}&metric=a&x=epoch", "x must be one of step, time"),
        (f"{PROJECT}/charts.json?run={FORK}&metric=%5Bbad", "not a metric name nor a valid"),
        (f"{PROJECT}/run.json", "give the run"),
        (f"{PROJECT}/file?id={FORK}", "give the file attribute"),
    ],
)
def test_bad_input_is_a_clear_4xx(client: httpx.Client, path: str, needle: str) -> None:
    answer = client.get(path)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert needle in answer.json()["message"]


def test_static_files_stay_inside_their_folder(client: httpx.Client) -> None:
    assert client.get("/ui/static/ui.css").status_code == 200
    for path in ["/ui/static/../views.py", "/ui/static/%2e%2e/views.py", "/ui/static/nope.js"]:
        assert client.get(path).status_code == 404, path


def test_wide_buckets_come_from_block_summaries(client: httpx.Client) -> None:
    """5 buckets over 400 steps: 80 points each, enough for block summaries (16 points per
    block); the bands must still cover every point exactly, through the fork's lineage."""
    raw = client.get(f"{PROJECT}/chart.json", params={"run": [FORK, PARENT], "metric": "val/loss"})
    wide = client.get(
        f"{PROJECT}/chart.json",
        params={"run": [FORK, PARENT], "metric": "val/loss", "buckets": 5},
    )
    for every, few in zip(raw.json()["lines"], wide.json()["lines"], strict=True):
        assert len(every["y"]) == STEPS and 1 < len(few["x"]) <= 5
        assert min(few["low"]) == min(every["y"]) and max(few["high"]) == max(every["y"])
        assert few["x"][0] == 0 and few["y"][0] == every["y"][0]
        points = dict(zip(every["x"], every["y"], strict=True))
        for x, y, low, high in zip(few["x"], few["y"], few["low"], few["high"], strict=True):
            assert points[x] == y and low <= y <= high
    zoomed = client.get(
        f"{PROJECT}/chart.json",
        params={"run": FORK, "metric": "val/loss", "buckets": 2, "from": 150, "to": 300},
    ).json()["lines"][0]
    inside = [
        y
        for x, y in zip(*(raw.json()["lines"][0][k] for k in ("x", "y")), strict=True)
        if 150 <= x <= 300
    ]
    assert max(zoomed["high"]) >= max(inside) and min(zoomed["low"]) <= min(inside)


def test_model_registry_page(client: httpx.Client) -> None:
    data = client.get(f"{PROJECT}/models.json").json()
    (model,) = data["models"]
    assert model["id"] == "DESPINA-CLS"
    assert model["attributes"]["name"] == "bird classifier"
    versions = [(v["sys"]["sys/id"], v["sys"]["sys/stage"]) for v in model["versions"]]
    assert versions == [
        ("DESPINA-CLS-3", "staging"),
        ("DESPINA-CLS-2", "production"),
        ("DESPINA-CLS-1", "archived"),
    ]
    assert model["versions"][1]["attributes"]["validation/accuracy"] == 0.89
    page = client.get(f"{PROJECT}/models")
    assert page.status_code == 200
    assert "DESPINA-CLS-2" in page.text and "production" in page.text
    assert client.get("/p/demo/other/models.json").json()["models"] == []
