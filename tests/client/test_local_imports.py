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
