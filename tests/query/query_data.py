"""Projects logged with ``despina.Run`` for the query tests (spec/query-api.md §16)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import despina
from despina.server.auth import mint_api_token
from despina.store import Store

T0 = datetime(2025, 1, 1, 0, 1, 40, tzinfo=UTC)
"""Points of the §16.1 example are timestamped T0 + step seconds."""

QUIET = {"enable_console_log_capture": False, "source_tracking_config": None}


@contextlib.contextmanager
def shared_store(request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    """Where the data of a module- or session-scoped fixture lives: ``directory`` (the embedded
    store), or with ``DESPINA_TEST_STORE=postgresql`` a database of its own that outlives the
    per-test databases (dropped at the end). Log into it inside :func:`logging_into`; queries
    name it with ``despina.query.set_store``."""
    if os.environ.get("DESPINA_TEST_STORE", "sqlite") != "postgresql":
        yield str(directory)
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database("query")
    from despina.query.service import QueryService

    # opened here, outside any test: the per-test fixture closes the stores a test opens
    QueryService.for_home(directory, url=url)
    try:
        yield url
    finally:
        with QueryService._instances_lock:
            for key, service in list(QueryService._instances.items()):
                if getattr(service.store, "url", None) == url:
                    service.store.close()
                    del QueryService._instances[key]
        cluster.drop_database(url)


@contextlib.contextmanager
def logging_into(location: str) -> Iterator[None]:
    """``despina.Run(home=...)`` logs to ``location`` (a store URL) inside the block."""
    with pytest.MonkeyPatch.context() as patch:
        if "://" in location:
            patch.setenv("DESPINA_STORE", location)
        yield


def mint_for(location: str, url: str, workspace: str = "ws", project: str | None = None) -> str:
    """An API token of the store at ``location`` for ``workspace`` (or one project of it)."""
    store = Store.open(url=location)
    try:
        token, _ = mint_api_token(
            store, url=url, workspace=workspace, project=project, username="tester"
        )
    finally:
        store.close()
    return token


def at(step: float) -> datetime:
    return T0 + timedelta(seconds=step)


def log_example(home: Path, project: str = "ws/proj") -> None:
    """The §16.1 example: r1 (exp-a root), r2 (exp-a head, fork of r1 at 2), r3 (exp-b)."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    r1 = despina.Run(
        project=project,
        run_id="r1",
        experiment_name="exp-a",
        home=home,
        creation_time=base,
        **QUIET,
    )
    r1.log_configs({"cfg/lr": 0.1, "cfg/bs": 32})
    for step, loss in enumerate([1.0, 0.9, 0.8, 0.7, 0.6]):
        r1.log_metrics({"loss": loss}, step=step, timestamp=at(step))
    r1.log_string_series({"msg": "a0"}, step=0, timestamp=at(0))
    r1.log_string_series({"msg": "a1"}, step=1, timestamp=at(1))
    r1.close()
    r2 = despina.Run(
        project=project,
        run_id="r2",
        experiment_name="exp-a",
        home=home,
        fork_run_id="r1",
        fork_step=2,
        inherit_configs=False,
        creation_time=base + timedelta(minutes=1),
        **QUIET,
    )
    r2.log_configs({"cfg/lr": 0.2, "cfg/tags": {"x", "y"}})
    for step, loss in zip([3, 4, 5], [0.55, 0.5, 0.45], strict=True):
        r2.log_metrics({"loss": loss}, step=step, timestamp=at(step))
    r2.close()
    r3 = despina.Run(
        project=project,
        run_id="r3",
        experiment_name="exp-b",
        home=home,
        creation_time=base + timedelta(minutes=2),
        **QUIET,
    )
    r3.log_configs({"cfg/lr": 1, "cfg/name": "b"})
    for step, loss in enumerate([2.0, 1.5, 1.0]):
        r3.log_metrics({"loss": loss}, step=step, timestamp=at(step))
    r3.log_metrics({"acc": 0.5}, step=1, timestamp=at(1))
    r3.log_string_series({"msg": "b1"}, step=1, timestamp=at(1))
    r3.close()


