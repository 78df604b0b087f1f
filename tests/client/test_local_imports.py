"""A process that logs and reads on a local store never loads the HTTP client: deciding that a
call is local reads the environment only (``despina.store.http.tokens``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def test_local_logging_and_reads_do_not_import_the_http_client(home: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import despina
        import despina.query as dq

        with despina.Run(project="team/local", experiment_name="e") as run:
            run.log_metrics({"loss": 1.0}, step=0)
        frame = dq.fetch_metrics(project="team/local", experiments=["e"], attributes="loss")
        assert frame.shape == (1, 1)
        assert len(despina.init_project("team/local").fetch_runs_table().to_rows()) == 1
        print(sorted(m for m in ("httpx", "despina.store.http.connection") if m in sys.modules))
        """
    )
    env = {**os.environ, "DESPINA_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_logging_alone_does_not_import_the_query_api(home: Path) -> None:
    """A training script's first ``despina.Run`` decides it is local without importing
    ``despina.query`` (pandas): no ``set_home`` / ``set_api_token`` can have been called."""
    script = textwrap.dedent(
        """
        import sys
        import despina

        with despina.Run(project="team/local", experiment_name="e") as run:
            run.log_metrics({"loss": 1.0}, step=0)
        print(sorted(m for m in ("pandas", "despina.query", "httpx") if m in sys.modules))
        """
    )
    env = {**os.environ, "DESPINA_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_token_set_in_the_query_api_still_sends_runs_to_the_server() -> None:
    """Once ``despina.query`` is imported, its choices count (the rule above, unchanged)."""
    from despina.query import api
    from despina.store.http.tokens import remote_token

    api._api_token = "set-in-the-query-api"
    try:
        assert remote_token(None) == "set-in-the-query-api"
    finally:
        api._api_token = None
