"""Web UI benchmarks (issue 8): server time of the runs table's first page and of a charts page,
each beside a baseline measured in the same run.

* Runs table, 10,000 runs × 20 columns: the first page (50 rows) as the UI's handlers compute it
  (count + one sorted page + its cells), unsorted, sorted by a metric and filtered with NQL.
  Baseline: the naive table, every run's 20 columns fetched as one frame
  (``runs.fetch_runs_table``) and sorted and sliced in pandas.
* Charts, 50 runs × 10 metrics × 100,000 steps: all buckets of the ten charts (≤1,000 buckets
  per line, with min/max) as the charts page asks for them, plus one zoom into 40% of the range.
  Baseline: the same charts from every point read naively (``Snapshot.float_series``) and
  bucketed with NumPy.

Data is written straight through the store's writer into temporary stores. Times are the best of
a few calls after a first (cold) one; the cold time is reported too.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Row = tuple[str, float, str]

T0 = 1_735_689_600_000
TABLE_PROJECT = "bench/ui-table"
CHART_PROJECT = "bench/ui-charts"


def _timed(call: Callable[[], Any], repeat: int = 5) -> tuple[float, float, Any]:
    """(cold seconds, best warm seconds, result)."""
    start = time.perf_counter()
    result = call()
    cold = time.perf_counter() - start
    warm = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        warm = min(warm, time.perf_counter() - start)
    return cold, warm, result


def _writer(store: Any, project: str, run_id: str, experiment: str | None, created: int) -> Any:
    from despina.store.runs import RunSpec, create_run
    from despina.store.writer import RunWriter

    made = create_run(
        store,
        RunSpec(project=project, run_id=run_id, experiment_name=experiment, creation_ms=created),
    )
    return RunWriter(store, made.pk)


def build_table(home: Path, runs: int = 10_000) -> list[str]:
    """``runs`` runs with 10 configs and 10 five-step metrics each; returns the 20 columns."""
    from despina.store import Store
    from despina.store.batch import Assign, Batch, MetricColumn

    store = Store.open(home)
    rng = np.random.default_rng(8)
    steps = np.arange(5, dtype=np.int64) * 1_000_000
    for i in range(runs):
        writer = _writer(store, TABLE_PROJECT, f"run-{i:05d}", f"exp-{i % 100:03d}", T0 + i)
        ops = [Assign(f"cfg/f{j}", "float", float(v)) for j, v in enumerate(rng.random(5))]
        ops += [Assign(f"cfg/i{j}", "int", int(v)) for j, v in enumerate(rng.integers(0, 9, 3))]
        ops += [Assign("cfg/opt", "string", "adam" if i % 2 else "sgd")]
        ops += [Assign("cfg/arch", "string", f"arch-{i % 7}")]
        metrics = {
            f"m/s{j}": MetricColumn(steps, rng.random(5), T0 + steps // 1000) for j in range(10)
        }
        writer.apply(Batch(ops=ops, metrics=metrics))
    store.close()
    return (
        [f"cfg/f{j}" for j in range(5)]
        + [f"cfg/i{j}" for j in range(3)]
        + ["cfg/opt", "cfg/arch"]
        + [f"m/s{j}" for j in range(10)]
    )


def build_charts(
    home: Path, runs: int = 50, metrics: int = 10, steps: int = 100_000, first: int = 0
) -> None:
    """``runs`` runs (``run-<first>``...) of ``metrics`` metrics over ``steps`` steps, with a
    spike now and then, and a config ``cfg/lr`` of four values (what grouped charts group by)."""
    from despina.store import Store
    from despina.store.batch import Assign, Batch, MetricColumn

    store = Store.open(home)
    rng = np.random.default_rng(9 + first)
    micro = np.arange(steps, dtype=np.int64) * 1_000_000
    stamps = T0 + np.arange(steps, dtype=np.int64) * 100
    for i in range(first, first + runs):
        writer = _writer(store, CHART_PROJECT, f"run-{i:02d}", f"exp-{i:02d}", T0 + i)
        columns = {}
        for j in range(metrics):
            values = np.exp(-np.arange(steps) / (20_000 + 1000 * j)) + 0.05 * rng.random(steps)
            values[rng.random(steps) < 1e-4] += 3.0
            columns[f"metrics/m{j}"] = MetricColumn(micro, values, stamps)
        lr = Assign("cfg/lr", "float", [1e-4, 3e-4, 1e-3, 3e-3][i % 4])
        writer.apply(Batch(ops=[lr], metrics=columns))
    store.close()


def bench_table(home: Path) -> list[Row]:
    from despina.query import runs as query_runs
    from despina.query import set_home
    from despina.query.service import QueryService
    from despina.server.ui.api import runs_data
    from despina.server.ui.tables import RunsRequest
    from despina.store import Store

    columns = build_table(home)
    service = QueryService(Store.open(home))
    rows: list[Row] = []
    cases = [
        ("first page, newest first", RunsRequest(kind="run", limit=50)),
        ("first page sorted by a metric", RunsRequest(kind="run", sort="m/s3", limit=50)),
        (
            "first page, NQL filter + sort",
            RunsRequest(
                kind="run",
                nql='`cfg/opt`:string = "adam" AND `m/s0`:floatSeries < 0.5',
                sort="cfg/f1",
                direction="asc",
                limit=50,
            ),
        ),
        ("page 150 of 200", RunsRequest(kind="run", offset=149 * 50, limit=50)),
    ]
    for label, request in cases:
        cold, warm, data = _timed(lambda r=request: runs_data(service, TABLE_PROJECT, r, columns))
        verdict = "ok" if warm <= 0.3 else "OVER"
        rows.append(
            (
                f"runs table 10,000 runs × 20 columns: {label} (ms)",
                warm * 1000,
                f"target ≤300 ms [{verdict}]; cold {cold * 1000:.0f} ms; "
                f"{len(data['rows'])} of {data['total']:,} rows",
            )
        )
    set_home(home)
    try:

        def naive() -> Any:
            frame = query_runs.fetch_runs_table(project=TABLE_PROJECT, attributes=columns)
            return frame.sort_values(frame.columns[0]).iloc[:50]

        cold, warm, frame = _timed(naive, repeat=2)
    finally:
        set_home(None)
    rows.append(
        (
            "  baseline: fetch_runs_table of all runs, sort + slice in pandas (ms)",
            warm * 1000,
            f"cold {cold * 1000:.0f} ms; the whole table to show {len(frame)} rows",
        )
    )
    service.store.close()
    return rows


def _restart(store: Any) -> None:
    """What a server restart does to the charts: the in-memory block summaries are gone, and
    the store's connections (with their page caches) are closed and opened anew; on SQLite the
    last connection to close folds the WAL into the database file, as a stopping server does."""
    from despina.server.ui import summaries

    summaries.wait_persisted()
    summaries.shared_cache().clear()
    store.close()  # the store opens new connections on next use


def _json_bytes(answers: list[dict[str, Any]]) -> int:
    """Bytes of the answers' JSON bodies as the server sends them (starlette's JSONResponse)."""
    from starlette.responses import JSONResponse

    return sum(len(JSONResponse(a).body) for a in answers)


def bench_charts(home: Path) -> list[Row]:
    from despina.query.service import QueryService
    from despina.server.ui import charts as ui_charts
    from despina.server.ui.api import chart_data
    from despina.server.ui.tables import exact_selector, find_containers
    from despina.store import Store

    build_charts(home)
    service = QueryService(Store.open(home))
    run_ids = [f"run-{i:02d}" for i in range(50)]
    metrics = [f"metrics/m{j}" for j in range(10)]

    def page(window: tuple[float, float] | None = None, axis: Any = "step") -> list[dict[str, Any]]:
        return [
            chart_data(service, CHART_PROJECT, run_ids, m, axis=axis, window=window, buckets=1000)
            for m in metrics
        ]

    rows: list[Row] = []
    # the first view ever: no summary in memory nor in the store, every point is read (what
    # every first view after a restart cost before the summaries were kept in the store)
    _restart(service.store)
    start = time.perf_counter()
    page()
    unstored = time.perf_counter() - start
    _restart(service.store)  # the summaries made above are now in the store
    cold, warm, charts = _timed(page, repeat=3)
    lines = sum(len(c["lines"]) for c in charts)
    most = max(len(line["x"]) for c in charts for line in c["lines"])
    size = _json_bytes(charts)
    verdict = "ok" if cold <= 0.5 else "OVER"
    rows.append(
        (
            "charts 50 runs × 10 metrics × 100k steps: first view after a restart (ms)",
            cold * 1000,
            f"target ≤500 ms [{verdict}]; block summaries read from the store; JSON "
            f"{size / 1e6:.1f} MB; {lines} lines, ≤{most} buckets each, with min/max",
        )
    )
    rows.append(
        (
            "  baseline: first view, summaries made from every point (ms)",
            unstored * 1000,
            "what each first view after a restart cost with in-memory summaries only",
        )
    )
    verdict = "ok" if warm <= 0.3 else "OVER"
    rows.append(
        (
            "  warm: the same ten charts again (ms)",
            warm * 1000,
            f"target ≤300 ms [{verdict}]; summaries in memory",
        )
    )
    stored = (
        service.store.connection()
        .execute("SELECT count(*), coalesce(sum(length(data)), 0) FROM chart_summaries")
        .fetchone()
    )
    rows.append(
        (
            "  summaries kept in the store (MB)",
            int(stored[1]) / 1e6,
            f"{int(stored[0])} series; 50M points",
        )
    )
    # the page asks for one bucket per pixel of the plot: ~600 with three charts across 1920 px
    for label, n in [("600 buckets per line (a third of a 1920 px screen)", 600)]:

        def narrow(n: int = n) -> list[dict[str, Any]]:
            return [
                chart_data(service, CHART_PROJECT, run_ids, m, axis="step", window=None, buckets=n)
                for m in metrics
            ]

        _restart(service.store)
        cold_n, _, answers = _timed(narrow, repeat=1)
        rows.append(
            (
                f"  first view after a restart, {label} (ms)",
                cold_n * 1000,
                f"JSON {_json_bytes(answers) / 1e6:.1f} MB",
            )
        )
    cold, warm, _ = _timed(lambda: page((30_000.0, 70_000.0)), repeat=2)
    rows.append(
        (
            "  zoom: the same ten charts re-bucketed over steps 30k–70k (ms)",
            warm * 1000,
            f"cold {cold * 1000:.0f} ms; reads the 20M points in the window (40 per bucket: too "
            "few for block summaries)",
        )
    )

    def zoom_narrow() -> list[dict[str, Any]]:
        return [
            chart_data(
                service,
                CHART_PROJECT,
                run_ids,
                m,
                axis="step",
                window=(30_000.0, 70_000.0),
                buckets=600,
            )
            for m in metrics
        ]

    cold, warm, _ = _timed(zoom_narrow, repeat=2)
    rows.append(
        (
            "  zoom at 600 buckets per line (what a third of a 1920 px screen asks) (ms)",
            warm * 1000,
            f"cold {cold * 1000:.0f} ms; 67 points per bucket: from block summaries",
        )
    )

    def naive(axis: Any = "step") -> None:
        with service.snapshot(CHART_PROJECT) as snap:
            containers = find_containers(snap, run_ids)
            for metric in metrics:
                series = snap.series(containers, exact_selector([metric], ["float_series"]))
                labels = [containers[int(c)].label for c in series.container.tolist()]
                xs = ui_charts._x_values(snap, containers, series, axis, None, None)
                ui_charts._from_points(series, labels, xs, None, 1000)

    cold, warm, _ = _timed(naive, repeat=1)
    rows.append(
        (
            "  baseline: every point read (float_series) + NumPy buckets (ms)",
            warm * 1000,
            f"cold {cold * 1000:.0f} ms; the same lines from all 50M points",
        )
    )
    _restart(service.store)
    cold, warm, _ = _timed(lambda: page(axis="time"), repeat=2)
    rows.append(
        (
            "charts on the absolute-time axis, 50 runs × 10 metrics (ms)",
            warm * 1000,
            f"first view after a restart {cold * 1000:.0f} ms; time buckets from block summaries",
        )
    )
    cold, warm, _ = _timed(lambda: naive("time"), repeat=1)
    rows.append(
        (
            "  baseline: every point read, bucketed by time (ms)",
            warm * 1000,
            f"cold {cold * 1000:.0f} ms; what each time-axis request cost before",
        )
    )
    rows.append(_live_poll(service, charts, metrics))
    # the page reloaded while run-00 runs: its ten summaries are extended, not made again
    start = time.perf_counter()
    page()
    rows.append(
        (
            "  the ten charts reloaded after the running run grew (ms)",
            (time.perf_counter() - start) * 1000,
            "run-00's ten summaries extended with its 1,000 new steps only",
        )
    )
    service.store.close()
    rows += _grouped(home)
    return rows


def _grouped(home: Path) -> list[Row]:
    """A grouped chart of 200 runs × 100k steps into 4 groups (by ``cfg/lr``): the server's
    answers to the page (``charts.json`` with the group, then ``chart.json`` of the metric),
    first after a restart and warm, and the browser's ``groupLines`` over the 200 lines."""
    from despina.query.service import QueryService
    from despina.server.ui.api import chart_data, charts_data
    from despina.store import Store

    build_charts(home, runs=150, metrics=1, first=50)
    service = QueryService(Store.open(home))
    run_ids = [f"run-{i:02d}" for i in range(200)]

    def server() -> dict[str, Any]:
        page = charts_data(service, CHART_PROJECT, run_ids, ["metrics/m0"], group="cfg/lr")
        answer = chart_data(
            service, CHART_PROJECT, run_ids, "metrics/m0", axis="step", window=None, buckets=1000
        )
        answer["groups"] = page["groups"]
        return answer

    # before: a restarted server made every run's summaries from its points
    with service.store.write() as conn:
        conn.execute("DELETE FROM chart_summaries")
    _restart(service.store)
    start = time.perf_counter()
    server()
    unstored = time.perf_counter() - start
    _restart(service.store)  # the summaries made above are now in the store
    cold, warm, answer = _timed(server, repeat=2)
    service.store.close()
    js = _group_lines_ms(answer)
    total = cold + (js or 0.0) / 1000
    verdict = "ok" if total <= 1.0 else "OVER"
    return [
        (
            "grouped chart, 200 runs × 100k steps into 4 groups: server + groupLines (ms)",
            total * 1000,
            f"target ≤1 s [{verdict}]; server {cold * 1000:.0f} ms after a restart "
            f"({warm * 1000:.0f} warm), JSON {_json_bytes([answer]) / 1e6:.1f} MB; groupLines "
            + ("not measured (no node)" if js is None else f"{js:.0f} ms in node (V8)"),
        ),
        (
            "  baseline: the same server answers, summaries made from every point (ms)",
            unstored * 1000,
            "what the first grouped view after a restart cost with in-memory summaries only",
        ),
    ]


