"""Compilation of resolved NQL into one SQLite boolean expression over ``runs r`` and
``projects p`` (``p.id = r.project_id``), with every value bound as a ``?`` parameter.

Shapes of the SQL (see ``store/schema.py`` for the columns)::

    EXISTS (SELECT 1 FROM attributes a INDEXED BY attributes_for_filters
            WHERE a.path = ? AND a.run_id = r.id AND a.type IN ('float', 'int') AND a.num > ?)
    r.id IN (SELECT a.run_id FROM attributes a INDEXED BY attributes_for_filters
             WHERE a.path = ? AND ...)    -- the driver of a top-level AND (see below)
    NOT EXISTS (...)                       -- NOT CONTAINS / NOT MATCHES / NOT EXISTS (§7.2)
    r.creation_ms >= ?                     -- sys/ columns, from SYS_COLUMNS
    (r.closed = 0 AND r.ping_ms >= ? - 300000)   -- sys/state

Every fragment is 0 or 1, never NULL, so ``NOT`` of a fragment is exact. A NULL float (NaN) or
a missing aggregate makes a comparison NULL, hence false inside ``EXISTS``. Type names are
inlined as SQL string literals; they come from the fixed set ``ATTRIBUTE_TYPES``, never from
the query. A series only exists with at least one committed point (``count > 0``), so a series
row holding only previews is absent.

Plan. Probing every run for every clause costs about 1 µs per (run, clause); scanning one path
across all runs in ``attributes_for_filters`` costs about 0.3 µs per run. So the clauses of a
top-level ``AND`` are put cheapest first (``sys/`` columns, then string-set membership, numeric
tests, text and regular expressions) and the cheapest attribute clause that must hold becomes
an ``r.id IN (…)`` scan that drives the query: only the runs it yields are probed for the rest.
Set membership is looked up in ``set_members`` (one row per element); as the driver it reads
only the runs whose set holds the element. Reordering is exact because every fragment is 0 or
1 and has no side effects. Measurements: ``docs/architecture.md``, "Filters".
"""

from __future__ import annotations

import sqlite3
from typing import Any

from despina.nql import ast
from despina.nql.resolve import (
    AllOf,
    AnyOf,
    AttrTest,
    Branch,
    Cond,
    Const,
    NotOf,
    Resolved,
    StateTest,
    SysTest,
    resolve,
)
from despina.store.schema import ATTRIBUTE_TYPES, SERIES_TYPES
from despina.store.sysattrs import run_state_sql
from despina.userregex import InvalidPattern, compile_user_regex

__all__ = [
    "FILTER_INDEX",
    "REGEXP_FUNCTION",
    "compile_query",
    "compile_resolved",
    "install_functions",
]

FILTER_INDEX = "attributes_for_filters"
"""The index over ``attributes (path, run_id, …)`` that filter scans and probes use."""

REGEXP_FUNCTION = "nql_regexp"
"""The SQL function ``nql_regexp(pattern, text)`` that :func:`install_functions` registers."""

_SQL_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TEXT_TYPES = frozenset({"string", "string_series", "string_set"})
_AGGREGATE_SQL = {
    "min": "a.fmin",
    "max": "a.fmax",
    "average": "(a.fsum / a.fcount)",
    # Population variance of the finite values; rounding can dip below zero, hence MAX.
    "variance": "MAX(0.0, a.fsumsq / a.fcount - (a.fsum / a.fcount) * (a.fsum / a.fcount))",
}
_NOT_NULL_SYS = frozenset(
    {
        "sys/id",
        "sys/custom_run_id",
        "sys/name",
        "sys/experiment/is_head",
        "sys/family",
        "sys/owner",
        "sys/description",
        "sys/diagnostics/project_uuid",
        "sys/diagnostics/run_uuid",
        "sys/creation_time",
        "sys/modification_time",
        "sys/ping_time",
        "sys/archived",
        "sys/trashed",
        "sys/failed",
        "sys/forking/depth",
        "sys/size",
    }
)
"""``sys/`` columns that are never NULL; the others (parent, fork step, experiment name) can be."""

_RESOLVED = (AllOf, AnyOf, NotOf, Const, AttrTest, SysTest, StateTest)


