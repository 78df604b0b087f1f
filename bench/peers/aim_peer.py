"""Aim: ``aim.Run(repo=…)`` with ``run.track(dict, step=)``; reads through ``aim.Repo``, of the
repository's directory or of an ``aim server`` (``aim://host:port``, its remote tracking server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.peers.base import SERIES_NAME, TABLE_PROJECT, Peer, table_metric, table_params
from bench.peers.serving import HOST, Served


class Aim(Peer):
    key = "aim"
    title = "Aim"
    package = "aim"
    api = (
        "`aim.Run(repo=…, system_tracking_interval=None, log_system_params=False, "
        "capture_terminal_logs=False)`, `run.track(dict, step=)`, `run.close()`; reads: "
        "`Repo(path).get_run(hash).get_metric(name, Context({})).dataframe()`, "
        '`Repo(path).query_metrics("run.hparams.p00 > 0.5").dataframe(only_last=True)`'
    )
    remote_api = (
        "`aim server --repo <the read repository> --host 127.0.0.1` (its remote tracking "
        'server); the same two calls on `Repo.from_path("aim://127.0.0.1:<port>")`'
    )

    def prepare(self) -> None:
        import aim
        from aim.storage.context import Context

        self._aim, self._context = aim, Context

    def open_run(self, store: Path, name: str) -> Any:
        return self._aim.Run(
            repo=str(store),
            experiment=name,
            system_tracking_interval=None,
            log_system_params=False,
            capture_terminal_logs=False,
        )

    def log(self, run: Any, payload: dict[str, float], step: int) -> None:
        run.track(payload, step=step)

    def close(self, run: Any) -> None:
        run.close()

    def write_series(self, store: Path, points: int) -> None:
        run = self.open_run(store, "series")
        for step in range(points):
            run.track(step * 1e-6, name=SERIES_NAME, step=step)
        (store / "series-run-hash").write_text(run.hash)
        run.close()
        _reindex(store)

    def write_table(self, store: Path, runs: int, params: int, metrics: int, steps: int) -> None:
        for i in range(runs):
            run = self.open_run(store, TABLE_PROJECT)
            run["hparams"] = table_params(i, params)
            for step in range(steps):
                run.track({f"m{j}": table_metric(i, j, step) for j in range(metrics)}, step=step)
            run.close()
        _reindex(store)

    def read_series(self, store: Path) -> Any:
        return self._series(self._aim.Repo.from_path(str(store)), store)

    def _series(self, repo: Any, store: Path) -> Any:
        run = repo.get_run((store / "series-run-hash").read_text())
        return run.get_metric(SERIES_NAME, self._context({})).dataframe()

    def read_table(self, store: Path) -> Any:
        return self._table(self._aim.Repo.from_path(str(store)))

    def _table(self, repo: Any) -> Any:
        from aim.sdk.types import QueryReportMode

        query = repo.query_metrics("run.hparams.p00 > 0.5", report_mode=QueryReportMode.DISABLED)
        return query.dataframe(only_last=True)

    def serve(self, store: Path, port: int) -> Served:
        aim = str(Path(sys.executable).with_name("aim"))
        command = [aim, "server", "--repo", str(store), "--host", HOST, "--port", str(port), "-y"]
        return Served(command, "/", {"url": f"aim://{HOST}:{port}"})

    def read_series_remote(self, store: Path, server: dict[str, str]) -> Any:
        return self._series(self._aim.Repo.from_path(server["url"]), store)

    def read_table_remote(self, store: Path, server: dict[str, str]) -> Any:
        return self._table(self._aim.Repo.from_path(server["url"]))


def _reindex(store: Path) -> None:
    """Queries see runs once Aim's index holds them (its UI server indexes in the background);
    ``aim storage reindex`` builds the index in the untimed set-up instead."""
    aim = Path(sys.executable).with_name("aim")
    cmd = [str(aim), "storage", "--repo", str(store), "reindex", "-y"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
