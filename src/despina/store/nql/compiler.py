"""The part of NQL compilation both databases share: the boolean structure, the plan (which
clause drives, in which order the others are probed) and the SQL of attribute tests.

A dialect (:mod:`~despina.store.nql.sqlite`, :mod:`~despina.store.nql.postgres`) subclasses
:class:`FilterCompiler` and says how its database spells what differs: truth values, substring
and regular-expression tests, text order, the JSON of artifacts, float arithmetic.

Shapes of the SQL (see ``store/schema.py`` for the columns)::

    EXISTS (SELECT 1 FROM attributes a
            WHERE a.path = ? AND a.run_id = r.id AND a.type IN ('float', 'int') AND a.num > ?)
    r.id IN (SELECT a.run_id FROM attributes a
             WHERE a.path = ? AND ...)    -- the driver of a top-level AND (see below)
    NOT EXISTS (...)                       -- NOT CONTAINS / NOT MATCHES / NOT EXISTS (§7.2)
    r.creation_ms >= ?                     -- sys/ columns, from SYS_COLUMNS
    (r.closed = 0 AND r.ping_ms >= ? - 300000)   -- sys/state

Every fragment is true or false, never NULL, so ``NOT`` of a fragment is exact. A NULL float
(NaN: both stores keep NaN as NULL) or a missing aggregate makes a comparison NULL, hence false
inside ``EXISTS``. Type names are inlined as SQL string literals; they come from the fixed set
``ATTRIBUTE_TYPES``, never from the query. A series only exists with at least one committed
point (``count > 0``), so a series row holding only previews is absent.

Plan. Probing every run for every clause costs about 1 µs per (run, clause); scanning one path
across all runs in the ``attributes_for_filters`` index costs about 0.3 µs per run. So the
clauses of a top-level ``AND`` are put cheapest first (``sys/`` columns, then string-set
membership, numeric tests, text and regular expressions) and the cheapest attribute clause that
must hold becomes an ``r.id IN (…)`` scan that drives the query: only the runs it yields are
probed for the rest. Set membership is looked up in ``set_members`` (one row per element); as
the driver it reads only the runs whose set holds the element. Reordering is exact because every
fragment is true or false and has no side effects. Measurements: ``docs/architecture.md``,
"Filters".
"""

from __future__ import annotations

from typing import Any, ClassVar

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
)
from despina.store.schema import ATTRIBUTE_TYPES, SERIES_TYPES
from despina.store.sysattrs import SysColumn, run_state_sql

__all__ = [
    "FILTER_INDEX",
    "NOT_NULL_SYS",
    "TEXT_TYPES",
    "FilterCompiler",
    "anchored_prefix",
    "literal_pattern",
    "type_sql",
]

FILTER_INDEX = "attributes_for_filters"
"""The index over ``attributes (path, run_id, …)`` that filter scans and probes use."""

SQL_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
TEXT_TYPES = frozenset({"string", "string_series", "string_set"})
"""Stored types whose value is ``attributes.text``."""

