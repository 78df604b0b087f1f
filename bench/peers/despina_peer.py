"""despina in-process: ``despina.Run`` into the embedded store, ``despina.query`` to read; the
same ``despina.query`` calls through a ``despina serve`` with an API token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.peers.base import SERIES_NAME, TABLE_PROJECT, Peer, table_metric, table_params
from bench.peers.serving import HOST, Served

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


class Despina(Peer):
    key = "despina"
    title = "despina"
    package = "despina"
    api = (
        "`despina.Run(home=…, source_tracking_config=None, enable_console_log_capture=False)`, "
        "`run.log_metrics(dict, step=)`, `run.close()`; reads: `despina.query.runs.fetch_metrics`, "
        "`despina.query.runs.fetch_runs_table(runs=Filter.gt(…))`"
    )
    remote_api = (
        "`despina serve --home <read store>` and a workspace token from `despina token create`; "
        "`despina.query.set_api_token(token)`, then the same two calls as in-process (the "
        "worker's untimed import includes despina's HTTP client, `despina.store.http`, as "
        "`import neptune_query` includes its own)"
    )

    def prepare(self) -> None:
        import despina
        import despina.query

        # the HTTP client, for the rows through a server (a local process never loads it)
        import despina.store.http.snapshot

        self._despina = despina

    def open_run(self, store: Path, name: str) -> Any:
        return self._despina.Run(
            project=f"bench/{name}", run_id=name, experiment_name=name, home=store, **QUIET
        )

    def open_sweep_run(self, store: Path, index: int) -> Any:
        return self._despina.Run(
            project="bench/sweep", run_id=f"sweep-{index}", home=store, **QUIET
        )

    def log(self, run: Any, payload: dict[str, float], step: int) -> None:
        run.log_metrics(payload, step=step)

    def close(self, run: Any) -> None:
        run.close()  # returns when everything is durable

    def write_table(self, store: Path, runs: int, params: int, metrics: int, steps: int) -> None:
        for i in range(runs):
            run = self._despina.Run(
                project=f"bench/{TABLE_PROJECT}", run_id=f"run-{i:05d}", home=store, **QUIET
            )
            run.log_configs({f"params/{k}": v for k, v in table_params(i, params).items()})
            for step in range(steps):
                run.log_metrics(
                    {f"metrics/m{j}": table_metric(i, j, step) for j in range(metrics)}, step=step
                )
            run.close()

    def read_series(self, store: Path) -> Any:
        from despina.query import runs, set_home

        set_home(store)
        return runs.fetch_metrics(project="bench/series", runs=["series"], attributes=[SERIES_NAME])

    def read_table(self, store: Path) -> Any:
        from despina.query import runs, set_home
        from despina.query.filters import Attribute, Filter

        set_home(store)
        return runs.fetch_runs_table(
            project=f"bench/{TABLE_PROJECT}",
            runs=Filter.gt(Attribute("params/p00", "float"), 0.5),
            attributes=r"^(params|metrics)/",
        )

    def serve(self, store: Path, port: int) -> Served:
        return serve_despina(store, port)

    def read_series_remote(self, store: Path, server: dict[str, str]) -> Any:
        from despina.query import runs, set_api_token

        set_api_token(server["token"])
        return runs.fetch_metrics(project="bench/series", runs=["series"], attributes=[SERIES_NAME])

    def read_table_remote(self, store: Path, server: dict[str, str]) -> Any:
        from despina.query import runs, set_api_token
        from despina.query.filters import Attribute, Filter

        set_api_token(server["token"])
        return runs.fetch_runs_table(
            project=f"bench/{TABLE_PROJECT}",
            runs=Filter.gt(Attribute("params/p00", "float"), 0.5),
            attributes=r"^(params|metrics)/",
        )


def serve_despina(store: Path, port: int) -> Served:
    """``despina serve`` over ``store`` and a token for its ``bench`` workspace, as a user would
    set them up (the token names the server's URL)."""
    cli = str(Path(sys.executable).with_name("despina"))
    url = f"http://{HOST}:{port}"
    minted = subprocess.run(
        [cli, "token", "create", "--home", str(store), "--workspace", "bench", "--url", url],
        capture_output=True,
        text=True,
        check=True,
    )
    token = minted.stdout.strip().splitlines()[-1]
    command = [cli, "serve", "--home", str(store), "--host", HOST, "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning"]
    return Served(command, "/api/backend/v1/clients/config", {"url": url, "token": token})
