"""``despina.query`` against a real ``despina serve``: every public function's frame equals the
in-process frame on the server's store, errors keep their class and message, and a refused
token or a server that is down says which server and what to do."""

from __future__ import annotations

import base64
import dataclasses
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import query_data as data
from pandas.testing import assert_frame_equal, assert_series_equal

import despina.query as nq
from despina.errors import AuthError
from despina.query import api, experimental, runs
from despina.query.examples import seed_examples
from despina.query.exceptions import (
    NeptuneProjectInaccessible,
    NeptuneUnexpectedResponseError,
)
from despina.query.filters import Attribute, AttributeFilter, Filter
from despina.query.service import QueryService, Snapshot
from despina.query.types import File
from despina.store import Store
from despina.store.access import revoke_api_key
from despina.store.http import connection as http_connection
from despina.store.http.connection import ServerUnreachable, TokenRefused
from despina.store.http.snapshot import RemoteSnapshot
from serving import ServerProcess, free_port

RICH = "ws/rich"
PROJ = "ws/proj"
pytestmark = [
    pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.set_index"),
    pytest.mark.filterwarnings("ignore::despina.query.warnings.ExperimentalWarning"),
]


@pytest.fixture()
def both(
    shared_home: tuple[Path, str], query_server: tuple[ServerProcess, str]
) -> Iterator[Callable[[Callable[[], Any]], tuple[Any, Any]]]:
    """Runs a call in-process on the shared store, then through the server."""
    _, location = shared_home
    _, token = query_server

    def run(call: Callable[[], Any]) -> tuple[Any, Any]:
        nq.set_store(location)
        try:
            local = call()
        finally:
            nq.set_store(None)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(api, "_api_token", token)
            with api.open_snapshot(RICH) as snap:
                assert isinstance(snap, RemoteSnapshot)
            remote = call()
        return local, remote

    yield run


def _outcome(call: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return call()
        except Exception as exc:
            return exc

    return run


def _same(both: Callable[[Callable[[], Any]], tuple[Any, Any]], call: Callable[[], Any]) -> Any:
    """The call's result (or error) in-process and remote, checked equal."""
    local, remote = both(_outcome(call))
    if isinstance(local, Exception):
        assert type(remote) is type(local) and str(remote) == str(local), (remote, local)
        return remote
    if isinstance(local, pd.DataFrame):
        assert_frame_equal(remote, local)
    elif isinstance(local, pd.Series):
        assert_series_equal(remote, local)
    else:
        assert remote == local
    return remote


def test_listing(both: Any) -> None:
    assert _same(both, lambda: nq.list_experiments(project=RICH))
    _same(both, lambda: nq.list_experiments(project=PROJ, experiments="exp"))
    assert _same(both, lambda: runs.list_runs(project=RICH))
    _same(both, lambda: runs.list_runs(project=RICH, runs=Filter.eq("cfg/int", 1)))
    assert _same(both, lambda: nq.list_attributes(project=RICH))
    _same(both, lambda: runs.list_attributes(project=RICH))
    _same(both, lambda: runs.list_attributes(project=RICH, runs=["a1"], attributes="^m/"))
    _same(
        both,
        lambda: nq.list_attributes(project=RICH, attributes=AttributeFilter(type="float_series")),
    )


@pytest.mark.parametrize(
    "attributes",
    [
        None,
        r"^cfg/|sys/tags|sys/name",
        AttributeFilter(type=["file", "file_series", "histogram_series", "string_series"]),
        ["cfg/float", "m/loss", "nope"],
        [],
    ],
)
@pytest.mark.parametrize("suffix", [False, True])
def test_tables(both: Any, attributes: Any, suffix: bool) -> None:
    options = {"attributes": attributes, "type_suffix_in_column_names": suffix}
    _same(both, lambda: nq.fetch_experiments_table(project=RICH, **options))
    _same(both, lambda: runs.fetch_runs_table(project=RICH, **options))


def test_tables_sorted_filtered_limited(both: Any) -> None:
    _same(
        both,
        lambda: runs.fetch_runs_table(
            project=RICH,
            runs=Filter.ge("cfg/int", 0) | Filter.exists("m/loss"),
            attributes=r"^cfg/",
            sort_by="cfg/float",
            sort_direction="asc",
            limit=3,
        ),
    )
    _same(
        both,
        lambda: nq.fetch_experiments_table(
            project=PROJ,
            sort_by=Attribute("sys/name", type="string"),
            attributes="cfg",
            type_suffix_in_column_names=True,
        ),
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"include_time": "absolute"},
        {"include_point_previews": True},
        {"include_time": "absolute", "include_point_previews": True, "tail_limit": 2},
        {"step_range": (1.0, 3.0), "type_suffix_in_column_names": True},
        {"lineage_to_the_root": False},
    ],
)
def test_metrics(both: Any, options: dict[str, Any]) -> None:
    _same(
        both, lambda: nq.fetch_metrics(project=RICH, experiments=".*", attributes=".*", **options)
    )
    _same(both, lambda: runs.fetch_metrics(project=RICH, runs=".*", attributes="m/", **options))
    _same(both, lambda: runs.fetch_metrics(project=PROJ, runs=["r2"], attributes="loss", **options))


