"""Medians, ratios and the published report: a rich table, docs/benchmarks.md and a plot."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.peers.common import Sizes
from bench.peers.registry import PEERS

# (sample name, row label, unit label, scale from the sample's unit)
ROWS: list[tuple[str, str, str, float]] = [
    (
        "narrow",
        "log {narrow_width} metrics per call × {narrow_steps:,} steps, until closed",
        "µs/call",
        1e6,
    ),
    ("start", "run start in a fresh store, until ready to log (and close)", "ms", 1e3),
    (
        "sweep",
        "sweep of {sweep_runs:,} short runs in one process (create, log 1 metric, close), per run",
        "ms",
        1e3,
    ),
    (
        "wide",
        "log {wide_width:,} metrics per call × {wide_steps} steps, per point",
        "µs/point",
        1e6,
    ),
    (
        "series",
        "read one {series_points:,}-point series into pandas, first call in a process",
        "s",
        1.0,
    ),
    (
        "table_first",
        "runs table, {table_runs:,} runs × ({table_params} params + {table_metrics} metrics), "
        "one numeric filter, first call in a process",
        "s",
        1.0,
    ),
    ("table_again", "same table, repeated in the process", "s", 1.0),
    (
        "series_remote",
        "read one {series_points:,}-point series into pandas through a server, first call in a "
        "process",
        "s",
        1.0,
    ),
    (
        "table_remote",
        "runs table, {table_runs:,} runs × ({table_params} params + {table_metrics} metrics), "
        "one numeric filter, through a server, first call",
        "s",
        1.0,
    ),
    (
        "bytes",
        "bytes on disk per point, {wide_width:,} series × {wide_steps} steps",
        "B/point",
        1.0,
    ),
]


@dataclass
class Results:
    sizes: Sizes
    keys: list[str]
    samples: dict[str, dict[str, list[float | None]]]
    extras: dict[str, dict[str, Any]]
    missing: dict[str, str]
    failures: dict[str, str]
    slow: list[str]
    started: float
    finished: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    rounds: int
    argv: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        data = {**self.__dict__, "sizes": self.sizes.to_json()}
        path.write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: Path) -> Results:
        data = json.loads(path.read_text())
        data["sizes"] = Sizes(**data["sizes"])
        data["load_before"] = tuple(data["load_before"])
        data["load_after"] = tuple(data["load_after"])
        return cls(**data)

    def values(self, key: str, name: str) -> list[float]:
        return [v for v in self.samples.get(key, {}).get(name, []) if v is not None]

    def ratio(self, key: str, name: str) -> tuple[float, float, float] | None:
        """(median ratio, lowest, highest per-round ratio) of ``key`` over despina."""
        mine, theirs = self.values("despina", name), self.values(key, name)
        if not mine or not theirs:
            return None
        pairs = [
            t / m
            for t, m in zip(self.samples[key][name], self.samples["despina"][name], strict=False)
            if t is not None and m is not None and m > 0
        ]
        mid = statistics.median(theirs) / statistics.median(mine)
        return mid, min(pairs or [mid]), max(pairs or [mid])


SHORT = {
    "narrow": "log 10/call, per call",
    "start": "run start + close",
    "sweep": "sweep, per short run",
    "wide": "log 1,000/call, per point",
    "series": "read 1M-point series, 1st call",
    "table_first": "runs table, 1st call",
    "table_again": "runs table, repeated",
    "series_remote": "series through a server, 1st call",
    "table_remote": "runs table through a server, 1st call",
    "bytes": "bytes per point",
}


LOCAL_READS = ("series", "table_first", "table_again")
REMOTE_READS = ("series_remote", "table_remote")


def applies(key: str, name: str) -> bool:
    """Whether contender ``key`` has a figure on row ``name`` at all (else the cell is "—")."""
    peer = PEERS[key]
    if name in LOCAL_READS:
        return peer.reads
    if name in REMOTE_READS:
        return bool(peer.remote_api)
    return peer.writes


def label(name: str, sizes: Sizes, short: bool = False) -> str:
    if short:
        return SHORT[name]
    row = next(r for r in ROWS if r[0] == name)
    return row[1].format(**sizes.to_json())


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def ratio_cell(results: Results, key: str, name: str, markdown: bool = False) -> str:
    if not applies(key, name):
        return "—"
    got = results.ratio(key, name)
    over = results.extras.get(key, {}).get(f"{name}_over")
    mine = results.values("despina", name)
    if got is None and over is not None and mine:
        # stopped before it finished: its time, hence its ratio, is at least this
        bound = over / statistics.median(mine)
        text = f"> {_num(bound)}×"
        if bound < 10:
            text = f"**{text}**" if markdown else f"[bold red]{text}[/bold red]"
        return text
    if got is None:
        return "failed" if any(f.startswith(f"{key} ") for f in results.failures) else "n/a"
    mid, low, high = got
    text = f"{_num(mid)}×"
    if len(results.values(key, name)) > 1 and high > low * 1.005:
        text += f" ({_num(low)}–{_num(high)})"
    if mid < 10:
        text = f"**{text}**" if markdown else f"[bold red]{text}[/bold red]"
    return text


def value_cell(results: Results, key: str, name: str) -> str:
    values = results.values(key, name)
    scale = next(r[3] for r in ROWS if r[0] == name)
    over = results.extras.get(key, {}).get(f"{name}_over")
    if not values and over is not None:
        return f"> {_num(over * scale)} (stopped)"
    if not values:
        return "—"
    mid = statistics.median(values) * scale
    text = _num(mid)
    if len(values) > 1 and max(values) > min(values) * 1.005:
        text += f" ({_num(min(values) * scale)}–{_num(max(values) * scale)})"
    return text


def print_tables(console: Console, results: Results) -> None:
    peers = [k for k in results.keys if k != "despina"]
    table = Table(title="ratio = peer time / despina time (median; range of per-round ratios)")
    table.add_column("workload")
    for key in peers:
        table.add_column(PEERS[key].title, justify="right")
    for name, *_ in ROWS:
        table.add_row(
            label(name, results.sizes, True), *[ratio_cell(results, k, name) for k in peers]
        )
    console.print(table)
    absolute = Table(title="absolute figures (median, min–max over rounds)")
    absolute.add_column("workload")
    absolute.add_column("unit")
    for key in results.keys:
        absolute.add_column(PEERS[key].title, justify="right")
    for name, _, unit, _ in ROWS:
        cells = [value_cell(results, k, name) for k in results.keys]
        absolute.add_row(label(name, results.sizes, True), unit, *cells)
    console.print(absolute)


def versions(keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        try:
            out[PEERS[key].package] = metadata.version(PEERS[key].package)
        except metadata.PackageNotFoundError:
            out[PEERS[key].package] = "not installed"
    for extra in ("numpy", "pandas", "matplotlib"):
        out[extra] = metadata.version(extra)
    return out


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    return {
        "CPU": model,
        "nproc": nproc.strip(),
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
    }


def plot(path: Path, results: Results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    peers = [k for k in results.keys if k != "despina"]
    names = [r[0] for r in ROWS]
    short = [
        "log 10/call",
        "run start",
        "sweep,\nper short run",
        "log 1,000/call\nper point",
        "read 1M-point\nseries (1st call)",
        "runs table\n(1st call)",
        "runs table\n(repeated)",
        "1M-point series\nthrough a server",
        "runs table\nthrough a server",
        "bytes per point",
    ]
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    width = 0.8 / max(1, len(peers))
    x = np.arange(len(names))
    for i, key in enumerate(peers):
        mids, lows, highs = [], [], []
        for name in names:
            got = results.ratio(key, name)
            if got is None or not applies(key, name):
                mids.append(np.nan), lows.append(0.0), highs.append(0.0)
                continue
            low, high = max(0.0, got[0] - got[1]), max(0.0, got[2] - got[0])
            mids.append(got[0]), lows.append(low), highs.append(high)
        ax.bar(  # bars grow from 1× up (despina ahead) or down (the peer ahead)
            x + (i - (len(peers) - 1) / 2) * width,
            np.array(mids) - 1,
            width,
            bottom=1,
            yerr=[lows, highs],
            capsize=2,
            label=PEERS[key].title,
        )
    ax.axhline(10, color="black", linestyle="--", linewidth=1)
    ax.text(len(names) - 0.5, 10, " 10× goal", va="bottom", ha="right", fontsize=8)
    ax.axhline(1, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    assert len(short) == len(names), "a row of ROWS without its label on the plot"
    ax.set_xticks(x, short, fontsize=8)
    ax.set_ylabel("peer / despina, time or bytes (log scale; above 1: despina ahead)")
    ax.set_title(
        "despina beside its peers, one run on a shared 2-core machine (W&B and neptune-scale "
        "offline cannot read back; neptune-query only reads, through despina serve)",
        fontsize=10,
    )
    ax.legend(fontsize=8, ncol=3)
    ax.grid(axis="y", which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_docs(docs: Path, results: Results) -> None:
    from bench.peers.docs import render

    docs.mkdir(parents=True, exist_ok=True)
    plot(docs / "benchmarks.png", results)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results.started))
    (docs / "benchmarks.md").write_text(
        render(results, versions(results.keys + list(results.missing)), machine(), when)
    )
