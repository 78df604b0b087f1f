"""trackio, local only: ``trackio.init``/``log``/``finish`` into ``TRACKIO_DIR`` (set by the
worker before import). trackio has no public read API for metrics; reads go through
``trackio.sqlite_storage.SQLiteStorage``, the layer its own dashboard and ``trackio.Api`` use."""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path
from typing import Any

from bench.peers.base import SERIES_NAME, TABLE_PROJECT, Peer, table_metric, table_params

_fresh = itertools.count()


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
    no_server = (
        "its self-hosted server is the dashboard (`trackio show`); its remote reads are the "
        "dashboard's HTTP endpoints, reached by the CLI (`trackio get metric --space <url>`) "
        "with no public Python read API over them; not measured yet"
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
