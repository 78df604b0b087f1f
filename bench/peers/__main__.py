"""``python -m bench.peers``: run every contender, round-robin per round, then report.

Options: ``--quick`` (tiny shapes, a smoke run), ``--rounds N``, ``--only KEY,KEY``,
``--rebuild`` (rebuild the cached read data sets), ``--no-docs`` (print only), ``--jobs JOB,JOB``
(only these of ``write``, ``series``, ``table``, ``series_remote``, ``table_remote``).

The "through a server" reads: for each (contender, read, round) the runner starts the tool's
server over the tool's read data set on 127.0.0.1 and a free port (untimed), runs the worker
against it, and stops it (``bench.peers.serving``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.peers import report
from bench.peers.common import BUDGET_S, STOP_S, Sizes, offline_env
from bench.peers.registry import PEERS
from bench.peers.serving import free_port, running

DATA_VERSION = "despina-peers-bench-v1"
JOBS = ("write", "series", "table", "series_remote", "table_remote")
TIMEOUT_S = 900.0


def _available(key: str) -> str | None:
    """Why ``key`` cannot run here, or None."""
    import importlib.util

    module = {
        "mlflow-sqlite": "mlflow",
        "mlflow-file": "mlflow",
        "neptune-scale": "neptune_scale",
        "neptune-query": "neptune_query",
    }
    name = module.get(key, key)
    return None if importlib.util.find_spec(name) else f"{PEERS[key].package} is not installed"


class Stopped(Exception):
    """A read stopped at its ``STOP_S``: ``bound`` seconds had passed since its clock started."""

    def __init__(self, bound: float) -> None:
        super().__init__(f"stopped after {bound:.0f} s")
        self.bound = bound


def _worker(
    key: str,
    job: str,
    root: Path,
    sizes: Sizes,
    log: Path,
    tag: str = "",
    server: dict[str, str] | None = None,
) -> dict[str, Any]:
    out = root.parent / f"{key}-{job}{tag}.json"
    begun = out.with_name(out.name + ".begin")
    out.unlink(missing_ok=True)
    begun.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.peers.worker", key, job, str(root), str(out)]
    cmd.append(json.dumps(sizes.to_json()))
    if server is not None:
        cmd.append(json.dumps(server))
    begin = time.perf_counter()
    with log.open("a") as sink:
        sink.write(f"\n=== {key} {job} {root}\n")
        sink.flush()
        try:
            proc = subprocess.run(
                cmd,
                env=offline_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=STOP_S.get(job, TIMEOUT_S),
                check=False,
            )
        except subprocess.TimeoutExpired:
            if job not in STOP_S or not begun.exists():
                raise
            raise Stopped(time.time() - float(begun.read_text())) from None
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{key} {job} failed (exit {proc.returncode}); see {log}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["_wall"] = time.perf_counter() - begin
    return result


def _remote(key: str, job: str, data: Path, sizes: Sizes, log: Path, rnd: int) -> dict[str, Any]:
    """One read through a server of its own over the data set of ``job`` (untimed start)."""
    port = free_port()
    store = data / job.removesuffix("_remote")
    spec = PEERS[key]().serve(store, port)
    with running(spec, port, offline_env(), log):
        return _worker(key, job, data, sizes, log, tag=f"-round{rnd}", server=spec.client)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--from-json", help="re-render the report of a saved run")
    args = parser.parse_args(argv)

    console = Console(width=max(160, Console().width))
    if args.from_json:
        saved = report.Results.load(Path(args.from_json))
        report.print_tables(console, saved)
        if not args.no_docs:
            report.write_docs(Path(args.docs), saved)
        return 0
    unknown = set(args.jobs.split(",")) - set(JOBS)
    if unknown:
        parser.error(f"--jobs: unknown {', '.join(sorted(unknown))}; choose from {', '.join(JOBS)}")
    sizes = Sizes.quick() if args.quick else Sizes()
    keys = [k for k in PEERS if not args.only or k == "despina" or k in args.only.split(",")]
    missing = {k: why for k in keys if (why := _available(k))}
    keys = [k for k in keys if k not in missing]
    if "despina" not in keys:
        console.print("[red]despina is not installed in this venv[/red]")
        return 1
    for key, why in missing.items():
        console.print(f"[yellow]{PEERS[key].title}: {why}; left out[/yellow]")

    base = Path(tempfile.gettempdir()) / DATA_VERSION / ("quick" if args.quick else "full")
    log = base / "workers.log"
    base.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    started = time.time()
    load_before = os.getloadavg()
    failures: dict[str, str] = {}
    extras: dict[str, dict[str, Any]] = {k: {} for k in keys}

    # The read data sets: written once per contender (untimed), kept between runs.
    for key in keys:
        if PEERS[key].data_of or not (PEERS[key].reads or PEERS[key].remote_api):
            continue
        data = base / "data" / key
        if args.rebuild and data.exists():
            shutil.rmtree(data)
        if (data / ".complete").exists():
            continue
        shutil.rmtree(data, ignore_errors=True)
        console.print(f"building the read data of {PEERS[key].title}…")
        try:
            setup = _worker(key, "setup", data, sizes, log)
            (data / ".complete").write_text(json.dumps(setup))
            extras[key].update(setup)
        except Exception as exc:
            failures[f"{key} setup"] = str(exc)

    samples: dict[str, dict[str, list[float | None]]] = {k: {} for k in keys}
    slow: set[tuple[str, str]] = set()
    for rnd in range(args.rounds):
        order = keys[rnd % len(keys) :] + keys[: rnd % len(keys)]
        for job in [j for j in JOBS if j in args.jobs.split(",")]:
            for key in order:
                peer = PEERS[key]
                owner = peer.data_of or key
                data = base / "data" / owner
                remote = job.endswith("_remote")
                if job == "write" and not peer.writes:
                    continue
                if job != "write" and not (peer.remote_api if remote else peer.reads):
                    continue
                if job != "write" and (not data.exists() or f"{owner} setup" in failures):
                    continue
                if (key, job) in slow:
                    continue
                root = base / f"round{rnd}" / key if job == "write" else data
                console.print(f"round {rnd + 1}/{args.rounds}: {peer.title} {job}")
                try:
                    if remote:
                        result = _remote(key, job, data, sizes, log, rnd)
                    else:
                        result = _worker(key, job, root, sizes, log, tag=f"-round{rnd}")
                except Stopped as stop:
                    extras[key][f"{job}_over"] = stop.bound
                    slow.add((key, job))
                    continue
                except Exception as exc:
                    failures[f"{key} {job}"] = str(exc)
                    continue
                finally:
                    if job == "write":
                        shutil.rmtree(root, ignore_errors=True)
                if result["_wall"] > BUDGET_S[job]:
                    slow.add((key, job))
                for name, value in result.items():
                    if name.startswith("_") or name.endswith("_rows") or name == "start_first":
                        extras[key][name] = value
                    else:
                        samples[key].setdefault(name, [None] * args.rounds)[rnd] = value

    finished = time.time()
    results = report.Results(
        sizes=sizes,
        keys=keys,
        samples=samples,
        extras=extras,
        missing=missing,
        failures=failures,
        slow=sorted(f"{k} {j}" for k, j in slow),
        started=started,
        finished=finished,
        load_before=load_before,
        load_after=os.getloadavg(),
        rounds=args.rounds,
        argv=argv,
    )
    saved = base / f"results-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}.json"
    results.save(saved)
    console.print(f"results saved to {saved} (re-render: --from-json {saved})")
    report.print_tables(console, results)
    if not args.no_docs:
        report.write_docs(Path(args.docs), results)
        console.print(f"wrote {args.docs}/benchmarks.md and {args.docs}/benchmarks.png")
    for what, why in failures.items():
        console.print(f"[red]{what}: {why}[/red]")
    console.print(f"(peers benchmark: {finished - started:.0f} s; worker output in {log})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