@pytest.mark.parametrize(
    "options", [{}, {"include_time": "absolute"}, {"tail_limit": 1}, {"step_range": (1.0, 2.0)}]
)
def test_series(both: Any, options: dict[str, Any]) -> None:
    _same(both, lambda: nq.fetch_series(project=RICH, experiments=".*", attributes=".*", **options))
    _same(both, lambda: runs.fetch_series(project=PROJ, runs=".*", attributes="msg", **options))


@pytest.mark.parametrize(
    "options", [{}, {"include_point_previews": True, "include_min_max": True, "limit": 3}]
)
def test_buckets(both: Any, options: dict[str, Any]) -> None:
    _same(both, lambda: nq.fetch_metric_buckets(project=RICH, experiments=".*", y="m/", **options))
    _same(
        both, lambda: nq.fetch_metric_buckets(project=PROJ, experiments=".*", y="loss", **options)
    )


def test_global_tables(both: Any) -> None:
    _same(
        both,
        lambda: experimental.fetch_runs_table_global(
            attributes=r"^cfg/(float|lr)$|loss",
            sort_by=Attribute("sys/custom_run_id", type="string"),
            sort_direction="asc",
        ),
    )
    _same(both, lambda: experimental.fetch_experiments_table_global(limit=3, attributes="cfg"))