def log_rich(home: Path, project: str = "ws/rich") -> None:
    """Every attribute type, NaN/±inf, float steps, previews, forks, files and histograms."""
    from despina.types import File, Histogram

    base = datetime(2025, 3, 1, tzinfo=UTC)
    nan, inf = float("nan"), float("inf")
    a1 = despina.Run(
        project=project,
        run_id="a1",
        experiment_name="alpha",
        home=home,
        creation_time=base,
        **QUIET,
    )
    a1.log_configs(
        {
            "cfg/float": 0.5,
            "cfg/int": 7,
            "cfg/bool": True,
            "cfg/str": "hello",
            "cfg/dt": datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "cfg/set": {"p", "q"},
            "cfg/mixed": 1.5,
            "cfg/big": 2**62 + 1,
        }
    )
    a1.add_tags(["t1", "t2"])
    for step in range(50):
        values = {"m/loss": 1.0 / (step + 1), "m/acc": step / 50}
        if step % 7 == 3:
            values["m/loss"] = nan
        if step == 10:
            values["m/acc"] = inf
        if step == 11:
            values["m/acc"] = -inf
        a1.log_metrics(values, step=step, timestamp=base + timedelta(seconds=step, milliseconds=3))
        a1.log_metrics(
            {"m/odd": step * 0.25}, step=step + 0.5, timestamp=base + timedelta(seconds=step)
        )
    for step in range(0, 50, 10):
        a1.log_string_series(
            {"log/msg": f"line {step}"}, step=step, timestamp=base + timedelta(seconds=step)
        )
        a1.log_histograms(
            {"h/hist": Histogram(bin_edges=[0.0, 1.0, 2.0], counts=[step, 4])},
            step=step,
            timestamp=base + timedelta(seconds=step),
        )
        a1.log_files(
            {"f/series": File(f"img {step}".encode() * 200, mime_type="image/png")},
            step=step,
            timestamp=base + timedelta(seconds=step),
        )
    a1.assign_files({"f/file": File(b"hello world!", mime_type="text/plain")})
    a1.close()

    a2 = despina.Run(
        project=project,
        run_id="a2",
        experiment_name="alpha",
        home=home,
        fork_run_id="a1",
        fork_step=20,
        creation_time=base + timedelta(hours=1),
        **QUIET,
    )
    for step in range(21, 61):
        a2.log_metrics(
            {"m/loss": 0.01 * step, "m/new": float(step)},
            step=step,
            timestamp=base + timedelta(seconds=step),
        )
    a2.log_string_series({"log/msg": "forked"}, step=25, timestamp=base + timedelta(seconds=25))
    a2.log_metrics(
        {"m/loss": 9.5},
        step=61,
        timestamp=base + timedelta(seconds=61),
        preview=True,
        preview_completion=0.25,
    )
    a2.log_metrics(
        {"m/loss": 9.75, "m/new": 1.0},
        step=62,
        timestamp=base + timedelta(seconds=62),
        preview=True,
        preview_completion=0.5,
    )
    a2.log_configs({"cfg/text": "text"})
    a2.close()

    b1 = despina.Run(
        project=project,
        run_id="b1",
        experiment_name="beta",
        home=home,
        creation_time=base + timedelta(hours=2),
        **QUIET,
    )
    b1.log_configs({"cfg/int": 3, "cfg/mixed": 2, "cfg/float": nan, "cfg/text": 4})
    b1.add_tags(["t2"])
    for step in range(0, 30, 3):
        b1.log_metrics(
            {"m/loss": 2.0 - step / 30, "step": float(step), "value": -1.0},
            step=step,
            timestamp=base + timedelta(seconds=step),
        )
    b1.log_string_series({"log/msg": "beta"}, step=3, timestamp=base + timedelta(seconds=3))
    b1.close()

    c1 = despina.Run(
        project=project, run_id="c1", home=home, creation_time=base + timedelta(hours=3), **QUIET
    )
    c1.log_configs({"cfg/float": 1.25})
    c1.log_metrics({"m/loss": 5.0}, step=0, timestamp=base)
    c1.log_metrics({"m/once": 3.0}, step=4, timestamp=base)
    c1.close()


def log_seed(home: Path, project: str = "ws/seed") -> None:
    """The seed document's runs (spec/query-api.md §16.3): kittiwake_week-1 (steps 1–5, a
    preview at 6), kittiwake_week-2 forked from it at step 5, seagull-week1."""
    base = datetime(2025, 5, 1, tzinfo=UTC)
    k1 = despina.Run(
        project=project,
        run_id="kittiwake-1",
        experiment_name="kittiwake_week-1",
        home=home,
        creation_time=base,
        **QUIET,
    )
    losses = [0.31, 0.30, 0.27, 0.28, 0.26]
    accuracies = [0.95, 0.96, 0.97, 0.98, 0.99]
    for step in range(1, 6):
        k1.log_metrics(
            {"loss": losses[step - 1], "accuracy": accuracies[step - 1], "metrics/m_0": step * 1.5},
            step=float(step),
            timestamp=base + timedelta(seconds=step),
        )
    k1.log_metrics({"metrics/m_1": 7.0}, step=3.0, timestamp=base + timedelta(seconds=3))
    k1.log_metrics(
        {"loss": 0.23},
        step=6.0,
        timestamp=base + timedelta(seconds=6),
        preview=True,
        preview_completion=0.326681,
    )
    k1.close()
    k2 = despina.Run(
        project=project,
        run_id="kittiwake-2",
        experiment_name="kittiwake_week-2",
        home=home,
        fork_run_id="kittiwake-1",
        fork_step=5.0,
        creation_time=base + timedelta(hours=1),
        **QUIET,
    )
    for step, loss in zip(range(6, 10), [0.23, 0.20, 0.17, 0.16], strict=True):
        k2.log_metrics({"loss": loss}, step=float(step), timestamp=base + timedelta(seconds=step))
    k2.close()
    s1 = despina.Run(
        project=project,
        run_id="seagull-1",
        experiment_name="seagull-week1",
        home=home,
        creation_time=base + timedelta(hours=2),
        **QUIET,
    )
    for step in range(0, 200, 10):
        s1.log_metrics(
            {"loss": 1.0 / (step + 1), "metrics/m_0": float(step)},
            step=float(step),
            timestamp=base + timedelta(seconds=step),
        )
    s1.close()
