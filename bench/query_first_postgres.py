"""The first-call rows of ``query_bench first`` over PostgreSQL: (a), (c) and (d), each as the
first call in a fresh process with the attribute cache file, and as the first read after
logging (no file) with the runs' attribute packs and without them (every row read), beside
warm. The stores are built into new databases (``bench/backends.py``) and their runs marked
closed, as their logging processes would (which packs them): about ten minutes on two cores.

    python -m bench.query_first_postgres
"""

from __future__ import annotations

import time

from bench import query_bench as qb
from bench.backends import postgres_database

Row = tuple[str, float, str]


def run() -> list[Row]:
    rows: list[Row] = []
    with postgres_database("wide") as wide, postgres_database("table") as table:
        for url, build in ((wide, qb.bench_wide_single_step), (table, qb.bench_table)):
            start = time.perf_counter()
            build(url, True)
            qb.close_all_runs(url)
            rows.append((f"  (build {build.__name__})", time.perf_counter() - start, "s"))
        for url, (_, label, call) in (
            (wide, qb.FIRST_CALLS[0]),
            (table, qb.FIRST_CALLS[2]),
            (wide, qb.FIRST_CALLS[3]),
        ):
            packs, _, _ = qb._fresh_call(url, call, disk_cache=False)
            no_packs, _, _ = qb._fresh_call(url, call, disk_cache=False, packs=False)
            filed, _, _ = qb._fresh_call(url, call)
            warm, _ = qb._warm_call(url, call)
            rows += [
                (f"postgresql {label} (warm)", warm, "best of 3 repeated calls"),
                ("  first call, cache file", filed, f"{filed / warm:.1f}× warm"),
                ("  first read after logging, packs", packs, f"{packs / warm:.1f}× warm"),
                ("  ... no packs", no_packs, f"{no_packs / warm:.1f}× warm (every row read)"),
            ]
        from despina.query import set_store

        set_store(None)
        for store in qb._STORES.values():
            store.close()
        qb._STORES.clear()
    return rows


if __name__ == "__main__":
    for name, seconds, note in run():
        print(f"{name:<90} {seconds:8.3f}  {note}")