NOT_NULL_SYS = frozenset(
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

# Relative cost of evaluating one clause for one run on the embedded store: set membership is one
# lookup in ``set_members`` (and as a driver reads only the runs that have the element); a number
# compare reads only the index; text reads the table row; a regular expression calls into Python.
OP_COST = {"member": 1, "exists": 2, "contains": 6, "matches": 12}


def cost(node: Resolved, op_cost: dict[str, int] = OP_COST) -> int:
    """The relative cost of evaluating ``node`` for one run (see ``OP_COST``)."""
    if isinstance(node, AttrTest):
        return max(_branch_cost(branch, op_cost) for branch in node.branches)
    if isinstance(node, (AllOf, AnyOf)):
        return sum(cost(item, op_cost) for item in node.items)
    if isinstance(node, NotOf):
        return cost(node.item, op_cost)
    return 0  # sys/ columns, state and constants: a column of the run row


def _branch_cost(branch: Branch, op_cost: dict[str, int]) -> int:
    op, field = branch.cond.op, branch.cond.field
    if op in op_cost:
        return op_cost[op]
    if field == "value" and not branch.types.isdisjoint(TEXT_TYPES | {"artifact"}):
        return 4
    return 2


def type_sql(types: list[str]) -> str:
    """``a.type = '<t>'`` or ``a.type IN (…)`` for stored type names (checked, then inlined)."""
    for name in types:
        if name not in ATTRIBUTE_TYPES:  # inlined below: only our own fixed names may pass
            raise ValueError(f"not an attribute type: {name!r}")
    if len(types) == 1:
        return f"a.type = '{types[0]}'"
    return "a.type IN (" + ", ".join(f"'{name}'" for name in types) + ")"


REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")


def anchored_prefix(pattern: str) -> str:
    """The literal text every match of ``pattern`` starts with, when it starts with ``^``.

    Without the ``m`` flag RE2 matches ``^`` only at the start of the text (a flag can only
    come later, inside ``(``, which ends the prefix), so a match implies the text starts with
    this prefix. Any ``|`` in the pattern could open an unanchored alternative: no prefix then.
    A literal followed by a quantifier may be absent: it is cut.
    """
    if not pattern.startswith("^") or "|" in pattern:
        return ""
    end = 1
    while end < len(pattern) and pattern[end] not in REGEX_SPECIAL:
        end += 1
    if end < len(pattern) and pattern[end] in "*?{":
        end -= 1
    return pattern[1:end]


def literal_pattern(pattern: str) -> tuple[str, str] | None:
    """``(how, text)`` when ``pattern`` is literal text, optionally anchored, else ``None``.

    ``how`` is ``"equals"`` (``^text$``), ``"starts"`` (``^text``), ``"ends"`` (``text$``: RE2's
    ``$`` is the very end of the text) or ``"contains"``. RE2 gives the same answer as these
    plain string tests (``despina.userregex`` takes the same shortcut).
    """
    anchor_start = pattern.startswith("^")
    body = pattern[1:] if anchor_start else pattern
    anchor_end = body.endswith("$")
    body = body[:-1] if anchor_end else body
    if any(ch in REGEX_SPECIAL for ch in body):
        return None
    if anchor_start and anchor_end:
        return "equals", body
    if anchor_start:
        return "starts", body
    return ("ends", body) if anchor_end else ("contains", body)


class FilterCompiler:
    """Turns a resolved tree into one SQL boolean expression; one ``visit_<Node>`` method per
    node class. Subclasses fill in the dialect's hooks (the methods that raise here)."""

    TRUE: ClassVar[str] = "TRUE"
    FALSE: ClassVar[str] = "FALSE"
    source: ClassVar[str] = "attributes a"
    """The ``FROM`` of attribute tests (SQLite names its index)."""
    op_cost: ClassVar[dict[str, int]] = OP_COST
    """The relative costs of operators, for the order of a conjunction (see :func:`cost`)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.params: list[Any] = []

    def compile(self, resolved: Resolved) -> tuple[str, list[Any]]:
        """``(sql, params)`` of a resolved tree; ``params`` are the ``?`` values in order."""
        if isinstance(resolved, AttrTest) and not resolved.negated:
            return self.visit_AttrTest(resolved, drive=True), self.params
        if isinstance(resolved, AllOf):
            return self.conjunction(resolved.items), self.params
        return self.visit(resolved), self.params

    def visit(self, node: Resolved) -> str:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise TypeError(f"cannot compile {type(node).__name__} to SQL")
        sql: str = method(node)
        return sql

    def visit_Const(self, node: Const) -> str:
        return self.TRUE if node.value else self.FALSE

    def visit_AllOf(self, node: AllOf) -> str:
        return "(" + " AND ".join(self.visit(item) for item in node.items) + ")"

    def visit_AnyOf(self, node: AnyOf) -> str:
        return "(" + " OR ".join(self.visit(item) for item in node.items) + ")"

    def visit_NotOf(self, node: NotOf) -> str:
        return f"NOT ({self.visit(node.item)})"

    def conjunction(self, items: tuple[Resolved, ...]) -> str:
        """A top-level ``AND``: cheapest first, the cheapest required attribute clause drives."""
        # stable: equal costs keep the query's order
        ordered = sorted(items, key=lambda item: cost(item, self.op_cost))
        driver = next((i for i in ordered if isinstance(i, AttrTest) and not i.negated), None)
        parts = [
            self.visit_AttrTest(item, drive=True) if item is driver else self.visit(item)
            for item in ordered
        ]
        return "(" + " AND ".join(parts) + ")"

    def visit_AttrTest(self, node: AttrTest, *, drive: bool = False) -> str:
        if drive and len(node.branches) == 1 and node.branches[0].cond.op == "member":
            # Start from the element's rows: only the runs whose set holds it are read.
            self.params += [node.branches[0].cond.value, node.path]
            return "r.id IN (" + self.member_runs_sql() + ")"
        self.params.append(node.path)
        parts = [self.branch(branch) for branch in node.branches]
        where = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
        source = self.source
        if drive:  # (run_id, path) is unique: IN is EXISTS, computed by one scan of the path
            return self.driver_sql(f"SELECT a.run_id FROM {source} WHERE a.path = ? AND {where}")
        sql = f"EXISTS (SELECT 1 FROM {source} WHERE a.path = ? AND a.run_id = r.id AND {where})"
        return "NOT " + sql if node.negated else sql

    def visit_SysTest(self, node: SysTest) -> str:
        column = node.column
        nullable = column.path not in NOT_NULL_SYS
        expression = self.sys_sql(column)
        if node.cond.op == "exists":
            sql = f"({expression} IS NOT NULL)" if nullable else self.TRUE
        else:
            sql = self.cond(expression, node.cond, column.type)
            if nullable:
                sql = f"COALESCE({sql}, {self.FALSE})"
        return f"NOT ({sql})" if node.negated else sql

    def visit_StateTest(self, node: StateTest) -> str:
        if node.state is None:  # legacy state: no run has it
            return self.TRUE if node.op == "!=" else self.FALSE
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
            parts = [type_sql(plain)] if plain else []
            if series:
                parts.append(f"({type_sql(series)} AND a.count > 0)")
            return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
        if cond.field == "value" and types[0] == "artifact":
            column, kind = self.artifact_hash_sql(), "string"
        elif cond.field == "value" and types[0] in TEXT_TYPES:
            column, kind = "a.text", "string"
        elif cond.field == "value":
            column, kind = "a.num", "num"
        else:
            column, kind = self.aggregate_sql(cond.field), "float"
        return f"({type_sql(types)} AND {self.cond(column, cond, kind)})"

    def cond(self, column: str, cond: Cond, kind: str) -> str:
        """SQL of ``cond`` on ``column``, whose values are of ``kind``: ``"string"``,
        ``"float"`` (a double), ``"num"`` (``attributes.num``: ints and floats) or a ``sys/``
        column's type (``"int"``, ``"bool"``, ``"datetime"``, ``"float"``, ``"string"``)."""
        op = cond.op
        value = int(cond.value) if isinstance(cond.value, bool) else cond.value
        if op in SQL_OPS:
            return self.compare(column, op, value, kind)
        self.params.append(value)
        if op == "contains":
            return self.contains_sql(column)
        if op == "member" and column == "a.text":  # the set's elements, indexed
            return "EXISTS (SELECT 1 FROM set_members m WHERE m.value = ? AND m.attr_id = a.id)"
        if op == "matches":
            self.params.pop()
            return self.matches_sql(column, value)
        raise ValueError(f"unknown condition operator {op!r} on {column}")

    # -- dialect hooks -----------------------------------------------------------------------

    def compare(self, column: str, op: str, value: Any, kind: str) -> str:
        """``column <op> ?`` with ``value`` bound."""
        self.params.append(value)
        return f"{column} {SQL_OPS[op]} ?"

    def member_runs_sql(self) -> str:
        """The runs whose string set at path ``?`` holds the element ``?`` (element first)."""
        raise NotImplementedError

    def driver_sql(self, runs: str) -> str:
        """The driving clause: ``r.id`` is among the runs that the query ``runs`` yields."""
        return f"r.id IN ({runs})"

    def sys_sql(self, column: SysColumn) -> str:
        """The SQL expression of a ``sys/`` column."""
        return column.sql

    def artifact_hash_sql(self) -> str:
        raise NotImplementedError

    def aggregate_sql(self, field: str) -> str:
        raise NotImplementedError

    def contains_sql(self, column: str) -> str:
        """Whether ``column`` holds the substring bound last."""
        raise NotImplementedError

    def matches_sql(self, column: str, pattern: Any) -> str:
        """Whether the RE2 ``pattern`` occurs in ``column``."""
        raise NotImplementedError