def _group_lines_ms(answer: dict[str, Any]) -> float | None:
    """Best time (ms) of the charts page's ``groupLines`` (taken from ``static/charts.js``) over
    ``answer``'s lines in node, the JavaScript engine of Chromium; None without node."""
    import json
    import re
    import subprocess

    node = shutil.which("node")
    if node is None:
        return None
    source = (Path(__file__).parent.parent / "src/despina/server/ui/static/charts.js").read_text()
    found = re.search(r"\n  function groupLines\(lines\) \{.*?\n  \}\n", source, re.S)
    if found is None:
        return None
    script = (
        "const data = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "const cfg = { band: 'minmax' };\n"
        "const groupOf = (run) => data.groups[run] || '';\n"
        "const groupKeys = [...new Set(Object.values(data.groups))].sort();\n"
        "const groupName = (key) => key || '(none)';\n"
        "const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');\n"
        + found.group(0)
        + "let best = Infinity, groups = 0;\n"
        "for (let i = 0; i < 5; i++) {\n"
        "  const t = process.hrtime.bigint();\n"
        "  groups = groupLines(data.lines).length;\n"
        "  best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);\n"
        "}\n"
        "console.log(JSON.stringify({ best, groups }));\n"
    )
    done = subprocess.run(
        [node, "-e", script],
        input=json.dumps(answer),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return None
    return float(json.loads(done.stdout)["best"])


def _live_poll(service: Any, charts: list[dict[str, Any]], metrics: list[str]) -> Row:
    """One live update of the ten charts while ``run-00`` runs: it logs 1,000 more steps of
    every metric, and each chart asks (``chart-tail.json``) for the points after its last step,
    bucketed by the chart's bucket width. Bytes are the JSON bodies as the server sends them."""
    import json

    from despina.server.ui.api import chart_tail_data
    from despina.server.ui.tables import find_containers
    from despina.store.batch import Batch, MetricColumn
    from despina.store.writer import RunWriter

    width = {c["metric"]: (c["range"][1] - c["range"][0]) / 1000 for c in charts}
    last = {
        c["metric"]: next(x["last_step"] for x in c["lines"] if x["run"] == "run-00")
        for c in charts
    }
    with service.snapshot(CHART_PROJECT) as snap:
        pk = find_containers(snap, ["run-00"])[0].pk
    new = np.arange(100_000, 101_000, dtype=np.int64)
    RunWriter(service.store, pk).apply(
        Batch(
            metrics={
                m: MetricColumn(new * 1_000_000, np.linspace(0.1, 0.2, len(new)), T0 + new * 100)
                for m in metrics
            }
        )
    )
    start = time.perf_counter()
    answers = [
        chart_tail_data(
            service, CHART_PROJECT, ["run-00"], m, [last[m]], axis="step", width=width[m]
        )
        for m in metrics
    ]
    took = time.perf_counter() - start
    size = sum(
        len(json.dumps(a, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
        for a in answers
    )
    verdict = "ok" if size <= 50_000 else "OVER"
    return (
        "  live update, one running run: bytes of one poll of the ten charts (KB)",
        size / 1000,
        f"target ≤50 KB [{verdict}]; 1,000 new steps × 10 metrics, "
        f"{len(answers[0]['lines'][0]['x'])} buckets per line; {took * 1000:.0f} ms server",
    )


def run() -> list[Row]:
    """Build the stores, measure, clean up."""
    rows: list[Row] = []
    root = Path(tempfile.mkdtemp(prefix="despina-ui-bench-"))
    try:
        for name, bench in [("table", bench_table), ("charts", bench_charts)]:
            start = time.perf_counter()
            rows += bench(root / name)
            rows.append((f"  ({name}: build + measure, s)", time.perf_counter() - start, ""))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label:72s} {value:10.1f}  {note}")
