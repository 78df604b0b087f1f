"""Block summaries kept in the store: a restarted server draws wide charts (step and time axes,
through a fork's lineage) from the summaries its previous life stored, and never from a summary
whose series changed since.

The proof is by tampering: while the server is down, the stored summaries of one metric get
their maxima raised by 1,000 (same chunk signature), those of another get a signature that no
longer matches. After the restart the first metric's bands show the raised maxima (the stored
rows were used, no point was read) and the second's the true ones (stale rows ignored)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from ui_helpers import STEPS, ServerProcess, mint, sign_in, sign_in_tab, watch_errors

from despina.store import Store
from despina.store.chart_summaries import StoredSummary

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
FORK = "kittiwake-fork0-at200"
PARENT = "kittiwake-lr0.0003-s0"
RAISED = 1000.0


@contextlib.contextmanager
def _client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as client:
        token = mint(server.home, server.url, workspace="demo")
        assert sign_in(client, token, "/projects").status_code == 303
        yield client


def _chart(client: httpx.Client, metric: str, axis: str = "step", buckets: int = 5) -> list:
    answer = client.get(
        f"{PROJECT}/chart.json",
        params={"run": [FORK, PARENT], "metric": metric, "x": axis, "buckets": buckets},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["lines"]


def _stored(server: ServerProcess) -> dict[str, list[tuple[int, int, int, int, int, bytes]]]:
    """The stored summary rows by metric path."""
    store = Store.open(server.home)
    try:
        rows = (
            store.connection()
            .execute(
                "SELECT a.path, s.attr_id, s.chunks, s.points, s.last_step, s.blocks, s.data "
                "FROM chart_summaries s JOIN attributes a ON a.id = s.attr_id"
            )
            .fetchall()
        )
    finally:
        store.close()
    out: dict[str, list[tuple[int, int, int, int, int, bytes]]] = {}
    for path, *row in rows:
        out.setdefault(path, []).append(tuple(row))  # type: ignore[arg-type]
    return out


def _rewrite(
    server: ServerProcess, rows: list[tuple[int, int, int, int, int, bytes]], *, stale: bool
) -> None:
    store = Store.open(server.home)
    try:
        with store.write() as conn:
            for attr_id, chunks, points, last_step, blocks, data in rows:
                found = StoredSummary.decode(attr_id, (chunks, points, last_step), blocks, data)
                assert found is not None
                raised = dataclasses.replace(found, high=found.high + RAISED)
                conn.execute(
                    "UPDATE chart_summaries SET points = ?, data = ? WHERE attr_id = ?",
                    (points + 1 if stale else points, raised.encode(), attr_id),
                )
    finally:
        store.close()


def test_a_restarted_server_draws_from_the_stored_summaries(server: ServerProcess) -> None:
    metrics = ["val/loss", "train/loss"]
    with _client(server) as client:
        before = {(m, axis): _chart(client, m, axis) for m in metrics for axis in ("step", "time")}
        for lines in before.values():
            assert len(lines) == 2 and all(1 <= len(line["x"]) <= 5 for line in lines)
            assert all(line["points"] >= STEPS - 200 for line in lines)
    # the summaries are written in the background: both runs' own series of both metrics
    deadline = time.monotonic() + 30
    while True:
        stored = _stored(server)
        if all(len(stored.get(m, [])) >= 2 for m in metrics):
            break
        assert time.monotonic() < deadline, stored.keys()
        time.sleep(0.2)
    server.stop()
    stored = _stored(server)
    _rewrite(server, stored["val/loss"], stale=False)
    _rewrite(server, stored["train/loss"], stale=True)
    server.start()
    with _client(server) as client:
        for axis in ("step", "time"):
            used = _chart(client, "val/loss", axis)
            for old, new in zip(before[("val/loss", axis)], used, strict=True):
                assert new["run"] == old["run"]
                assert max(new["high"]) == pytest.approx(max(old["high"]) + RAISED), (axis, new)
                assert new["low"] == old["low"] and new["y"] == old["y"]
            fresh = _chart(client, "train/loss", axis)
            assert fresh == before[("train/loss", axis)], axis


def test_time_buckets_from_summaries_match_the_points(server: ServerProcess) -> None:
    """Five time buckets come from block summaries (80 points each); the step axis at a
    thousand buckets gives every point: same extremes, and every drawn value is a real point of
    its run, the fork's inherited points included."""
    with _client(server) as client:
        every = _chart(client, "train/accuracy", "step", buckets=1000)
        for axis in ("time", "relative"):
            few = _chart(client, "train/accuracy", axis, buckets=5)
            for all_points, line in zip(every, few, strict=True):
                assert line["run"] == all_points["run"]
                assert len(all_points["y"]) == line["points"] == STEPS
                assert min(line["low"]) == min(all_points["y"])
                assert max(line["high"]) == max(all_points["y"])
                assert line["x"] == sorted(line["x"])
                real = set(all_points["y"])
                for y, low, high in zip(line["y"], line["low"], line["high"], strict=True):
                    assert y in real and low <= y <= high


