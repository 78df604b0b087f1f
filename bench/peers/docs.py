"""docs/benchmarks.md, rendered from one run's results (``make bench-peers`` rewrites it)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.peers.registry import PEERS

WORKLOADS = """\
- **log 10 metrics per call × {narrow_steps:,} steps, until closed** — one run logs a dict of 10
  floats per step; the clock starts at the first logging call and stops when the tool's close
  call returns (data on disk); the figure is that time divided by the number of calls. The run
  is opened before the clock starts.
- **run start in a fresh store, until ready to log (and close)** — an empty directory, then the
  tool's run constructor and its close call, nothing logged; {starts} runs per round, each in a
  new store, median taken (the first start in a process, which pays lazy imports and helper
  processes, is one of the {starts}).
- **sweep of {sweep_runs:,} short runs in one process (create, log 1 metric, close), per run** —
  a hyperparameter sweep's shape: one process and one store (project, experiment), each run
  created, one metric logged at step 0, closed; the time of the whole sweep divided by its runs.
  A tool still going after {sweep_budget_s:.0f} s stops there and is divided by the runs it
  finished (listed below).
- **log {wide_width:,} metrics per call × {wide_steps} steps, per point** — as the first row,
  divided by the number of points ({wide_points:,}).
- **read one {series_points:,}-point series into pandas, first call in a fresh process** — one run
  holding one metric of {series_points:,} steps (written once, untimed, with the tool's own
  writer); a new worker process imports the tool (untimed), then the clock covers the one read
  call that returns a DataFrame of step and value.
- **runs table, {table_runs:,} runs × ({table_params} params + {table_metrics} metrics), one
  numeric filter, first call in a fresh process** — {table_runs:,} runs each with {table_params}
  float parameters and {table_metrics} metrics of {table_steps} steps; the call returns the
  runs whose `p00 > 0.5` (about half) with their parameters and last metric values, as pandas.
- **same table, repeated in the process** — the median of {table_repeats} more identical calls
  in the same process.
