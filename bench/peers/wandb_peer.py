"""W&B in offline mode: ``wandb.init(mode="offline")``; offline runs cannot be read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers.base import Peer


class Wandb(Peer):
    key = "wandb"
    title = "W&B (offline)"
    package = "wandb"
    reads = False
    api = (
        '`wandb.init(mode="offline", dir=…, settings=wandb.Settings(x_disable_stats=True, '
        'x_disable_meta=True, console="off", disable_git=True, save_code=False))`, '
        "`run.log(dict, step=)`, `run.finish()`"
    )
    no_server = (
        "W&B's self-hosted server is the W&B Server Docker image (with a licence), not a "
        "package that runs here; offline runs are read only once synced to it"
    )

    def prepare(self) -> None:
        import wandb

        self._wandb = wandb

    def open_run(self, store: Path, name: str) -> Any:
        settings = self._wandb.Settings(
            x_disable_stats=True,
            x_disable_meta=True,
            console="off",
            disable_git=True,
            save_code=False,
            silent=True,
        )
        return self._wandb.init(
            project="bench", name=name, mode="offline", dir=str(store), settings=settings
        )

    def log(self, run: Any, payload: dict[str, float], step: int) -> None:
        run.log(payload, step=step)

    def close(self, run: Any) -> None:
        run.finish()
