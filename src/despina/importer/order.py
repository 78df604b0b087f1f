"""Parents before children (exporter-format.md §7.3).

A run's fork parent is looked up among the runs of the same exported project by ``run_id``, then
``sys/id``, then ``sys/custom_run_id``. Runs are then sorted topologically with Kahn's algorithm:
among the runs ready at the same time, earlier ``sys/creation_time`` first, then ``run_id``. A
parent that is not in the export makes the run an orphan; runs on a cycle lose their parent
link (both are imported as roots and reported).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from despina.importer.reader import RunHeader

__all__ = ["RunOrder", "order_runs"]

_NO_TIME = 2**63
"""Sort key of a run without a recorded creation time: after the others."""


@dataclass(slots=True)
class RunOrder:
    """The import order of one project's runs, as indices into the header list."""

    order: list[int] = field(default_factory=list)
    parent: dict[int, int] = field(default_factory=dict)
    """Child index → parent index, for the parents found (links on a cycle removed)."""
    orphans: list[int] = field(default_factory=list)
    """Runs whose recorded parent is not in the export."""
    cycles: list[list[int]] = field(default_factory=list)
    """Runs whose parent links form a cycle, one list per cycle."""


def _find_parents(headers: list[RunHeader]) -> tuple[dict[int, int], list[int]]:
    by_run_id: dict[str, int] = {}
    by_sys_id: dict[str, int] = {}
    by_custom: dict[str, int] = {}
    for i, header in enumerate(headers):
        by_run_id.setdefault(header.run_id, i)
        if header.sys_id is not None:
            by_sys_id.setdefault(header.sys_id, i)
        if header.custom_run_id is not None:
            by_custom.setdefault(header.custom_run_id, i)
    parent: dict[int, int] = {}
    orphans: list[int] = []
    for i, header in enumerate(headers):
        wanted = header.fork_parent
        if wanted is None:
            continue
        found = by_run_id.get(wanted, by_sys_id.get(wanted, by_custom.get(wanted)))
        if found is None:
            orphans.append(i)
        else:
            parent[i] = found
    return parent, orphans


def order_runs(headers: list[RunHeader]) -> RunOrder:
    """Import order of the runs of one exported project: every parent before its children."""
    parent, orphans = _find_parents(headers)
    result = RunOrder(parent=parent, orphans=orphans)
    children: dict[int, list[int]] = {}
    for child, par in parent.items():
        children.setdefault(par, []).append(child)

    def key(i: int) -> tuple[int, str, int]:
        created = headers[i].creation_ms
        return (_NO_TIME if created is None else created, headers[i].run_id, i)

    ready = [key(i) for i in range(len(headers)) if i not in parent]
    heapq.heapify(ready)
    done: set[int] = set()
    while len(done) < len(headers):
        if not ready:
            cycle = _break_cycle(headers, parent, done, key)
            result.cycles.append(cycle)
            for i in cycle:
                del parent[i]
                heapq.heappush(ready, key(i))
            for i in cycle:  # their old parents no longer wait for them
                for siblings in children.values():
                    if i in siblings:
                        siblings.remove(i)
        *_, i = heapq.heappop(ready)
        done.add(i)
        result.order.append(i)
        for child in children.get(i, []):
            if parent.get(child) == i:
                heapq.heappush(ready, key(child))
    return result


def _break_cycle(
    headers: list[RunHeader],
    parent: dict[int, int],
    done: set[int],
    key: Callable[[int], tuple[int, str, int]],
) -> list[int]:
    """The cycle reached from the first waiting run (by creation time, then run id)."""
    waiting = sorted((i for i in range(len(headers)) if i not in done), key=key)
    seen: list[int] = []
    current = waiting[0]
    while current not in seen:
        seen.append(current)
        current = parent[current]
    return seen[seen.index(current) :]