def test_seed_examples(both: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local, remote = both(lambda: seed_examples(PROJ))
    assert [t for t, _, _ in remote] == [t for t, _, _ in local]
    for (_, _, got), (_, _, expected) in zip(remote, local, strict=True):
        assert_frame_equal(got, expected)


def test_download_files(both: Any, tmp_path: Path) -> None:
    def download(kind: str) -> Callable[[], pd.DataFrame]:
        def call() -> pd.DataFrame:
            target = tmp_path / kind / ("remote" if api.remote_token() else "local")
            if kind == "experiments":
                files = nq.fetch_series(project=RICH, experiments=".*", attributes="f/series")
                return nq.download_files(files=files, destination=target)
            files = runs.fetch_runs_table(project=RICH, attributes="f/file")
            return runs.download_files(files=files, destination=target)

        return call

    for kind in ("experiments", "runs"):
        local, remote = both(download(kind))
        assert local.shape == remote.shape and local.size
        for got, expected in zip(remote.stack(), local.stack(), strict=True):
            if expected is None:
                assert got is None
                continue
            assert Path(got).read_bytes() == Path(expected).read_bytes()
            assert Path(got).relative_to(tmp_path / kind / "remote") == Path(expected).relative_to(
                tmp_path / kind / "local"
            )


def test_a_missing_file_is_reported_as_missing(
    query_server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    _, token = query_server
    nq.set_api_token(token)
    files = runs.fetch_runs_table(project=RICH, attributes="f/file")
    file = next(f for f in files.stack() if isinstance(f, File))
    gone = dataclasses.replace(file, path="no/such/key")
    frame = runs.download_files(files=[gone], destination=tmp_path)
    assert frame.iloc[0, 0] is None
    assert not any(tmp_path.iterdir())


def _error(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_errors_keep_their_class_and_message(both: Any) -> None:
    cases: list[Callable[[], Any]] = [
        # evaluation errors (the NQL position is in the message)
        lambda: runs.list_runs(project=RICH, runs=Filter.nql('`cfg/float`:float MATCHES "a"')),
        lambda: nq.fetch_metrics(
            project=RICH, experiments=Filter.gt("cfg/float", float("inf")), attributes="m/"
        ),
        lambda: nq.list_attributes(project=RICH, attributes="(unclosed"),
        lambda: nq.fetch_experiments_table(project="ws/missing"),
        lambda: runs.fetch_metrics(project="ws/missing", runs=["x"], attributes="m"),
    ]
    for i, case in enumerate(cases):
        local, remote = both(lambda case=case: _error(case))
        assert type(remote) is type(local), (remote, local)
        if i < 3:
            assert str(remote) == str(local)
        else:  # a missing project: the same headline; the detail names the server, not its store
            assert str(remote).split("\n")[0] == str(local).split("\n")[0]
            assert "no project 'ws/missing' on server http://127.0.0.1:" in str(remote)
            assert "despina project create ws/missing" in str(remote)
    local, _ = both(lambda: _error(cases[0]))
    assert isinstance(local, NeptuneUnexpectedResponseError)
    assert "^" in str(local)  # the caret under the position
    assert isinstance(both(lambda: _error(cases[3]))[1], NeptuneProjectInaccessible)


def test_a_project_outside_the_token_is_refused_naming_it(
    shared_home: tuple[Path, str], query_server: tuple[ServerProcess, str]
) -> None:
    server, _ = query_server
    scoped = data.mint_for(shared_home[1], server.url, project="proj")
    nq.set_api_token(scoped)
    assert nq.list_experiments(project=PROJ)
    with pytest.raises(AuthError, match=r"ws/rich.*despina token create"):
        nq.list_experiments(project=RICH)


def test_a_foreign_or_revoked_token_names_the_server_and_the_fix(
    shared_home: tuple[Path, str], query_server: tuple[ServerProcess, str]
) -> None:
    server, _ = query_server
    payload = {"api_url": server.url, "api_key": "k" * 16 + ".not-a-secret-of-this-server"}
    nq.set_api_token(base64.b64encode(json.dumps(payload).encode()).decode())
    with pytest.raises(TokenRefused, match=rf"{server.url}.*despina token create"):
        nq.list_experiments(project=PROJ)
    store = Store.open(url=shared_home[1])
    try:
        from despina.server.auth import mint_api_token

        token, key = mint_api_token(store, url=server.url, workspace="ws")
        nq.set_api_token(token)
        assert nq.list_experiments(project=PROJ)
        revoke_api_key(store, key.key_id)
    finally:
        store.close()
    http_connection._connections.clear()  # a new process: no access token from before
    with pytest.raises(TokenRefused, match=rf"{server.url}.*despina token create"):
        nq.list_experiments(project=PROJ)


def test_a_server_that_is_down_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_connection, "_RETRIES", 1)
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(
        "DESPINA_API_TOKEN", base64.b64encode(json.dumps({"api_url": url}).encode()).decode()
    )
    with pytest.raises(ServerUnreachable, match=rf"{url}.*despina serve"):
        nq.fetch_metrics(project=PROJ, experiments=".*", attributes="loss")


def test_which_store_reads_go_to(
    shared_home: tuple[Path, str],
    query_server: tuple[ServerProcess, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolated_env: Path,
) -> None:
    directory, location = shared_home
    _, token = query_server
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token)
    with api.open_snapshot(PROJ) as snap:
        assert isinstance(snap, RemoteSnapshot)  # a token in the environment: the server
    assert nq.list_experiments(project=PROJ) == ["exp-a", "exp-b"]
    assert not isolated_env.exists()  # nothing opened or created locally
    nq.set_store(location)
    try:
        with api.open_snapshot(PROJ) as snap:
            assert isinstance(snap, Snapshot)  # an explicit store wins over the token
    finally:
        nq.set_store(None)
    nq.set_home(directory)
    try:
        assert isinstance(api.query_service(), QueryService)  # (DESPINA_STORE over PostgreSQL)
    finally:
        nq.set_home(None)
    monkeypatch.delenv("NEPTUNE_API_TOKEN")
    nq.set_api_token(token)
    with api.open_snapshot(PROJ) as snap:
        assert isinstance(snap, RemoteSnapshot)
