"""``make bench``: every benchmark of the project, printed side by side with its baseline.

Each ``bench/*_bench.py`` module exposes ``run() -> list[(name, value, note)]``. Select some with
``python -m bench logging query``; the default runs them all.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

from rich.console import Console
from rich.table import Table

MODULES = [
    "logging",
    "nql",
    "query",
    "server",
    "remote",
    "remote_query",
    "project",
    "durability",
    "ui",
    "import",
    "store",
    "backends",
    "copy",
]


def main(argv: list[str]) -> int:
    chosen = argv or MODULES
    console = Console()
    failed = 0
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}_bench")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}_bench":
                continue
            raise
        table = Table(title=f"{name} benchmarks", show_lines=False)
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_column("note")
        start = time.perf_counter()
        try:
            for label, value, note in module.run():
                table.add_row(label, f"{value:,.3f}" if value < 1000 else f"{value:,.0f}", note)
        except Exception:
            failed += 1
            console.print(f"[red]benchmark {name} failed[/red]")
            console.print(traceback.format_exc())
        console.print(table)
        console.print(f"({name}: {time.perf_counter() - start:.1f} s)\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