def compile_query(query: str | ast.Node | Resolved, *, now_ms: int) -> tuple[str, list[Any]]:
    """Compile NQL text, a parsed tree or a resolved tree into ``(sql, params)``.

    ``sql`` is one boolean expression to use as ``WHERE r.project_id = ? AND (<sql>)`` with
    ``runs r JOIN projects p ON p.id = r.project_id``; ``params`` are its ``?`` values in order.
    ``now_ms`` is the evaluation time (relative datetimes, ``sys/state``). The connection must
    have :func:`install_functions` applied.

    Raises:
        NQLSyntaxError: the text does not parse.
        NQLSemanticError: the query does not resolve (see :func:`despina.nql.resolve.resolve`).
    """
    resolved = query if isinstance(query, _RESOLVED) else resolve(query, now_ms=now_ms)
    return compile_resolved(resolved, now_ms=now_ms)


def compile_resolved(resolved: Resolved, *, now_ms: int) -> tuple[str, list[Any]]:
    """Compile an already resolved tree (see :func:`compile_query`)."""
    compiler = _Compiler(now_ms)
    if isinstance(resolved, AttrTest) and not resolved.negated:
        return compiler.visit_AttrTest(resolved, drive=True), compiler.params
    if isinstance(resolved, AllOf):
        return compiler.conjunction(resolved.items), compiler.params
    return compiler.visit(resolved), compiler.params


# Relative cost of evaluating one clause for one run: set membership is one lookup in
# ``set_members`` (and as a driver reads only the runs that have the element); a number compare
# reads only the index; text reads the table row; a regular expression calls into Python.
_OP_COST = {"member": 1, "exists": 2, "contains": 6, "matches": 12}


def _cost(node: Resolved) -> int:
    if isinstance(node, AttrTest):
        return max(_branch_cost(branch) for branch in node.branches)
    if isinstance(node, (AllOf, AnyOf)):
        return sum(_cost(item) for item in node.items)
    if isinstance(node, NotOf):
        return _cost(node.item)
    return 0  # sys/ columns, state and constants: a column of the run row


def _branch_cost(branch: Branch) -> int:
    op, field = branch.cond.op, branch.cond.field
    if op in _OP_COST:
        return _OP_COST[op]
    if field == "value" and not branch.types.isdisjoint(_TEXT_TYPES | {"artifact"}):
        return 4
    return 2


def _regexp(pattern: object, text: object) -> int:
    """``nql_regexp(pattern, text)``: 1 when the user pattern occurs in ``text`` (RE2 search,
    ``despina.userregex``: linear time, the GIL released while matching)."""
    if not isinstance(pattern, str) or not isinstance(text, str):
        return 0
    try:
        return 1 if compile_user_regex(pattern).search(text) else 0
    except InvalidPattern:  # the resolver rejects bad patterns; stay total for hand-written SQL
        return 0


def install_functions(conn: sqlite3.Connection) -> None:
    """Register the SQL functions compiled queries use (``nql_regexp``) on ``conn``."""
    conn.create_function(REGEXP_FUNCTION, 2, _regexp, deterministic=True)


def _type_sql(types: list[str]) -> str:
    for name in types:
        if name not in ATTRIBUTE_TYPES:  # inlined below: only our own fixed names may pass
            raise ValueError(f"not an attribute type: {name!r}")
    if len(types) == 1:
        return f"a.type = '{types[0]}'"
    return "a.type IN (" + ", ".join(f"'{name}'" for name in types) + ")"


_REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")


def _anchored_prefix(pattern: str) -> str:
    """The literal text every match of ``pattern`` starts with, when it starts with ``^``.

    Without the ``m`` flag RE2 matches ``^`` only at the start of the text (a flag can only
    come later, inside ``(``, which ends the prefix), so a match implies the text starts with
    this prefix. Any ``|`` in the pattern could open an unanchored alternative: no prefix then.
    A literal followed by a quantifier may be absent: it is cut.
    """
    if not pattern.startswith("^") or "|" in pattern:
        return ""
    end = 1
    while end < len(pattern) and pattern[end] not in _REGEX_SPECIAL:
        end += 1
    if end < len(pattern) and pattern[end] in "*?{":
        end -= 1
    return pattern[1:end]