- **read one {series_points:,}-point series into pandas through a server, first call in a
  process** — the series row's data set and call, but read from the tool's own server over that
  data set: the benchmark starts the server on 127.0.0.1 and a free port (untimed, a new server
  for every measurement, so the timed call is also the server's first read), a new worker
  process imports the client (untimed), then the clock covers the one read call, transfer and
  decoding included. neptune-query reads despina's data set through the same `despina serve`.
- **runs table, {table_runs:,} runs × ({table_params} params + {table_metrics} metrics), one
  numeric filter, through a server, first call** — the runs-table row's data set and call, through
  the tool's server as above. Ratios on these two rows divide by despina's time through its
  server, not in-process.
- **bytes on disk per point, {wide_width:,} series × {wide_steps} steps** — every file the tool
  left in its (otherwise empty) directory after the wide logging run, divided by the number of
  points; this counts the tool's own logs and metadata too, as they take disk space."""

NOTES = """\
- **Fresh processes.** Every measurement runs in a worker subprocess
  (`python -m bench.peers.worker`), contenders alternated round-robin within each round (the
  starting contender rotates every round). Write rows: one worker per contender and round
  (starts, then narrow logging, then wide logging, each into a new directory). Read rows: one
  worker per contender, round and row, so the "first call" rows really are the first call.
- **Ratios.** ratio = the peer's median / despina's median; the range in brackets is the lowest
  and highest per-round ratio (peer round *i* over despina round *i*). Ratios under 10× are in
  bold: issue #16's goal is ≥10× on every row.
- **Budget.** A (contender, job) whose worker took longer than its budget in a round
  (write {write:.0f} s, each read {read:.0f} s) is not measured in later rounds, to keep the run
  near 20 minutes; such figures come from fewer rounds (listed below).
- **W&B and neptune-scale offline cannot read back**: offline runs are files to sync, with no
  query API until they are synced to a server; their read rows are "—".
- **Through a server.** Each tool's own server, on 127.0.0.1 only, over the same cached data set
  its local read rows use; started before the worker and stopped after it, outside every clock.
  A read through a server still running after {stop:.0f} s is stopped: its figure is "> the
  seconds it had run" and its ratio a lower bound, and it is not measured in later rounds.
  Every worker imports its tool's package before the clock starts (as `import despina.query`
  or `import neptune_query` in a notebook's first cell); the clock covers setting the token,
  the token exchange, connecting and the call.{no_server}
- **neptune-query** is Neptune's official read client (the PyPI package, unmodified), pointed at
  `despina serve` by its token (`neptune_query.set_api_token`), as a Neptune user would point it;
  it reads despina's data sets, so it has no write, local-read or bytes figures ("—").
- **MLflow** params are strings that filter with `=`, `!=` and `LIKE` only, so its numeric
  filter is `metrics.m0 > 0.5`; `m0` equals `p00` in every run, so every tool returns the same
  runs. MLflow 3.x refuses its file store unless `MLFLOW_ALLOW_FILE_STORE=true` (it is in
  maintenance mode); the benchmark sets it. MLflow logs with async logging
  (`synchronous=False`), its fastest documented path; `end_run()` waits for the queue.
  `mlflow server` runs with `--workers 1` (the rows send one request at a time) and
  `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false` (its job runners serve background jobs, not reads).
- **Aim** queries see a run once Aim's index holds it (its UI server indexes in the
  background); the untimed set-up runs `aim storage reindex` after writing. Through
  `aim server`, `Repo.from_path("aim://…")` reads over Aim's remote-tracking transport, the same
  `Repo` API as on a directory.
- **trackio** has no public API that reads metrics back (`trackio.Api` gives run configs); its
  reads go through `trackio.sqlite_storage.SQLiteStorage`, the layer its dashboard uses. One
  trackio project is one SQLite file, so a new project name is a fresh store.
- **No network.** Telemetry and update checks are switched off (`MLFLOW_DISABLE_TELEMETRY`,
  `DO_NOT_TRACK`, `WANDB_MODE=offline`, `WANDB_X_DISABLE_STATS`, `AIM_UI_TELEMETRY_ENABLED=0`,
  `HF_HUB_OFFLINE`, `GRADIO_ANALYTICS_ENABLED=False`, …: `bench/peers/common.py`), and
  `make bench-peers` runs the whole benchmark in a network namespace with only a loopback
  interface (`unshare -rn`) where the kernel allows it, so no tool can reach anything but
  127.0.0.1. A quick run of every contender under `strace -f -e trace=connect` in that
  namespace showed no connection attempt other than to local Unix sockets (W&B's own service,
  uuidd, nscd).
- **"Until closed"** is each tool's own close call: despina's returns once the data is fsynced
  (SQLite `synchronous=FULL`); the peers' calls return when their own writers are done, which
  need not include an fsync (W&B and neptune-scale write local files to sync later)."""


def _table(results: Any, cell: Any, first: list[str]) -> list[str]:
    from bench.peers.report import ROWS, label

    peers = [k for k in results.keys if k != "despina"] if first == [] else results.keys
    head = ["workload", *(["unit"] if first else []), *[PEERS[k].title for k in peers]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, _, unit, _ in ROWS:
        cells = [cell(results, k, name) for k in peers]
        lines.append(
            "| "
            + " | ".join([label(name, results.sizes), *([unit] if first else []), *cells])
            + " |"
        )
    return lines


def render(results: Any, versions: dict[str, str], machine: dict[str, str], when: str) -> str:
    from bench.peers.common import BUDGET_S, STOP_S
    from bench.peers.report import ratio_cell, value_cell

    sizes = results.sizes.to_json()
    full = results.sizes == type(results.sizes)()
    minutes = (results.finished - results.started) / 60
    out = [
        "# Benchmarks: despina beside its peers",
        "",
        f"Figures from **one run of `make bench-peers` on {when}**, on a shared 2-core machine "
        "(other work was running on it: the load average is given below), so they carry noise; "
        "ranges show it. despina runs in-process with its embedded store; every peer runs "
        'through its fastest public API, locally, with no network. The two rows "through a '
        "server\" read from each tool's own server on 127.0.0.1 instead (despina: `despina "
        "serve`, read by `despina.query` and by Neptune's neptune-query). Issue #16 asks for "
        "≥10× on every row against every peer; rows under 10× are in bold.",
        "",
        "## Ratios (peer time / despina time; higher is better for despina)",
        "",
        *_table(results, lambda r, k, n: ratio_cell(r, k, n, markdown=True), []),
        "",
        "![ratios per workload and peer, log scale, with the 10× goal](benchmarks.png)",
        "",
        "## Absolute figures (median, min–max over the rounds)",
        "",
        *_table(results, value_cell, ["unit"]),
        "",
    ]
    rows = {k: results.extras.get(k, {}) for k in results.keys}
    counted = [
        f"{PEERS[k].title} {e['series_rows']:,}" for k, e in rows.items() if "series_rows" in e
    ]
    tables = [f"{PEERS[k].title} {e['table_rows']:,}" for k, e in rows.items() if "table_rows" in e]
    remote = [
        f"{PEERS[k].title} {e['series_remote_rows']:,}"
        for k, e in rows.items()
        if "series_remote_rows" in e
    ]
    remote_tables = [
        f"{PEERS[k].title} {e['table_remote_rows']:,}"
        for k, e in rows.items()
        if "table_remote_rows" in e
    ]
    checks = [
        f"{what}: {', '.join(found)}."
        for what, found in (
            ("series points", counted),
            ("Runs-table rows", tables),
            ("Through a server, series points", remote),
            ("Runs-table rows through a server", remote_tables),
        )
        if found
    ]
    out += ["Rows returned (a check that every tool read the same data): " + " ".join(checks), ""]
    starts = [
        f"{PEERS[k].title} {e['start_first'] * 1e3:,.0f} ms"
        for k, e in rows.items()
        if "start_first" in e
    ]
    out += [f"First run start in each write worker (not in the median): {'; '.join(starts)}.", ""]
    sweeps = [
        f"{PEERS[k].title} {e['sweep_rows']:,}"
        for k, e in rows.items()
        if "sweep_rows" in e and e["sweep_rows"] < results.sizes.sweep_runs
    ]
    if sweeps:
        stopped = "; ".join(sweeps)
        out += [f"Sweeps stopped at the budget, runs finished (last round): {stopped}.", ""]
    if results.missing or results.failures or results.slow:
        out += ["## Not measured", ""]
        out += [f"- {PEERS[k].title}: {why}." for k, why in results.missing.items()]
        out += [f"- {what}: failed ({why})." for what, why in results.failures.items()]
        out += [
            f"- {what}: not measured after the round that went over the budget."
            for what in results.slow
        ]
        out += [""]
    out += [
        "## What each workload does",
        "",
        WORKLOADS.format(**sizes, wide_points=sizes["wide_width"] * sizes["wide_steps"]),
        "",
        "Shapes are issue #16's, unscaled." if full else "**Shapes scaled down** (see above).",
        f"{results.rounds} rounds; the whole run took {minutes:.1f} minutes.",
        "",
        "## How each tool is driven",
        "",
        *[f"- **{PEERS[k].title}**: {_driven(k)}." for k in results.keys],
        "",
        "## Method and caveats",
        "",
        NOTES.format(
            write=BUDGET_S["write"],
            read=BUDGET_S["series"],
            stop=STOP_S["series_remote"],
            no_server=_no_server(results),
        ),
        "",
        "## Versions",
        "",
        "| package | version |",
        "|---|---|",
        *[f"| {name} | {version} |" for name, version in versions.items()],
        "",
        f"despina as of commit `{_commit()}`.",
        "",
        "## Machine",
        "",
        *[f"- {name}: {value}" for name, value in machine.items()],
        f"- load average (1, 5, 15 min) before: {_load(results.load_before)}; after: "
        f"{_load(results.load_after)}",
        "",
        "## Rerun it",
        "",
        "```bash",
        "make bench-peers    # creates .venv-peers (the `peers` extra), runs, rewrites this page",
        ".venv-peers/bin/python -m bench.peers --quick --no-docs   # a one-minute smoke run",
        ".venv-peers/bin/python -m bench.peers --only aim,trackio  # despina and some peers",
        ".venv-peers/bin/python -m bench.peers --jobs series_remote,table_remote  # some rows",
        "```",
        "",
        "The peers live in the optional `peers` extra of `pyproject.toml` and are installed into "
        "`.venv-peers` only, never into `.venv`: they pin numpy, pandas and protobuf versions of "
        "their own. The read data sets are written once into "
        "`$TMPDIR/despina-peers-bench-v1/` and reused (`--rebuild` writes them again): "
        f"{_setup(results)}.",
        "",
    ]
    return "\n".join(out)


def _driven(key: str) -> str:
    peer = PEERS[key]
    through = f"through a server: {peer.remote_api}" if peer.remote_api else ""
    return "; ".join(part for part in (peer.api, through) if part)


def _no_server(results: Any) -> str:
    """Why some contenders have "—" on the rows through a server."""
    why = [f"{PEERS[k].title}: {PEERS[k].no_server}" for k in results.keys if PEERS[k].no_server]
    return (' No figure through a server ("—") for ' + "; ".join(why) + ".") if why else ""


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in load)


def _setup(results: Any) -> str:
    """The set-up seconds of this run, or of the run that wrote the reused data sets."""
    import json
    import tempfile
    from pathlib import Path

    full = results.sizes == type(results.sizes)()
    data = Path(tempfile.gettempdir()) / "despina-peers-bench-v1" / ("full" if full else "quick")
    spent: dict[str, float] = {}
    for key in results.keys:
        extra = dict(results.extras.get(key, {}))
        marker = data / "data" / key / ".complete"
        if not any(k.startswith("setup_") for k in extra) and marker.exists():
            try:
                extra.update(json.loads(marker.read_text()))
            except ValueError:
                continue
        total = sum(v for k, v in extra.items() if k.startswith("setup_"))
        if total:
            spent[PEERS[key].title] = total
    if not spent:
        return "no set-up figures"
    parts = ", ".join(f"{title} {seconds:.0f} s" for title, seconds in spent.items())
    return f"writing them took {statistics.fsum(spent.values()) / 60:.0f} minutes once ({parts})"


def _commit() -> str:
    import subprocess

    got = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return got.stdout.strip() or "unknown"
