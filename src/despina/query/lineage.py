"""Batch reads shared by the query service's batch API: batching and lineages.

Lineage modes follow spec/query-api.md §10.2: ``full`` (every ancestor), ``experiment`` (stop
at the first ancestor of another experiment), ``own`` (the run alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from despina.store.series import LineageLink
from despina.store.sql.series_reads import run_lineage_rows

__all__ = [
    "BATCH",
    "LINEAGE_EXPERIMENT",
    "LINEAGE_FULL",
    "LINEAGE_OWN",
    "in_chunks",
    "lineage_links",
]

T = TypeVar("T")

BATCH = 400
"""Values bound per ``IN (...)`` list."""

LINEAGE_FULL = "full"
LINEAGE_EXPERIMENT = "experiment"
LINEAGE_OWN = "own"


def in_chunks(items: Sequence[T], size: int = BATCH) -> Iterable[Sequence[T]]:
    """``items`` in slices of at most ``size`` (one ``IN (...)`` list each)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lineage_links(
    conn: Any,
    run_pks: Iterable[int],
    mode: str,
) -> dict[int, list[LineageLink]]:
    """Per run, the runs whose points it shows (itself first), each bounded by a fork step.

    ``mode``: ``full`` (every ancestor), ``experiment`` (stop at the first ancestor of another
    experiment) or ``own`` (the run alone).
    """
    info: dict[int, tuple[int | None, int | None, str | None]] = {}
    todo = set(run_pks)
    while todo:
        part = list(todo)[: 4 * BATCH]
        todo.difference_update(part)
        for pk, parent, fork_step, experiment in run_lineage_rows(conn, part):
            info[pk] = (parent, fork_step, experiment)
            if mode != LINEAGE_OWN and parent is not None and parent not in info:
                todo.add(parent)
    out: dict[int, list[LineageLink]] = {}
    for pk in run_pks:
        if pk not in info:
            continue
        own_experiment = info[pk][2]
        links: list[LineageLink] = []
        current: int | None = pk
        upper: int | None = None
        seen: set[int] = set()
        while current is not None and current in info and current not in seen:
            seen.add(current)
            parent, fork_step, experiment = info[current]
            if links and mode == LINEAGE_EXPERIMENT and experiment != own_experiment:
                break
            links.append(LineageLink(current, experiment, upper))
            if mode == LINEAGE_OWN:
                break
            current, upper = parent, fork_step
        out[pk] = links
    return out