def test_the_page_asks_for_one_bucket_per_pixel(browser: Any, server: ServerProcess) -> None:
    """A chart asks for as many buckets as its plot is wide (not always 1,000): a narrow
    window gets a smaller answer, and live points are bucketed by that bucket width."""
    token = mint(server.home, server.url, workspace="demo")
    context = browser.new_context(viewport={"width": 700, "height": 900})
    context.set_default_timeout(15_000)
    try:
        tab = context.new_page()
        watch_errors(tab)
        sign_in_tab(tab, server, token)
        with tab.expect_response(lambda r: "chart.json" in r.url) as answer:
            tab.goto(server.url + f"{PROJECT}/charts?metric=val/loss&run={PARENT}")
        asked = int(parse_qs(urlparse(answer.value.url).query)["buckets"][0])
        tab.wait_for_function("() => document.querySelector('section.chart').dataset.buckets")
        width = tab.evaluate("() => document.querySelector('section.chart .plot').clientWidth")
        assert 100 <= asked < 1000 and abs(asked - width) <= 1
        chart = tab.evaluate(
            "() => { const c = window.despinaCharts[0]; return [c.width, c.range]; }"
        )
        bucket_width, (lo, hi) = chart
        assert bucket_width == pytest.approx((hi - lo) / asked)
        assert not tab.errors
    finally:
        context.close()


def _append(store: Store, pk: int, steps: range) -> None:
    import numpy as np

    from despina.store.batch import Batch, MetricColumn
    from despina.store.writer import RunWriter

    micro = np.asarray(steps, dtype=np.int64) * 1_000_000
    values = np.sin(np.asarray(steps, dtype=np.float64))
    RunWriter(store, pk).apply(
        Batch(metrics={"m": MetricColumn(micro, values, 1_700_000_000_000 + micro // 1000)})
    )


def test_a_grown_series_is_summarised_from_its_new_points_only(tmp_path: Any) -> None:
    """A running run's summary (in memory, or in the store after a restart) is extended with
    the points logged since, and equals the summary made from every point."""
    import numpy as np

    from despina.query.service import QueryService
    from despina.server.ui import summaries
    from despina.store.runs import RunSpec, create_run

    store = Store.open(tmp_path / "home")
    try:
        pk = create_run(store, RunSpec(project="t/charts", run_id="r", creation_ms=0)).pk
        service = QueryService(store)
        cache = summaries.SummaryCache(1 << 30)

        def blocks() -> summaries.Blocks:
            with service.snapshot("t/charts") as snap:
                (attr_id,) = [
                    a
                    for (a,) in snap.conn.execute(
                        "SELECT id FROM attributes WHERE run_id = ? AND path = 'm'", (pk,)
                    )
                ]
                return cache.blocks_of(snap, "db", [attr_id], store)[attr_id]

        _append(store, pk, range(1000))
        blocks()
        summaries.wait_persisted()
        _append(store, pk, range(1000, 1500))
        grown = blocks()
        assert (cache.made, cache.extended) == (1, 1)
        summaries.wait_persisted()
        _append(store, pk, range(1500, 1700))
        cache.clear()  # a restart: the stored summary (1,500 points) is extended
        again = blocks()
        assert (cache.made, cache.extended, cache.loaded) == (1, 2, 0)
        steps = np.arange(1700, dtype=np.float64)
        every = summaries.summarise(steps, np.sin(steps), 1_700_000_000_000 + steps * 1000)
        for name in ("first_x", "last_x", "last_y", "low", "high", "first_t", "last_t"):
            assert np.array_equal(getattr(again, name), getattr(every, name)), name
        assert again.first_y[0] == every.first_y[0]
        assert len(grown) == 1500 // summaries.BLOCK + 1
    finally:
        store.close()
