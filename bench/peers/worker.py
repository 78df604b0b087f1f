"""One measurement in a fresh process: ``python -m bench.peers.worker PEER JOB DIR OUT SIZES``.

Jobs: ``write`` (run starts, narrow and wide logging, bytes per point), ``setup`` (the read data
sets, untimed), ``series`` and ``table`` (first read call in this process; the table also
repeated). The result is written as JSON to OUT; the tool may print what it likes.
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
    narrow = peer.log_timed(root / "narrow", sizes.narrow_width, sizes.narrow_steps)
    wide_store = root / "wide"
    wide = peer.log_timed(wide_store, sizes.wide_width, sizes.wide_steps)
    points = sizes.wide_width * sizes.wide_steps
    return {
        "start": statistics.median(starts),
        "start_first": starts[0],
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


JOBS = {"write": job_write, "setup": job_setup, "series": job_series, "table": job_table}


def main(argv: list[str]) -> int:
    key, job, root, out, sizes_json = argv
    warnings.simplefilter("ignore")
    store = Path(root)
    store.mkdir(parents=True, exist_ok=True)
    if key == "trackio":  # trackio reads TRACKIO_DIR once, at import
        os.environ["TRACKIO_DIR"] = str(store / ("trackio" if job == "write" else ""))
    sizes = Sizes(**json.loads(sizes_json))
    peer = load(key)
    peer.prepare()
    result = JOBS[job](peer, store, sizes)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
