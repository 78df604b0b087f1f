"""One measurement in a fresh process:
``python -m bench.peers.worker PEER JOB DIR OUT SIZES [SERVER]``.

Jobs: ``write`` (run starts, narrow and wide logging, bytes per point), ``setup`` (the read data
sets, untimed), ``series`` and ``table`` (first read call in this process; the table also
repeated), ``series_remote`` and ``table_remote`` (the first read call through the server that
SERVER, a JSON object, describes; the runner started it). The result is written as JSON to OUT;
the tool may print what it likes. Just before a read's clock starts the worker writes the time
to OUT + ``.begin``, so that the runner can bound a read it had to stop.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench.peers.common import Sizes


def load(key: str) -> Any:
    from bench.peers.registry import PEERS

    return PEERS[key]()


def job_write(peer: Any, root: Path, sizes: Sizes) -> dict[str, Any]:
    starts = [peer.start(root / f"start-{i}") for i in range(sizes.starts)]
    sweep, sweep_done = peer.sweep(root / "sweep", sizes.sweep_runs, sizes.sweep_budget_s)
    narrow = peer.log_timed(root / "narrow", sizes.narrow_width, sizes.narrow_steps)
    wide_store = root / "wide"
    wide = peer.log_timed(wide_store, sizes.wide_width, sizes.wide_steps)
    points = sizes.wide_width * sizes.wide_steps
    return {
        "start": statistics.median(starts),
        "start_first": starts[0],
        "sweep": sweep,
        "sweep_rows": sweep_done,
        "narrow": narrow / sizes.narrow_steps,
        "wide": wide / points,
        "bytes": peer.store_bytes(wide_store) / points,
    }


def job_setup(peer: Any, root: Path, sizes: Sizes) -> dict[str, Any]:
    begin = time.perf_counter()
    peer.write_series(root / "series", sizes.series_points)
    series = time.perf_counter() - begin
    begin = time.perf_counter()
    peer.write_table(
        root / "table", sizes.table_runs, sizes.table_params, sizes.table_metrics, sizes.table_steps
    )
    return {"setup_series": series, "setup_table": time.perf_counter() - begin}


def _starting(out: Path) -> None:
    out.with_name(out.name + ".begin").write_text(repr(time.time()))


def job_series(peer: Any, root: Path, sizes: Sizes) -> dict[str, Any]:
    begin = time.perf_counter()
    frame = peer.read_series(root / "series")
    return {"series": time.perf_counter() - begin, "series_rows": len(frame)}


def job_table(peer: Any, root: Path, sizes: Sizes) -> dict[str, Any]:
    begin = time.perf_counter()
    frame = peer.read_table(root / "table")
    first = time.perf_counter() - begin
    again = []
    for _ in range(sizes.table_repeats):
        begin = time.perf_counter()
        peer.read_table(root / "table")
        again.append(time.perf_counter() - begin)
    return {
        "table_first": first,
        "table_again": statistics.median(again),
        "table_rows": len(frame),
    }


def job_series_remote(peer: Any, root: Path, server: dict[str, str], out: Path) -> dict[str, Any]:
    _starting(out)
    begin = time.perf_counter()
    frame = peer.read_series_remote(root / "series", server)
    return {"series_remote": time.perf_counter() - begin, "series_remote_rows": len(frame)}


def job_table_remote(peer: Any, root: Path, server: dict[str, str], out: Path) -> dict[str, Any]:
    _starting(out)
    begin = time.perf_counter()
    frame = peer.read_table_remote(root / "table", server)
    return {"table_remote": time.perf_counter() - begin, "table_remote_rows": len(frame)}


JOBS = {"write": job_write, "setup": job_setup, "series": job_series, "table": job_table}
REMOTE_JOBS = {"series_remote": job_series_remote, "table_remote": job_table_remote}


def main(argv: list[str]) -> int:
    key, job, root, out, sizes_json, *server = argv
    warnings.simplefilter("ignore")
    store = Path(root)
    store.mkdir(parents=True, exist_ok=True)
    if key == "trackio":  # trackio reads TRACKIO_DIR once, at import
        os.environ["TRACKIO_DIR"] = str(store / ("trackio" if job == "write" else ""))
    sizes = Sizes(**json.loads(sizes_json))
    peer = load(key)
    peer.prepare()
    if job in REMOTE_JOBS:
        result = REMOTE_JOBS[job](peer, store, json.loads(server[0]), Path(out))
    else:
        result = JOBS[job](peer, store, sizes)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
