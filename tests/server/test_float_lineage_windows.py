"""Float-series pages of forked runs and previews read only the chunks they need (issue #12,
finding 3).

Only series without inherited points or previews used to read chunk windows; a fork's page
read its whole lineage. Pages now read, along the lineage (the parent's points up to the fork
step, then the run's own), only the chunks holding the page's points, and previews follow the
last committed step a full read would end at. Every answer here is compared with a full read.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from despina.query import float_batch
from despina.query.batch import BatchReads
from despina.server.auth import Principal
from despina.server.retrieval import RetrievalService
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import ApiKey
from despina.store.batch import Batch, MetricColumn, PreviewPoint
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

PROJECT = "ws/lineagewin"
T0 = 1_700_000_000_000
M = 1_000_000
RUNS = ["root", "f1", "f2", "f3"]


def _write(
    store: Store,
    run_id: str,
    experiment: str,
    steps: np.ndarray,
    *,
    fork: tuple[str, float] | None = None,
    previews: tuple[float, ...] = (),
) -> None:
    made = create_run(
        store,
        RunSpec(
            project=PROJECT,
            run_id=run_id,
            experiment_name=experiment,
            creation_ms=T0,
            fork_run_id=None if fork is None else fork[0],
            fork_step=None if fork is None else int(fork[1] * M),
        ),
    )
    values = np.random.default_rng(len(run_id)).normal(size=len(steps))
    metrics = {"m": MetricColumn((steps * M).astype(np.int64), values, T0 + np.arange(len(steps)))}
    batch = Batch(
        metrics=metrics if len(steps) else {},
        previews=[PreviewPoint("m", int(s * M), s / 7, T0, 0.25) for s in previews],
    )
    RunWriter(store, made.pk).apply(batch)


@pytest.fixture(scope="module")
def service(module_store: str | None, tmp_path_factory: pytest.TempPathFactory) -> RetrievalService:
    store = Store.open(tmp_path_factory.mktemp("lineagewin") / "home")
    store.create_project(PROJECT, key="LW")
    # four levels, each forked inside a chunk of its parent (chunks hold 1,024 points)
    _write(store, "root", "a", np.arange(0, 20_000, 1.0))
    _write(store, "f1", "a", np.arange(15_000.5, 30_000, 1.0), fork=("root", 15_000.25))
    _write(
        store,
        "f2",
        "b",
        np.arange(25_000.5, 40_000, 1.0),
        fork=("f1", 25_000.0),
        previews=(30_000.0, 40_000.0, 40_001.0, 40_002.5),
    )
    _write(store, "f3", "b", np.array([]), fork=("f2", 39_000.0), previews=(39_500.0, 41_000.0))
    return RetrievalService(store, ServerSettings())


def _principal() -> Principal:
    return Principal(ApiKey("k", "", "n", "u", "ws", None, 0, None, None))


LINEAGES = [("FULL", "EXPERIMENT"), ("NONE", "EXPERIMENT"), ("NONE", "RUN")]


def _body(
    runs: list[str],
    *,
    limit: int,
    order: str,
    preview: bool,
    lineage: tuple[str, str],
    after: float | None,
    step_range: tuple[float | None, float | None],
) -> bytes:
    requests = []
    for i, run in enumerate(runs):
        request: dict[str, Any] = {
            "requestId": f"q{i}",
            "series": {
                "holder": {"identifier": f"{PROJECT}/LW-{RUNS.index(run) + 1}", "type": "run"},
                "attribute": "m",
                "lineage": lineage[0],
                "lineageEntityType": lineage[1],
                "includePreview": preview,
            },
        }
        if after is not None:
            request["afterStep"] = after
        requests.append(request)
    return json.dumps(
        {
            "requests": requests,
            "stepRange": {"from": step_range[0], "to": step_range[1]},
            "order": order,
            "perSeriesPointsLimit": limit,
        }
    ).encode()


def _full_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every float-series read reads whole series (what forks and previews did before)."""
    flat = BatchReads.float_series_flat

    def whole(self: BatchReads, wanted: Any, lo: int, hi: int, **_: Any) -> Any:
        return flat(self, wanted, lo, hi)

    monkeypatch.setattr(BatchReads, "float_series_flat", whole)


CASES = list(
    itertools.product(
        [["f3"], ["f2"], ["f1", "root"], RUNS],
        [1, 7, 2000],
        ["ascending", "descending"],
        [False, True],
        LINEAGES,
        [None, 15_000.0, 39_600.0],
        [(None, None), (14_000.5, 26_000.0), (39_000.0, None)],
    )
)


def test_windowed_pages_equal_full_reads(
    service: RetrievalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = [
        _body(
            runs,
            limit=limit,
            order=order,
            preview=preview,
            lineage=lineage,
            after=after,
            step_range=step_range,
        )
        for runs, limit, order, preview, lineage, after, step_range in CASES
    ]
    windowed = [bytes(service.float_series(_principal(), b, {}).body) for b in bodies]
    with monkeypatch.context() as patch:
        _full_reads(patch)
        full = [bytes(service.float_series(_principal(), b, {}).body) for b in bodies]
    for case, got, expected in zip(CASES, windowed, full, strict=True):
        assert got == expected, case
    assert sum(len(b) for b in full) > 1_000_000  # the cases hold points


@pytest.mark.parametrize(
    ("order", "preview"), list(itertools.product(["ascending", "descending"], [False, True]))
)
def test_a_page_of_a_fork_reads_its_chunks_only(
    service: RetrievalService, monkeypatch: pytest.MonkeyPatch, order: str, preview: bool
) -> None:
    """A 10-point page of a four-level lineage (65,000 points) decodes a few chunks."""
    decoded: list[int] = []
    read_chunks = float_batch._read_chunks

    def counting(*args: Any, **kwargs: Any) -> Any:
        found = read_chunks(*args, **kwargs)
        decoded.append(sum(len(np.atleast_1d(c[2])) for chunks in found.values() for c in chunks))
        return found

    monkeypatch.setattr(float_batch, "_read_chunks", counting)
    body = _body(
        ["f3"],
        limit=10,
        order=order,
        preview=preview,
        lineage=LINEAGES[0],
        after=None,
        step_range=(None, None),
    )
    service.float_series(_principal(), body, {})
    assert decoded and sum(decoded) <= 2 * 1024, decoded
