"""What a teammate hears when a token does not fit, against a real ``despina serve``: every
refusal names the server and the fix, and a missing project is refused without the server's
directory or the projects of other workspaces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import despina
import despina.query as dq
from despina.errors import AuthError, ProjectNotFound
from despina.query.exceptions import NeptuneProjectInaccessible
from serving import ServerProcess, mint, serving_new_store

pytestmark = pytest.mark.usefixtures("remote_env")

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("errors") / "home"
    projects = ("team/birds", "secret-ws/hidden")
    with serving_new_store(home, projects, extra_args=("--no-access-log",)) as proc:
        yield proc


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return mint(server.home, server.url, workspace="team")


def _told_fairly(message: str, server: ServerProcess) -> None:
    """Names the server, the project and the command; hides what the token may not see."""
    assert server.url in message
    assert "despina project create team/missing" in message
    assert "team/birds" in message  # the project this token reaches
    assert "secret-ws" not in message
    assert str(server.home) not in message


def test_a_missing_project_is_refused_naming_the_server_not_other_workspaces(
    server: ServerProcess, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESPINA_API_TOKEN", token)
    with pytest.raises(NeptuneProjectInaccessible) as query:
        dq.list_experiments(project="team/missing")
    _told_fairly(str(query.value), server)
    with pytest.raises(ProjectNotFound) as table:
        despina.init_project("team/missing").fetch_runs_table()
    _told_fairly(str(table.value), server)
    with pytest.raises(ProjectNotFound) as run:
        despina.Run(project="team/missing", **QUIET)
    assert server.url in str(run.value)
    assert "despina project create team/missing" in str(run.value)


def test_a_token_of_another_workspace_is_refused_naming_the_server(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = mint(server.home, server.url, workspace="secret-ws")
    refusals: list[BaseException] = []
    with pytest.raises(AuthError) as run:
        despina.Run(project="team/birds", api_token=other, **QUIET)
    refusals.append(run.value)
    with pytest.raises(AuthError) as table:
        despina.init_project("team/birds", api_token=other).fetch_runs_table()
    refusals.append(table.value)
    monkeypatch.setenv("NEPTUNE_API_TOKEN", other)
    with pytest.raises(AuthError) as query:
        dq.list_experiments(project="team/birds")
    refusals.append(query.value)
    for refusal in refusals:
        assert server.url in str(refusal)
        assert "despina token create --project team/birds" in str(refusal)
