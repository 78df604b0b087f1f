"""trackio, local only: ``trackio.init``/``log``/``finish`` into ``TRACKIO_DIR`` (set by the
worker before import). trackio has no public read API for metrics; reads go through
``trackio.sqlite_storage.SQLiteStorage``, the layer its own dashboard and ``trackio.Api`` use.
Through a server: its dashboard server (``trackio.show``), read with the client its CLI's remote
reads use (``trackio get metric --space <url>``), which calls the dashboard's endpoints over
those same storage functions."""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
from pathlib import Path
from typing import Any

from bench.peers.base import SERIES_NAME, TABLE_PROJECT, Peer, table_metric, table_params
from bench.peers.serving import HOST, Served

_fresh = itertools.count()
LOGS_BATCH_RUNS = 64  # the most runs trackio's server takes in one /get_logs_batch request


class Trackio(Peer):
    key = "trackio"
    title = "trackio"
    package = "trackio"
    api = (
        "`trackio.init(project=…, name=…, auto_log_cpu=False, auto_log_gpu=False, "
        "embed=False)`, `trackio.log(dict, step=)`, `trackio.finish()` (local SQLite in "
        "`TRACKIO_DIR`); reads: `SQLiteStorage.get_metric_values`, "
        "`SQLiteStorage.get_all_run_configs` + `get_logs_batch` (no public read API)"
    )
    remote_api = (
        '`trackio.show(host="127.0.0.1", server_port=…, open_browser=False)` (its dashboard '
        "server, the self-hosted server) over the read `TRACKIO_DIR`; reads with "
        "`trackio.remote_client.RemoteClient(url).predict(…)`, the client of its CLI's remote "
        "reads (`trackio get metric --space <url>`), on the dashboard's endpoints "
        "`/get_metric_values`, `/get_run_configs` + `/get_logs_batch` (the storage calls of "
        "the local rows; 64 runs a request, its server's limit)"
    )

    def prepare(self) -> None:
        import trackio
        from trackio.sqlite_storage import SQLiteStorage

        self._trackio, self._storage = trackio, SQLiteStorage

    def open_run(self, store: Path, name: str, project: str | None = None) -> Any:
        # One project is one SQLite file: a new project name is a fresh store.
        project = project or f"{name}-{next(_fresh)}"
        self._project = project
        with contextlib.redirect_stdout(io.StringIO()):
            return self._trackio.init(
                project=project, name=name, auto_log_cpu=False, auto_log_gpu=False, embed=False
            )

    def open_sweep_run(self, store: Path, index: int) -> Any:
        return self.open_run(store, f"sweep-{index}", project="sweep")

    def log(self, run: Any, payload: dict[str, float], step: int) -> None:
        run.log(payload, step=step)

    def close(self, run: Any) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self._trackio.finish()

    def store_bytes(self, store: Path) -> int:
        from trackio.utils import TRACKIO_DIR

        # Every project shares TRACKIO_DIR: count the last run's project files only.
        return sum(
            path.stat().st_size
            for path in Path(TRACKIO_DIR).glob(f"{self._project}*")
            if path.is_file()
        )

    def write_series(self, store: Path, points: int) -> None:
        run = self.open_run(store, "series", project="series")
        for step in range(points):
            run.log({SERIES_NAME: step * 1e-6}, step=step)
        self.close(run)

    def write_table(self, store: Path, runs: int, params: int, metrics: int, steps: int) -> None:
        for i in range(runs):
            with contextlib.redirect_stdout(io.StringIO()):
                run = self._trackio.init(
                    project=TABLE_PROJECT,
                    name=f"run-{i:05d}",
                    config=table_params(i, params),
                    auto_log_cpu=False,
                    auto_log_gpu=False,
                    embed=False,
                )
            for step in range(steps):
                run.log({f"m{j}": table_metric(i, j, step) for j in range(metrics)}, step=step)
            self.close(run)

    def read_series(self, store: Path) -> Any:
        import pandas as pd

        return pd.DataFrame(self._storage.get_metric_values("series", "series", SERIES_NAME))

    def read_table(self, store: Path) -> Any:
        import pandas as pd

        configs = self._storage.get_all_run_configs(TABLE_PROJECT)
        frame = pd.DataFrame.from_dict(configs, orient="index")
        frame = frame[pd.to_numeric(frame["p00"], errors="coerce") > 0.5]
        names = [{"run_id": run_id} for run_id in frame.index]
        last = {
            entry["run_id"]: {k: v for k, v in entry["logs"][-1].items() if k.startswith("m")}
            for entry in self._storage.get_logs_batch(TABLE_PROJECT, runs=names)
            if entry["logs"]
        }
        return frame.join(pd.DataFrame.from_dict(last, orient="index"))

    def serve(self, store: Path, port: int) -> Served:
        # One project is one SQLite file in TRACKIO_DIR: the data set's directory.
        launch = (
            f"import trackio; trackio.show(host={HOST!r}, server_port={port}, "
            "open_browser=False, block_thread=True)"
        )
        command = [sys.executable, "-c", launch]
        env = {"TRACKIO_DIR": str(store.parent)}
        return Served(command, "/", {"url": f"http://{HOST}:{port}"}, env)

    def read_series_remote(self, store: Path, server: dict[str, str]) -> Any:
        import pandas as pd
        from trackio.remote_client import RemoteClient

        remote = RemoteClient(server["url"])
        # the arguments of `trackio get metric`: project, run, metric, step, around, at, window
        values = remote.predict(
            "series", "series", SERIES_NAME, None, None, None, None, api_name="/get_metric_values"
        )
        return pd.DataFrame(values)

    def read_table_remote(self, store: Path, server: dict[str, str]) -> Any:
        import pandas as pd
        from trackio.remote_client import RemoteClient

        remote = RemoteClient(server["url"])
        configs = remote.predict(TABLE_PROJECT, api_name="/get_run_configs")
        frame = pd.DataFrame.from_dict(configs, orient="index")
        frame = frame[pd.to_numeric(frame["p00"], errors="coerce") > 0.5]
        names = [{"run_id": run_id} for run_id in frame.index]
        batch = []
        for first in range(0, len(names), LOGS_BATCH_RUNS):
            chunk = names[first : first + LOGS_BATCH_RUNS]
            batch += remote.predict(TABLE_PROJECT, chunk, api_name="/get_logs_batch")
        last = {
            entry["run_id"]: {k: v for k, v in entry["logs"][-1].items() if k.startswith("m")}
            for entry in batch
            if entry["logs"]
        }
        return frame.join(pd.DataFrame.from_dict(last, orient="index"))
