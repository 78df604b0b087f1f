"""What a store holds and its bytes on disk, on either backend (``despina info``)."""

from __future__ import annotations

from pathlib import Path

from despina.store import Store
from despina.store.batch import Batch, MetricColumn
from despina.store.runs import RunSpec, create_run
from despina.store.stats import ProjectStats, disk_bytes, project_stats
from despina.store.writer import RunWriter

M = 1_000_000


def test_counts_and_bytes_of_a_store(home: Path) -> None:
    store = Store.open(home)
    for run_id in ("a", "b"):
        pk = create_run(store, RunSpec("ws/p", run_id, experiment_name="exp")).pk
        steps = [s * M for s in range(3000)]
        RunWriter(store, pk).apply(
            Batch(metrics={"loss": MetricColumn(steps, [0.5] * 3000, list(range(3000)))})
        )
    store.create_project("ws/empty")
    assert project_stats(store) == [
        ProjectStats("ws/empty", 0, 0, 0, 0, 0, 0),
        # attributes: loss and the system string sets (tags, group tags) of each run
        ProjectStats("ws/p", 2, 1, 0, 6, 2, 6000),
    ]
    sizes = disk_bytes(store)
    assert set(sizes) == {"database", "wal", "files"}
    assert sizes["database"] > 0 and sizes["files"] == 0
