"""A pure-Python NQL evaluator over one run's attributes: the oracle for the compiled SQL.

A run is a mapping ``path -> (type, value, aggregates)``:

* ``type`` is the stored type (``"float"``, ``"string_set"``, …) or, for ``sys/state``,
  ``"experimentState"``;
* ``value`` is the scalar (``int``, ``float`` with NaN allowed, ``bool``, ``str``, epoch
  milliseconds for datetimes, a set of strings for string sets), or a series' last value, or
  ``None`` for a value that is absent (a NULL ``sys/`` column);
* ``aggregates`` is ``None`` or, for series, a mapping with ``count`` (committed points) and,
  for float series, ``min``/``max``/``average``/``variance`` (``None`` without finite values),
  as :func:`aggregates_from_stats` computes them.

``sys/`` paths appear like any other (their value is what the SQL expression in
``SYS_COLUMNS`` gives), and ``sys/state`` is ``("experimentState", "running" | "inactive",
None)``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import re2

from despina.nql import ast
from despina.nql.resolve import (
    STATE_PATH,
    AllOf,
    AnyOf,
    AttrTest,
    Cond,
    Const,
    NotOf,
    Resolved,
    StateTest,
    SysTest,
    resolve,
)
from despina.store.schema import SERIES_TYPES

__all__ = ["RunAttributes", "aggregates_from_stats", "evaluate"]

RunAttributes: TypeAlias = Mapping[str, tuple[str, Any, Mapping[str, Any] | None]]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_RESOLVED = (AllOf, AnyOf, NotOf, Const, AttrTest, SysTest, StateTest)


def evaluate(query: str | ast.Node | Resolved, run: RunAttributes, now_ms: int) -> bool:
    """Whether ``run`` matches ``query`` (text, parsed tree or resolved tree) at ``now_ms``.

    Raises:
        NQLSyntaxError: the text does not parse.
        NQLSemanticError: the query does not resolve.
    """
    resolved = query if isinstance(query, _RESOLVED) else resolve(query, now_ms=now_ms)
    return _eval(resolved, run)


def aggregates_from_stats(
    count: int,
    fmin: float | None = None,
    fmax: float | None = None,
    fsum: float | None = None,
    fsumsq: float | None = None,
    fcount: int | None = None,
) -> dict[str, Any]:
    """Series aggregates from the stored statistics, with the float arithmetic of the SQL:
    ``average = fsum / fcount``, ``variance = max(0, fsumsq / fcount - average²)``."""
    result: dict[str, Any] = {"count": count, "min": fmin, "max": fmax}
    if fcount and fsum is not None and fsumsq is not None:
        average = fsum / fcount
        variance = fsumsq / fcount - (fsum / fcount) * (fsum / fcount)
        result["average"] = None if math.isnan(average) else average
        result["variance"] = None if math.isnan(variance) else max(0.0, variance)
    else:
        result["average"] = result["variance"] = None
    return result


def _eval(node: Resolved, run: RunAttributes) -> bool:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, AllOf):
        return all(_eval(item, run) for item in node.items)
    if isinstance(node, AnyOf):
        return any(_eval(item, run) for item in node.items)
    if isinstance(node, NotOf):
        return not _eval(node.item, run)
    if isinstance(node, StateTest):
        if node.state is None:
            return node.op == "!="
        entry = run.get(STATE_PATH)
        state = None if entry is None else entry[1]
        return (state == node.state) == (node.op == "==")
    if isinstance(node, SysTest):
        entry = run.get(node.column.path)
        hit = entry is not None and entry[1] is not None and _cond(node.cond, entry[1], None)
        return hit != node.negated
    return _attr(node, run) != node.negated


def _attr(node: AttrTest, run: RunAttributes) -> bool:
    entry = run.get(node.path)
    if entry is None:
        return False
    kind, value, aggregates = entry
    if kind in SERIES_TYPES and (aggregates or {}).get("count", 1) == 0:
        return False  # a series without committed points does not exist
    for branch in node.branches:
        if kind in branch.types:
            return _cond(branch.cond, value, aggregates)
    return False


def _cond(cond: Cond, value: Any, aggregates: Mapping[str, Any] | None) -> bool:
    if cond.op == "exists":
        return True
    if cond.field != "value":
        value = (aggregates or {}).get(cond.field)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False  # NaN and missing values compare false with everything
    if cond.op == "contains":
        return isinstance(value, str) and cond.value in value
    if cond.op == "member":
        return cond.value in value
    if cond.op == "matches":
        # RE2 through its public API, not the engine's path (despina.userregex and its literal
        # shortcuts), so the differential tests check one against the other. The resolver has
        # accepted the pattern already.
        return isinstance(value, str) and re2.search(cond.value, value) is not None
    return _COMPARE[cond.op](value, cond.value)
