"""The interface every contender implements; a worker process drives exactly one of them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.peers.common import disk_bytes, payloads
from bench.peers.serving import Served

SERIES_NAME = "loss"
TABLE_PROJECT = "table"


class Peer:
    """One contender. ``store`` is always a directory of its own (a fresh store when empty)."""

    key = ""
    title = ""
    package = ""  # the distribution whose version is reported
    writes = True  # whether it logs (neptune-query only reads)
    reads = True  # whether the tool has a read-back API (W&B and neptune-scale offline do not)
    data_of = ""  # the contender whose read data sets it reads ("": its own)
    api = ""  # which public API drives it, for docs/benchmarks.md
    remote_api = ""  # how it reads through a server, for docs/benchmarks.md ("": it does not)
    no_server = ""  # why it has no "through a server" figures, for docs/benchmarks.md

    def prepare(self) -> None:
        """Import the tool (outside every timed region)."""

    # --- writing -------------------------------------------------------------------------
    def open_run(self, store: Path, name: str) -> Any:
        raise NotImplementedError

    def log(self, run: Any, payload: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self, run: Any) -> None:
        raise NotImplementedError

    def start(self, store: Path) -> float:
        """Seconds from nothing to a run ready to log, in a fresh store, plus closing it."""
        begin = time.perf_counter()
        run = self.open_run(store, "start")
        self.close(run)
        return time.perf_counter() - begin

    def open_sweep_run(self, store: Path, index: int) -> Any:
        """Run ``index`` of a sweep: one project (experiment) holding every run of ``store``."""
        return self.open_run(store, f"sweep-{index}")

    def sweep(self, store: Path, runs: int, budget_s: float) -> tuple[float, int]:
        """(seconds per run, runs done) for a sweep of short runs in one process and store:
        each run created, one metric logged, closed. Stops early past ``budget_s``."""
        begin = time.perf_counter()
        done = 0
        for index in range(runs):
            run = self.open_sweep_run(store, index)
            self.log(run, {"loss": 1.0 / (index + 1)}, 0)
            self.close(run)
            done += 1
            if time.perf_counter() - begin > budget_s:
                break
        return (time.perf_counter() - begin) / done, done

    def log_timed(self, store: Path, width: int, steps: int) -> float:
        """Seconds from the first logging call until the run is closed (data on disk)."""
        data = payloads(width, steps)
        run = self.open_run(store, f"log-{width}")
        begin = time.perf_counter()
        for step, payload in enumerate(data):
            self.log(run, payload, step)
        self.close(run)
        return time.perf_counter() - begin

    def store_bytes(self, store: Path) -> int:
        return disk_bytes(store)

    # --- read data sets (built once, untimed) ---------------------------------------------
    def write_series(self, store: Path, points: int) -> None:
        """One run with one metric ``loss`` of ``points`` steps."""
        run = self.open_run(store, "series")
        for step in range(points):
            self.log(run, {SERIES_NAME: step * 1e-6}, step)
        self.close(run)

    def write_table(self, store: Path, runs: int, params: int, metrics: int, steps: int) -> None:
        raise NotImplementedError

    # --- reading (timed by the worker) ----------------------------------------------------
    def read_series(self, store: Path) -> Any:
        """The whole series as a pandas DataFrame."""
        raise NotImplementedError

    def read_table(self, store: Path) -> Any:
        """Runs with ``p00 > 0.5``: params and last metric values as a pandas DataFrame."""
        raise NotImplementedError

    # --- reading through a server (started by the runner, untimed) -------------------------
    def serve(self, store: Path, port: int) -> Served:
        """The tool's own server over ``store`` (a read data set), on 127.0.0.1:``port``.

        Runs in the runner, which does not import the tool: only commands and files here."""
        raise NotImplementedError

    def read_series_remote(self, store: Path, server: dict[str, str]) -> Any:
        """As ``read_series``, through the server described by ``server`` (``Served.client``);
        ``store`` is the same data set, for the ids the set-up left beside it."""
        raise NotImplementedError

    def read_table_remote(self, store: Path, server: dict[str, str]) -> Any:
        """As ``read_table``, through the server."""
        raise NotImplementedError


def table_params(index: int, params: int) -> dict[str, float]:
    """Deterministic parameters of run ``index``: ``p00`` is uniform in [0, 1)."""
    return {f"p{j:02d}": ((index * 7919 + j * 104729) % 1000) / 1000 for j in range(params)}


def table_metric(index: int, metric: int, step: int) -> float:
    """Metric ``m0`` equals ``p00`` at every step, so a filter on either keeps the same runs."""
    if metric == 0:
        return table_params(index, 1)["p00"]
    return ((index * 31 + metric * 17 + step) % 997) / 997
