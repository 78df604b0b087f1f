"""Projects logged with ``despina.Run`` for the query tests (spec/query-api.md §16)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import despina

T0 = datetime(2025, 1, 1, 0, 1, 40, tzinfo=UTC)
"""Points of the §16.1 example are timestamped T0 + step seconds."""

QUIET = {"enable_console_log_capture": False, "source_tracking_config": None}


def at(step: float) -> datetime:
    return T0 + timedelta(seconds=step)


def log_example(home: Path, project: str = "ws/proj") -> None:
    """The §16.1 example: r1 (exp-a root), r2 (exp-a head, fork of r1 at 2), r3 (exp-b)."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    r1 = despina.Run(project=project, run_id="r1", experiment_name="exp-a", home=home,
                     creation_time=base, **QUIET)
    r1.log_configs({"cfg/lr": 0.1, "cfg/bs": 32})
    for step, loss in enumerate([1.0, 0.9, 0.8, 0.7, 0.6]):
        r1.log_metrics({"loss": loss}, step=step, timestamp=at(step))
    r1.log_string_series({"msg": "a0"}, step=0, timestamp=at(0))
    r1.log_string_series({"msg": "a1"}, step=1, timestamp=at(1))
    r1.close()
    r2 = despina.Run(project=project, run_id="r2", experiment_name="exp-a", home=home,
                     fork_run_id="r1", fork_step=2, inherit_configs=False,
                     creation_time=base + timedelta(minutes=1), **QUIET)
    r2.log_configs({"cfg/lr": 0.2, "cfg/tags": {"x", "y"}})
    for step, loss in zip([3, 4, 5], [0.55, 0.5, 0.45], strict=True):
        r2.log_metrics({"loss": loss}, step=step, timestamp=at(step))
    r2.close()
    r3 = despina.Run(project=project, run_id="r3", experiment_name="exp-b", home=home,
                     creation_time=base + timedelta(minutes=2), **QUIET)
    r3.log_configs({"cfg/lr": 1, "cfg/name": "b"})
    for step, loss in enumerate([2.0, 1.5, 1.0]):
        r3.log_metrics({"loss": loss}, step=step, timestamp=at(step))
    r3.log_metrics({"acc": 0.5}, step=1, timestamp=at(1))
    r3.log_string_series({"msg": "b1"}, step=1, timestamp=at(1))
    r3.close()
