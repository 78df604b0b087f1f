"""Remote query benchmarks (issue 14): ``despina.query`` with an API token through a
``despina serve`` on 127.0.0.1, side by side in one run with the same calls in-process on the
server's store (the ceiling) and with ``neptune_query`` through the same server.

Workloads (the data of ``query_bench``, built once into a directory of its own):

* ``fetch_metrics`` of one experiment's 1M-point series (target ≤0.2 s remote, ≥8× faster than
  neptune_query);
* ``runs.fetch_metrics`` of 1,000 runs × 1,000 metrics × 1 step (target ≤1.5 s, ≥10×);
* ``runs.fetch_runs_table`` of 10,000 runs × 100 columns with a 3-clause filter (target ≤2× the
  in-process time).

Each figure is the best of a few warm calls (the first call is reported in the note); every
remote frame is checked equal to the in-process frame. Each table call reads the table again: a
call repeated while nothing was written is answered from the table the previous one read (in
the server's process and in-process alike), so every call gets a limit of its own (above the
matched runs, so the same frame). The repeated identical call is a row of its own.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import query_bench
from bench.server_bench import _server, _stop, _token

Row = tuple[str, float, str]

DATA_VERSION = "despina-remote-query-bench-v1"


def _data_dir() -> tuple[Path, bool]:
    home = Path(tempfile.gettempdir()) / DATA_VERSION
    if os.environ.get("DESPINA_BENCH_REBUILD") and home.exists():
        shutil.rmtree(home)
    return home, (home / ".complete").exists()


def _build(home: Path) -> None:
    """The long series, the wide project and the table of ``query_bench`` (their own figures,
    measured as they are built, are not reported here)."""
    query_bench.bench_one_long_metric(home, True)
    query_bench.bench_wide_single_step(home, True)
    query_bench.bench_table(home, True)
    for store in query_bench._STORES.values():
        store.close()
    query_bench._STORES.clear()
    (home / ".complete").touch()


def _best(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(first call, best of ``repeat`` more, result)."""
    start = time.perf_counter()
    result = call()
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return first, best, result


_LIMITS = itertools.count(10_000)
"""A limit of its own for each table call (all above the 4,288 matched runs)."""


def _table(q: Any, limit: int | None = None) -> Any:
    filters = q.filters
    where = (
        filters.Filter.gt(filters.Attribute("cfg/f00", "float"), 0.1)
        & filters.Filter.eq(filters.Attribute("cfg/opt", "string"), "adam")
        & filters.Filter.lt(filters.Attribute("m/s0", "float_series"), 0.95)
    )
    return q.runs.fetch_runs_table(
        project="bench/table",
        runs=where,
        attributes=query_bench.COLUMNS,
        limit=next(_LIMITS) if limit is None else limit,
    )


def _workloads() -> list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], str]]:
    """(name, despina call, neptune_query call, target) per workload; a call takes the module
    (``despina.query`` or ``neptune_query``)."""

    def long(q: Any) -> Any:
        return q.fetch_metrics(project="bench/long", experiments=["long"], attributes=["loss"])

    def wide(q: Any) -> Any:
        return q.runs.fetch_metrics(project="bench/wide", runs=".*", attributes="^metrics/")

    return [
        ("fetch_metrics 1 series × 1M steps", long, long, "≤0.2 s, ≥8× neptune_query"),
        ("fetch_metrics 1k runs × 1k metrics × 1 step", wide, wide, "≤1.5 s, ≥10× neptune_query"),
        ("fetch_runs_table 10k runs × 100 columns, 3 clauses", _table, _table, "≤2× in-process"),
    ]


def _measure(home: Path, token: str) -> list[Row]:
    import neptune_query
    import neptune_query.runs
    from pandas.testing import assert_frame_equal

    import despina.query as dq
    import despina.query.runs  # noqa: F401
    from despina.query import api

    neptune_query.set_api_token(token)
    rows: list[Row] = []
    for name, call, peer, target in _workloads():
        dq.set_store(str(home))
        local_first, local, expected = _best(lambda call=call: call(dq), 3)
        dq.set_store(None)
        api._api_token = token
        try:
            remote_first, remote, got = _best(lambda call=call: call(dq), 3)
        finally:
            api._api_token = None
        assert_frame_equal(got, expected)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer_first, peer_best, _ = _best(
                lambda peer=peer: peer(neptune_query), 1 if "1k runs" not in name else 0
            )
        peer_time = min(peer_first, peer_best)
        rows += [
            (
                f"{name}: despina remote (s)",
                remote,
                f"target {target}; first call {remote_first:.3f} s; "
                f"{remote / local:.1f}× in-process, {peer_time / remote:.0f}× faster than "
                "neptune_query",
            ),
            (f"{name}: despina in-process (s)", local, f"first call {local_first:.3f} s"),
            (
                f"{name}: neptune_query, same server (s)",
                peer_time,
                f"first call {peer_first:.2f} s; frame {expected.shape[0]:,} × "
                f"{expected.shape[1]:,}",
            ),
        ]
    rows += _repeated_table(home, token)
    return rows


def _repeated_table(home: Path, token: str) -> list[Row]:
    """The table call repeated identically while nothing is written, remote and in-process."""
    import despina.query as dq
    from despina.query import api

    dq.set_store(str(home))
    _, local, _ = _best(lambda: _table(dq, limit=20_000), 3)
    dq.set_store(None)
    api._api_token = token
    try:
        _, remote, _ = _best(lambda: _table(dq, limit=20_000), 3)
    finally:
        api._api_token = None
    return [
        (
            "fetch_runs_table 10k × 100, the same call repeated: despina remote (s)",
            remote,
            f"{remote / local:.1f}× in-process; the server answers from the table it read "
            "before, the client still receives and decodes it",
        ),
        (
            "fetch_runs_table 10k × 100, the same call repeated: despina in-process (s)",
            local,
            "answered from the table the previous call read",
        ),
    ]


def run() -> list[Row]:
    home, complete = _data_dir()
    if not complete:
        home.mkdir(parents=True, exist_ok=True)
        _build(home)
    process, url = _server(home)
    try:
        return _measure(home, _token(home, url))
    finally:
        _stop(process)


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label:62s} {value:9.3f}  {note}")