class _Compiler:
    """Turns a resolved tree into SQL; one ``visit_<Node>`` method per node class."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.params: list[Any] = []

    def visit(self, node: Resolved) -> str:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise TypeError(f"cannot compile {type(node).__name__} to SQL")
        sql: str = method(node)
        return sql

    def visit_Const(self, node: Const) -> str:
        return "1" if node.value else "0"

    def visit_AllOf(self, node: AllOf) -> str:
        return "(" + " AND ".join(self.visit(item) for item in node.items) + ")"

    def visit_AnyOf(self, node: AnyOf) -> str:
        return "(" + " OR ".join(self.visit(item) for item in node.items) + ")"

    def visit_NotOf(self, node: NotOf) -> str:
        return f"NOT ({self.visit(node.item)})"

    def conjunction(self, items: tuple[Resolved, ...]) -> str:
        """A top-level ``AND``: cheapest first, the cheapest required attribute clause drives."""
        ordered = sorted(items, key=_cost)  # stable: equal costs keep the query's order
        driver = next((i for i in ordered if isinstance(i, AttrTest) and not i.negated), None)
        parts = [
            self.visit_AttrTest(item, drive=True) if item is driver else self.visit(item)
            for item in ordered
        ]
        return "(" + " AND ".join(parts) + ")"

    def visit_AttrTest(self, node: AttrTest, *, drive: bool = False) -> str:
        self.params.append(node.path)
        parts = [self.branch(branch) for branch in node.branches]
        where = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
        source = f"attributes a INDEXED BY {FILTER_INDEX}"
        if drive and len(node.branches) == 1 and node.branches[0].cond.op == "member":
            # Start from the element's rows: only the runs whose set holds it are read.
            self.params.append(self.params.pop(-2))  # [..., path, value] -> [..., value, path]
            return (
                "r.id IN (SELECT a.run_id FROM set_members m CROSS JOIN attributes a "
                "ON a.id = m.attr_id WHERE m.value = ? AND a.path = ? AND a.type = 'string_set')"
            )
        if drive:  # (run_id, path) is unique: IN is EXISTS, computed by one scan of the path
            return f"r.id IN (SELECT a.run_id FROM {source} WHERE a.path = ? AND {where})"
        sql = f"EXISTS (SELECT 1 FROM {source} WHERE a.path = ? AND a.run_id = r.id AND {where})"
        return "NOT " + sql if node.negated else sql

    def visit_SysTest(self, node: SysTest) -> str:
        column = node.column
        nullable = column.path not in _NOT_NULL_SYS
        if node.cond.op == "exists":
            sql = f"({column.sql} IS NOT NULL)" if nullable else "1"
        else:
            sql = self.cond(column.sql, node.cond)
            if nullable:
                sql = f"COALESCE({sql}, 0)"
        return f"NOT ({sql})" if node.negated else sql

    def visit_StateTest(self, node: StateTest) -> str:
        if node.state is None:  # legacy state: no run has it
            return "1" if node.op == "!=" else "0"
        self.params.append(self.now_ms)
        running = run_state_sql()
        want_running = (node.state == "running") == (node.op == "==")
        return running if want_running else f"NOT {running}"

    # -- pieces ------------------------------------------------------------------------------

    def branch(self, branch: Branch) -> str:
        types = sorted(branch.types)
        cond = branch.cond
        if cond.op == "exists":
            plain = [name for name in types if name not in SERIES_TYPES]
            series = [name for name in types if name in SERIES_TYPES]
            parts = [_type_sql(plain)] if plain else []
            if series:
                parts.append(f"({_type_sql(series)} AND a.count > 0)")
            return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
        if cond.field == "value" and types[0] == "artifact":
            column = "json_extract(a.text, '$.hash')"
        elif cond.field == "value":
            column = "a.text" if types[0] in _TEXT_TYPES else "a.num"
        else:
            column = _AGGREGATE_SQL[cond.field]
        return f"({_type_sql(types)} AND {self.cond(column, cond)})"

    def cond(self, column: str, cond: Cond) -> str:
        op = cond.op
        value = int(cond.value) if isinstance(cond.value, bool) else cond.value
        self.params.append(value)
        if op in _SQL_OPS:
            return f"{column} {_SQL_OPS[op]} ?"
        if op == "contains":
            return f"instr({column}, ?) > 0"
        if op == "member" and column == "a.text":  # the set's elements, indexed
            return "EXISTS (SELECT 1 FROM set_members m WHERE m.value = ? AND m.attr_id = a.id)"
        if op == "member":
            return f"EXISTS (SELECT 1 FROM json_each({column}) AS j WHERE j.value = ?)"
        if op == "matches":
            prefix = _anchored_prefix(value) if isinstance(value, str) else ""
            if prefix:  # a plain comparison rules out most texts before Python sees them
                self.params.insert(len(self.params) - 1, prefix)
                return (
                    f"(substr({column}, 1, {len(prefix)}) = ? AND {REGEXP_FUNCTION}(?, {column}))"
                )
            return f"{REGEXP_FUNCTION}(?, {column})"
        raise ValueError(f"unknown condition operator {op!r}")
