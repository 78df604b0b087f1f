"""neptune-scale in offline mode: ``neptune_scale.Run(mode="offline")``; it cannot read back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.peers.base import Peer

QUIET: dict[str, Any] = {"enable_console_log_capture": False, "source_tracking_config": None}


class NeptuneScale(Peer):
    key = "neptune-scale"
    title = "neptune-scale (offline)"
    package = "neptune-scale"
    reads = False
    api = (
        '`neptune_scale.Run(mode="offline", log_directory=…, source_tracking_config=None, '
        "enable_console_log_capture=False)`, `run.log_metrics(dict, step=)`, `run.close()`"
    )
    no_server = (
        "neptune-scale only writes; Neptune's reads are neptune-query's, measured in its own "
        "column through `despina serve` (Neptune's own server is not self-hostable here)"
    )

    def prepare(self) -> None:
        import neptune_scale

        logging.getLogger("neptune").setLevel(logging.ERROR)
        self._run_class = neptune_scale.Run

    def open_run(self, store: Path, name: str) -> Any:
        return self._run_class(
            project=f"bench/{name}",
            run_id=name,
            mode="offline",
            log_directory=store,
            **QUIET,
        )

    def open_sweep_run(self, store: Path, index: int) -> Any:
        return self._run_class(
            project="bench/sweep",
            run_id=f"sweep-{index}",
            mode="offline",
            log_directory=store,
            **QUIET,
        )

    def log(self, run: Any, payload: dict[str, float], step: int) -> None:
        run.log_metrics(payload, step=step)

    def close(self, run: Any) -> None:
        run.close()
