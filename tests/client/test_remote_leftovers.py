"""A queue an earlier process left is sent whole by the next run from its directory, also when
that run's process ends at once (against a real ``despina serve`` on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import despina
import despina.query.runs as runs
from despina.store.http.queue import find_log_queues
from serving import ServerProcess, mint, serving_new_store

pytestmark = pytest.mark.usefixtures("remote_env")

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}

NEXT_RUN = textwrap.dedent(
    """
    import sys
    import despina

    with despina.Run(
        project="ws/left",
        run_id="short",
        api_token=sys.argv[1],
        log_directory=sys.argv[2],
        enable_console_log_capture=False,
        source_tracking_config=None,
    ) as run:
        run.log_metrics({"a": 1.0}, step=1)
    """
)


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("leftovers") / "home"
    with serving_new_store(home, ("ws/left",), extra_args=("--no-access-log",)) as proc:
        yield proc


def test_a_short_next_run_sends_the_whole_leftover_queue_before_its_process_ends(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint(server.home, server.url, workspace="ws")
    queues = tmp_path / "queues"
    # a queue of many operations, left on disk (offline: nothing is sent)
    with despina.Run(
        project="ws/left",
        run_id="left",
        api_token=token,
        mode="offline",
        log_directory=queues,
        **QUIET,
    ) as run:
        for step in range(300):
            run.log_metrics({f"m{i}": float(step) for i in range(100)}, step=step)
            run.wait_for_submission()
    assert len(find_log_queues(queues)) == 1
    # a run that ends at once: the leftover's sending must not end with its process
    done = subprocess.run(
        [sys.executable, "-c", NEXT_RUN, token, str(queues)],
        env={k: v for k, v in os.environ.items() if not k.endswith("_API_TOKEN")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not find_log_queues(queues), done.stderr
    monkeypatch.setenv("DESPINA_API_TOKEN", token)
    frame = runs.fetch_metrics(project="ws/left", runs=["left"], attributes=r"^m")
    assert frame.shape == (300, 100)
    assert frame.index.is_unique
