"""MLflow with its SQLite store and with its file store, local paths; and the same stores behind
``mlflow server``, read with the same calls over its REST API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.peers.base import SERIES_NAME, TABLE_PROJECT, Peer, table_metric, table_params
from bench.peers.serving import HOST, Served


class _Mlflow(Peer):
    package = "mlflow"
    api = (
        "`mlflow.set_tracking_uri(…)`, `mlflow.start_run(log_system_metrics=False)`, "
        "`mlflow.log_metrics(dict, step=, synchronous=False)` (async logging), "
        "`mlflow.end_run()`; reads: `MlflowClient().get_metric_history`, "
        '`mlflow.search_runs(filter_string="metrics.m0 > 0.5")`; read data written with '
        "`MlflowClient().log_batch`"
    )
    remote_api = (
        "`mlflow server --backend-store-uri <the read store> --host 127.0.0.1 --workers 1` "
        "(background job execution off); the same two calls with the tracking URI "
        "`http://127.0.0.1:<port>` (REST)"
    )

    def uri(self, store: Path) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        import mlflow
        from mlflow.entities import Metric, Param

        mlflow.config.enable_async_logging(True)
        self._mlflow = mlflow
        self._metric, self._param = Metric, Param

    def _use(self, store: Path) -> None:
        store.mkdir(parents=True, exist_ok=True)
        self._mlflow.set_tracking_uri(self.uri(store))

    def open_run(self, store: Path, name: str) -> Any:
        self._use(store)
        return self._mlflow.start_run(run_name=name, log_system_metrics=False)

    def log(self, run: Any, payload: dict[str, float], step: int) -> None:
        self._mlflow.log_metrics(payload, step=step, synchronous=False)

    def close(self, run: Any) -> None:
        self._mlflow.end_run()  # waits for the async queue

    def _client(self, store: Path) -> Any:
        self._use(store)
        return self._mlflow.MlflowClient()

    def write_series(self, store: Path, points: int) -> None:
        client = self._client(store)
        exp = client.create_experiment("series")
        run = client.create_run(exp, run_name="series")
        for first in range(0, points, 1000):
            batch = [
                self._metric(SERIES_NAME, step * 1e-6, 0, step)
                for step in range(first, min(points, first + 1000))
            ]
            client.log_batch(run.info.run_id, metrics=batch)
        client.set_terminated(run.info.run_id)
        (store / "series-run-id").write_text(run.info.run_id)

    def read_series(self, store: Path) -> Any:
        return self._history(self._client(store), store)

    def _history(self, client: Any, store: Path) -> Any:
        import pandas as pd

        history = client.get_metric_history((store / "series-run-id").read_text(), SERIES_NAME)
        return pd.DataFrame(
            {
                "step": [m.step for m in history],
                "value": [m.value for m in history],
                "timestamp": [m.timestamp for m in history],
            }
        )

    def write_table(self, store: Path, runs: int, params: int, metrics: int, steps: int) -> None:
        client = self._client(store)
        exp = client.create_experiment(TABLE_PROJECT)
        for i in range(runs):
            run = client.create_run(exp, run_name=f"run-{i:05d}")
            values = [
                self._metric(f"m{j}", table_metric(i, j, step), 0, step)
                for j in range(metrics)
                for step in range(steps)
            ]
            config = [self._param(k, str(v)) for k, v in table_params(i, params).items()]
            client.log_batch(run.info.run_id, metrics=values, params=config)
            client.set_terminated(run.info.run_id)

    def read_table(self, store: Path) -> Any:
        # MLflow params are strings (=, !=, LIKE only): the numeric filter goes on metric m0,
        # whose value equals p00 (the same runs as the other tools' p00 > 0.5).
        self._use(store)
        return self._search()

    def _search(self) -> Any:
        return self._mlflow.search_runs(
            experiment_names=[TABLE_PROJECT], filter_string="metrics.m0 > 0.5"
        )

    def serve(self, store: Path, port: int) -> Served:
        cli = str(Path(sys.executable).with_name("mlflow"))
        command = [cli, "server", "--backend-store-uri", self.uri(store), "--host", HOST]
        command += ["--port", str(port), "--workers", "1"]
        command += ["--artifacts-destination", (store / "mlartifacts").as_uri()]
        # The job runner (huey consumers) serves MLflow's background jobs, not reads.
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        return Served(command, "/health", {"url": f"http://{HOST}:{port}"}, env, store)

    def read_series_remote(self, store: Path, server: dict[str, str]) -> Any:
        return self._history(self._mlflow.MlflowClient(server["url"]), store)

    def read_table_remote(self, store: Path, server: dict[str, str]) -> Any:
        self._mlflow.set_tracking_uri(server["url"])
        return self._search()


class MlflowSqlite(_Mlflow):
    key = "mlflow-sqlite"
    title = "MLflow (SQLite)"

    def uri(self, store: Path) -> str:
        return f"sqlite:///{store / 'mlflow.db'}"


class MlflowFile(_Mlflow):
    key = "mlflow-file"
    title = "MLflow (file store)"

    def uri(self, store: Path) -> str:
        return (store / "mlruns").as_uri()
