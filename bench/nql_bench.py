"""NQL benchmarks: parse + compile cost of a typical query, and a filtered search over a large
store, beside a hand-written SQL baseline run on the same data in the same process.

The store is built straight into the tables with ``executemany`` (100,000 runs × 50 attributes,
float series carrying their aggregate columns as the writer stores them): this measures the
query, not the ingest path. The same data is then loaded into PostgreSQL (``bench/backends.py``,
``COPY``) and the same filter is run there, beside the embedded store's figure (issue #13: within
2.5x). After the load the tables are vacuumed and analyzed, the state autovacuum brings a
store to after a bulk load (a filter's probes are index-only scans only on pages the visibility
map marks all-visible).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Row = tuple[str, float, str]

RUNS = 100_000
T0 = 1_735_689_600_000  # 2025-01-01 in epoch ms

TYPICAL = (
    '(`sys/tags`:stringSet CONTAINS "tag-3") AND (`params/p0`:float < 0.5) AND '
    "(average(`metrics/m0`:floatSeries) > 0.4) AND (max(`metrics/m1`:floatSeries) < 0.9) AND "
    '(`config/name`:string MATCHES "^run-1")'
)
"""Five clauses, two of them aggregates: the query of both figures."""

# The same filter written by hand against the schema, as a baseline for the compiled SQL.
BASELINE = """
SELECT r.id FROM runs r
JOIN attributes t ON t.run_id = r.id AND t.path = 'sys/tags'
JOIN attributes p0 ON p0.run_id = r.id AND p0.path = 'params/p0'
JOIN attributes m0 ON m0.run_id = r.id AND m0.path = 'metrics/m0'
JOIN attributes m1 ON m1.run_id = r.id AND m1.path = 'metrics/m1'
JOIN attributes nm ON nm.run_id = r.id AND nm.path = 'config/name'
WHERE r.project_id = ?
  AND EXISTS (SELECT 1 FROM json_each(t.text) WHERE value = 'tag-3')
  AND p0.type IN ('float', 'int') AND p0.num < 0.5
  AND m0.type = 'float_series' AND m0.fsum / m0.fcount > 0.4
  AND m1.type = 'float_series' AND m1.fmax < 0.9
  AND nm.type = 'string' AND nm.text LIKE 'run-1%'
