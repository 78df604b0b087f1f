"""Shapes of the workloads, the no-network environment and small helpers shared by adapters."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BUDGET_S = {
    "write": 120.0,
    "series": 60.0,
    "table": 60.0,
    "series_remote": 60.0,
    "table_remote": 60.0,
}
"""A (contender, job) whose worker took longer in a round is not measured in later rounds."""

STOP_S = {"series_remote": 300.0, "table_remote": 300.0}
"""A read through a server still running after this long is stopped; its figure is then the
lower bound "more than the seconds it had run" (a remote read can take far longer than a
local one: through ``aim server`` a 10,000-point series took about 15 s in a quick run)."""


@dataclass(frozen=True)
class Sizes:
    """Workload shapes (issue 16's table); ``quick()`` shrinks them for a smoke run."""

    narrow_width: int = 10
    narrow_steps: int = 5_000
    starts: int = 5
    sweep_runs: int = 1_000
    sweep_budget_s: float = 20.0
    wide_width: int = 1_000
    wide_steps: int = 200
    series_points: int = 1_000_000
    table_runs: int = 2_000
    table_params: int = 20
    table_metrics: int = 5
    table_steps: int = 5
    table_repeats: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            narrow_steps=200,
            starts=2,
            sweep_runs=20,
            wide_width=100,
            wide_steps=20,
            series_points=10_000,
            table_runs=20,
            table_repeats=2,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Everything that could leave the machine is switched off; `make bench-peers` also runs the
# whole benchmark in a network namespace with only the loopback interface when it can.
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "true",
    "MLFLOW_ALLOW_FILE_STORE": "true",  # 3.x refuses the file store without it
    "GIT_PYTHON_REFRESH": "quiet",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_CONSOLE": "off",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_X_DISABLE_STATS": "true",
    "WANDB_X_DISABLE_META": "true",
    "WANDB_X_DISABLE_MACHINE_INFO": "true",
    "WANDB_ANONYMOUS": "never",
    "AIM_UI_TELEMETRY_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TRACKIO_SPACE_ID": "",
    "TRACKIO_SERVER_URL": "",
    "NO_PROXY": "*",
    "TOKENIZERS_PARALLELISM": "false",
}


def offline_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **OFFLINE_ENV, **(extra or {})}
    for key in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    return env


def disk_bytes(root: Path) -> int:
    """Bytes of every regular file under ``root`` (what the tool left on disk)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def payloads(width: int, steps: int, prefix: str = "m") -> list[dict[str, float]]:
    """The logged values, built before timing starts (the same for every tool)."""
    keys = [f"{prefix}{j:04d}" for j in range(width)]
    return [{k: s * 0.001 + j for j, k in enumerate(keys)} for s in range(steps)]