"""


def _attribute_rows(run_pk: int, n: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """The 50 attribute rows of one run (columns as in ``_INSERT_ATTRIBUTE``)."""
    rand = rng.random
    for i in range(20):
        yield (run_pk, f"params/p{i}", "float", rand(), None, None, None, None, None, None, None)
    for i in range(10):
        yield (run_pk, f"config/c{i}", "int", rng.randrange(100), None, None, None, None, None,
               None, None)  # fmt: skip
    yield (run_pk, "config/name", "string", None, f"run-{n}", None, None, None, None, None, None)
    for i in range(4):
        yield (run_pk, f"config/s{i}", "string", None, f"v{rng.randrange(10)}", None, None, None,
               None, None, None)  # fmt: skip
    yield (run_pk, "config/flag", "bool", rng.randrange(2), None, None, None, None, None, None,
           None)  # fmt: skip
    yield (run_pk, "config/when", "datetime", T0 + n, None, None, None, None, None, None, None)
    for i in range(10):
        count = 100
        low, high = rand() * 0.5, 0.5 + rand() * 0.5
        mean = (low + high) / 2
        yield (run_pk, f"metrics/m{i}", "float_series", low + rand() * (high - low), None,
               count, low, high, mean * count, mean * mean * count * 1.1, count)  # fmt: skip
    yield (run_pk, "logs/out", "string_series", None, f"line {n}", 10, None, None, None, None,
           None)  # fmt: skip
    tags = json.dumps([f"tag-{rng.randrange(10)}", f"tag-{rng.randrange(10)}"])
    yield (run_pk, "sys/tags", "string_set", None, tags, None, None, None, None, None, None)
    yield (run_pk, "sys/group_tags", "string_set", None, "[]", None, None, None, None, None, None)


def _run_row(n: int, project_id: int | None) -> tuple[Any, ...]:
    """Columns of run ``n`` as in the runs insert of :func:`_build`."""
    return (n, project_id, f"run-{n}", n, f"u{n}", f"run-{n}", f"exp-{n % 100}", T0 + n, T0 + n,
            T0 + n)  # fmt: skip


_INSERT_ATTRIBUTE = (
    "INSERT INTO attributes (run_id, path, type, num, text, count, fmin, fmax, fsum, fsumsq, "
    "fcount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _build(home: Path) -> tuple[Any, int]:
    """A store with ``RUNS`` runs of 50 attributes each; returns (store, project id)."""
    from despina.nql import install_functions
    from despina.store import Store

    store = Store.open(home)
    rng = random.Random(42)
    conn = store.connection()
    # Bulk load: no journal, and the secondary index built once at the end.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("DROP INDEX attributes_for_filters")
    with store.write() as conn:
        project_id = conn.execute(
            "INSERT INTO projects (workspace, name, project_key, uuid, created_ms) "
            "VALUES ('bench', 'nql', 'NQL', 'uuid', 0)"
        ).lastrowid
        conn.executemany(
            "INSERT INTO runs (id, project_id, run_id, short_no, uuid, family, experiment_name, "
            "creation_ms, modification_ms, ping_ms, closed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, 1)",
            (_run_row(n, project_id) for n in range(1, RUNS + 1)),
        )
        conn.executemany(
            _INSERT_ATTRIBUTE,
            (row for n in range(1, RUNS + 1) for row in _attribute_rows(n, n, rng)),
        )
    conn.execute(
        "CREATE INDEX attributes_for_filters ON attributes "
        "(path, run_id, type, num, fmin, fmax, fsum, fsumsq, fcount, count)"
    )
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("ANALYZE")
    install_functions(conn)
    return store, int(project_id or 0)


def _best(call: Callable[[], Any], repeat: int = 3) -> tuple[float, float, float, Any]:
    """(first call seconds, best of the next ``repeat`` calls, its CPU seconds, result)."""
    start = time.perf_counter()
    result = call()
    first = time.perf_counter() - start
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = call()
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, best_cpu = elapsed, time.process_time() - cpu
    return first, best, best_cpu, result


def bench_parse_compile(iterations: int = 1000) -> list[Row]:
    """Mean cost of ``parse`` and of ``compile_query`` (text → SQL) for :data:`TYPICAL`."""
    from despina.nql import compile_query, parse

    compile_query(TYPICAL, now_ms=T0)  # warm imports and caches
    parse_s, parse_cpu = _mean(lambda: parse(TYPICAL), iterations)
    total_s, total_cpu = _mean(lambda: compile_query(TYPICAL, now_ms=T0), iterations)
    # The verdict uses CPU time: on a shared machine wall time also counts other processes.
    verdict = "ok" if total_cpu < 1e-3 else "OVER"
    return [
        ("parse + compile, typical 5-clause query (s, mean of 1000)", total_s,
         f"{total_s * 1e6:.0f} µs wall, {total_cpu * 1e6:.0f} µs CPU; "
         f"target < 1 ms [{verdict}]"),
        ("  of which tokenize + parse (s)", parse_s,
         f"{parse_s * 1e6:.0f} µs wall, {parse_cpu * 1e6:.0f} µs CPU"),
    ]  # fmt: skip


def _mean(call: Callable[[], Any], iterations: int) -> tuple[float, float]:
    """Mean (wall seconds, CPU seconds) of ``call`` over ``iterations`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        call()
    return (
        (time.perf_counter() - wall) / iterations,
        (time.process_time() - cpu) / iterations,
    )


def bench_search(home: Path) -> list[Row]:
    """The five-clause, two-aggregate query over 100,000 runs × 50 attributes."""
    from despina.nql import compile_query

    start = time.perf_counter()
    store, project_id = _build(home)
    build_s = time.perf_counter() - start
    conn = store.connection()
    try:

        def compiled() -> list[Any]:
            sql, params = compile_query(TYPICAL, now_ms=T0)
            return conn.execute(
                "SELECT r.id FROM runs r JOIN projects p ON p.id = r.project_id "
                f"WHERE r.project_id = ? AND ({sql})",
                [project_id, *params],
            ).fetchall()

        def baseline() -> list[Any]:
            return conn.execute(BASELINE, (project_id,)).fetchall()

        first, best, cpu, rows = _best(compiled, repeat=5)
        base_first, base_best, base_cpu, base_rows = _best(baseline)
        same = {r[0] for r in rows} == {r[0] for r in base_rows}
        shape = f"{RUNS:,} runs × 50 attributes"
        return [
            (f"NQL search, 5 clauses / 2 aggregates, {shape} (s, best of 5)", best,
             f"{len(rows):,} matches; CPU {cpu:.3f} s; first call {first:.3f} s"),
            ("  baseline: hand-written join SQL, same data (s, best of 3)", base_best,
             f"{len(base_rows):,} matches{'' if same else ' [DIFFERS]'}; CPU {base_cpu:.3f} s; "
             f"first {base_first:.3f} s"),
            ("  building the store with executemany (s)", build_s,
             f"{RUNS * 50:,} attribute rows, not part of the query"),
        ]  # fmt: skip
    finally:
        store.close()


def _build_postgres(url: str) -> int:
    """The data of :func:`_build` in the PostgreSQL database ``url``; returns the project id."""
    import psycopg

    from despina.store import Store

    Store.open(url=url).close()  # the schema
    rng = random.Random(42)
    runs = (
        "COPY runs (id, project_id, run_id, short_no, uuid, family, experiment_name, "
        "creation_ms, modification_ms, ping_ms, closed) FROM STDIN"
    )
    attributes = (
        "COPY attributes (run_id, path, type, num, text, count, fmin, fmax, fsum, fsumsq, "
        "fcount) FROM STDIN"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO projects (workspace, name, project_key, uuid, created_ms) "
            "VALUES ('bench', 'nql', 'NQL', 'uuid', 0) RETURNING id"
        ).fetchone()
        project_id = int(row[0]) if row else 0
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(runs.encode()) as copy:
                for n in range(1, RUNS + 1):
                    copy.write_row((*_run_row(n, project_id), 1))
            with cursor.copy(attributes.encode()) as copy:
                for n in range(1, RUNS + 1):
                    for attribute in _attribute_rows(n, n, rng):
                        copy.write_row(attribute)
        conn.execute(b"VACUUM (ANALYZE) runs, attributes, set_members")
    return project_id


def bench_search_postgres(url: str, sqlite_best: float) -> list[Row]:
    """:func:`bench_search`'s filter over the same data in PostgreSQL."""
    from despina.store import Store
    from despina.store.nql import compile_filter

    start = time.perf_counter()
    project_id = _build_postgres(url)
    build_s = time.perf_counter() - start
    store = Store.open(url=url)
    try:

        def compiled() -> list[Any]:
            with store.read() as conn:
                sql, params = compile_filter(conn, TYPICAL, now_ms=T0, project_ids=[project_id])
                return conn.execute(
                    "SELECT r.id FROM runs r JOIN projects p ON p.id = r.project_id "
                    f"WHERE r.project_id = ? AND ({sql})",
                    [project_id, *params],
                ).fetchall()

        first, best, cpu, rows = _best(compiled, repeat=5)
        ratio = best / sqlite_best
        verdict = "met" if ratio <= 2.5 else "NOT MET"
        shape = f"{RUNS:,} runs × 50 attributes"
        return [
            (f"postgresql: NQL search, 5 clauses / 2 aggregates, {shape} (s, best of 5)", best,
             f"{len(rows):,} matches; client CPU {cpu:.3f} s; first call {first:.3f} s"),
            ("  postgresql / sqlite: NQL search", ratio, f"target <= 2.5: {verdict}"),
            ("  postgresql: loading the same data with COPY, then VACUUM ANALYZE (s)", build_s,
             "not part of the query"),
        ]  # fmt: skip
    finally:
        store.close()


def run() -> list[Row]:
    """Every NQL figure: ``(name, seconds, note)`` rows."""
    from bench.backends import postgres_database

    rows = bench_parse_compile()
    home = Path(tempfile.mkdtemp(prefix="despina-nql-bench-"))
    try:
        search = bench_search(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    rows += search
    with postgres_database("nql") as url:
        rows += bench_search_postgres(url, sqlite_best=search[0][1])
    return rows


if __name__ == "__main__":
    for name, seconds, note in run():
        print(f"{name:75} {seconds:12.6f}  {note}")
