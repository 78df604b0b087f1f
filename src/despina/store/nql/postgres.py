"""The PostgreSQL dialect of NQL: the same answers as the embedded store, whatever the data.

The shared plan (:mod:`~despina.store.nql.compiler`) is kept; what differs:

* **Truth values** are ``TRUE``/``FALSE`` (PostgreSQL has no integer booleans).
* **Numbers.** ``attributes.num`` is ``numeric``: ints stay exact and a float binds as its
  shortest exact decimal, so comparing it with a literal (bound the same way) orders exactly as
  SQLite orders ints and floats. The aggregates (``fmin`` …) and ``sys/forking/step`` are
  ``double precision``: a literal is compared as a double, except an int that no double holds
  (beyond 2^53), which PostgreSQL would round: the comparison is rewritten against the two
  doubles around it, which is what SQLite's exact int/float comparison gives.
* **NaN** is NULL in both stores, and an aggregate that computes to NaN (``inf - inf``) is made
  NULL as SQLite makes it, so NaN never compares true. ``average`` of a series without finite
  values is NULL (SQLite's division by zero), not an error.
* **Text order** is the code point order of SQLite and Python (``COLLATE "C"``), whatever the
  database's locale; substrings: ``strpos``; an artifact's hash: ``->> 'hash'`` of its JSON.
* **Regular expressions** are matched with RE2 in this process, as on the embedded store:
  PostgreSQL's own operators speak another dialect (``\\b`` is a backspace there). A literal
  pattern (optionally anchored by ``^``/``$``) becomes a plain string test in SQL. Any other
  pattern is evaluated when the filter is compiled: the values of the clause's attribute are
  read (narrowed in SQL by path, type, project and a literal prefix ``^run-1…``), RE2 runs over
  them, and the clause becomes ``r.id IN (<the matching runs, bound as one array>)``. The
  compiled filter is therefore tied to the read transaction it was compiled in.

Plan: the shared one (``r.id IN (<the driving scan>)`` and probes), which PostgreSQL turns into
joins ordered by its own estimates. Every probe is an index-only scan, so that a filter never
reads the table (a heap read per probe made a five-clause filter 4x slower than SQLite):

* a text is compared through ``attributes.text_head``, its first 64 characters, which the
  covering ``attributes_for_filters`` index holds (a whole text could exceed an index row's
  size). ``=``, ``!=`` and the orders against a value shorter than 64 characters, and a prefix
  of at most 64, give the same answer on the head as on the whole text (the comparison is
  decided within the value's length plus one character); any other text test reads ``text``;
* a string set's element is looked up in ``set_members`` by ``(value, path, run_id)`` (the
  triggers fill in ``path``): neither the attribute row nor its id is needed.

A ``MATERIALIZED`` CTE for the driving clause (``notes/postgres.md``) was measured too and made a
large driver slower (it forced a nested loop over ``runs``), and so did fencing each probe as a
correlated subplan (``OFFSET 0``) to impose the compiler's order; figures in ``docs/nql.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from despina.nql.resolve import AttrTest, Branch, SysTest
from despina.store.nql.compiler import (
    FilterCompiler,
    anchored_prefix,
    literal_pattern,
    type_sql,
)
from despina.store.sysattrs import SysColumn
from despina.userregex import compile_user_regex

__all__ = ["PostgresFilterCompiler"]


def _double(value: float) -> str:
    """A double as an SQL literal that reads back exactly."""
    return f"{value!r}::float8"


_P75, _P538, _P1000, _PM512 = (_double(2.0**e) for e in (75, 538, 1000, -512))
_BELOW_SQRT2 = _double(1.4142135623730949)  # the largest double below sqrt(2)


def _divide(x: str, n: str) -> str:
    """``x / n`` for a double ``x`` and a count ``n >= 1``, as IEEE (and SQLite) computes it.

    PostgreSQL raises an error where IEEE division underflows to zero; a quotient rounds to
    zero exactly when ``|x| / n <= 2^-1075``, tested here with exact power-of-two scalings.
    """
    return (
        f"(CASE WHEN abs({x}) >= 1e-300::float8 THEN {x} / {n} "
        f"WHEN abs({x}) * {_P1000} * {_P75} <= {n} THEN 0.0::float8 ELSE {x} / {n} END)"
    )


def _square(x: str) -> str:
    """``x * x`` as IEEE computes it: infinity on overflow and zero on underflow, where
    PostgreSQL raises errors. With ``t = x * 2^-512`` (exact), ``x * x`` overflows exactly when
    ``t * t`` rounds to 1 or more; it rounds to zero when ``|x| < 2^-537.5``."""
    return (
        f"(CASE WHEN abs({x}) >= 1e150::float8 THEN (CASE WHEN ({x} * {_PM512}) * "
        f"({x} * {_PM512}) >= 1.0::float8 THEN 'Infinity'::float8 ELSE {x} * {x} END) "
        f"WHEN abs({x}) < 1e-150::float8 THEN (CASE WHEN abs({x} * {_P538}) <= {_BELOW_SQRT2} "
        f"THEN 0.0::float8 ELSE {x} * {x} END) "
        f"ELSE {x} * {x} END)"
    )


_COUNT = "NULLIF(a.fcount, 0)"  # no finite value: NULL, as SQLite's division by zero
_AVERAGE = _divide("a.fsum", _COUNT)
# inf - inf (sums that overflowed) is NaN, which SQLite turns into NULL
_VARIANCE = f"NULLIF({_divide('a.fsumsq', _COUNT)} - {_square(_AVERAGE)}, 'NaN'::float8)"
_AGGREGATE_SQL = {
    "min": "a.fmin",
    "max": "a.fmax",
    "average": _AVERAGE,
    # SQLite's MAX(0.0, v) is NULL for a NULL v (GREATEST would give 0.0): a CASE instead
    "variance": f"(CASE WHEN {_VARIANCE} < 0.0::float8 THEN 0.0::float8 ELSE {_VARIANCE} END)",
}
_SYS_SQL = {
    # an int divided by a double, as SQLite computes it (numeric division would be decimal)
    "sys/forking/step": "(r.fork_step::float8 / 1000000.0::float8)",
}
_EXACT_DOUBLE = 2**53
TEXT_HEAD = 64
"""Characters of ``attributes.text`` kept in ``text_head`` (``store/postgres/schema.py``)."""
_HEAD = "a.text_head"
_RUN_SET = "r.id IN (SELECT unnest(CAST(? AS bigint[])))"
_ATTR_SET = "a.id IN (SELECT unnest(CAST(? AS bigint[])))"


class PostgresFilterCompiler(FilterCompiler):
    """NQL to PostgreSQL SQL (see the module docstring).

    ``conn`` is the store connection the filter will run on (regular expressions are evaluated
    through it); ``project_ids`` narrow those reads to the projects the filter will be applied
    to (``None``: every project).
    """

    TRUE: ClassVar[str] = "TRUE"
    FALSE: ClassVar[str] = "FALSE"

    def __init__(self, now_ms: int, conn: Any, project_ids: Sequence[int] | None) -> None:
        super().__init__(now_ms)
        self.conn = conn
        self.project_ids = None if project_ids is None else [int(p) for p in project_ids]
        self._path = ""
        self._types: list[str] = []

    # -- structure ---------------------------------------------------------------------------

    def visit_AttrTest(self, node: AttrTest, *, drive: bool = False) -> str:
        if all(_needs_re2(branch) for branch in node.branches):
            self.params.append(self._regex_runs(node.path, node.branches))
            return f"NOT ({_RUN_SET})" if node.negated else _RUN_SET
        if not drive and _is_membership(node):
            # set_members holds rows of string sets only: the type test is implied
            self.params += [node.branches[0].cond.value, node.path]
            sql = (
                "EXISTS (SELECT 1 FROM set_members m "
                "WHERE m.value = ? AND m.path = ? AND m.run_id = r.id)"
            )
            return "NOT " + sql if node.negated else sql
        self._path = node.path
        return super().visit_AttrTest(node, drive=drive)

    def visit_SysTest(self, node: SysTest) -> str:
        cond = node.cond
        if cond.op == "matches" and literal_pattern(cond.value) is None:
            self.params.append(self._regex_sys_runs(node.column, cond.value))
            return f"NOT ({_RUN_SET})" if node.negated else _RUN_SET
        return super().visit_SysTest(node)

    def branch(self, branch: Branch) -> str:
        self._types = sorted(branch.types)
        return super().branch(branch)

    # -- hooks -------------------------------------------------------------------------------

    def member_runs_sql(self) -> str:
        return "SELECT m.run_id FROM set_members m WHERE m.value = ? AND m.path = ?"

    def sys_sql(self, column: SysColumn) -> str:
        return _SYS_SQL.get(column.path, column.sql)

    def artifact_hash_sql(self) -> str:
        # only artifact rows hold JSON: the cast must not see another type's text
        return "(CASE WHEN a.type = 'artifact' THEN a.text::jsonb ->> 'hash' END)"

    def aggregate_sql(self, field: str) -> str:
        return _AGGREGATE_SQL[field]

    def contains_sql(self, column: str) -> str:
        return f"strpos({column}, ?) > 0"

    def compare(self, column: str, op: str, value: Any, kind: str) -> str:
        if column == "a.text" and isinstance(value, str) and _fits_head(value, TEXT_HEAD - 1):
            column = _HEAD
        if kind == "string" and op not in ("==", "!="):
            column = f'{column} COLLATE "C"'
        elif kind == "float" and isinstance(value, int) and float(value) != value:
            return self._compare_double_with_int(column, op, value)
        return super().compare(column, op, value, kind)

    def matches_sql(self, column: str, pattern: Any) -> str:
        literal = literal_pattern(pattern)
        if literal is not None:
            how, text = literal
            self.params.append(text)
            # an equal text is shorter than the head; a prefix may fill it
            limit = {"equals": TEXT_HEAD - 1, "starts": TEXT_HEAD}.get(how, -1)
            if column == "a.text" and _fits_head(text, limit):
                column = _HEAD
            if how == "equals":
                return f"{column} = ?"
            if how == "starts":
                return f"starts_with({column}, ?)"
            if how == "ends":
                return f"right({column}, {len(text)}) = ?"
            return f"strpos({column}, ?) > 0"
        # a branch beside others of one attribute test (not produced by today's resolver):
        # the matching attribute rows, by id
        if column != "a.text":
            raise ValueError(f"cannot match a regular expression against {column}")
        self.params.append(self._regex_rows(self._path, self._types, pattern))
        return _ATTR_SET

    # -- regular expressions, evaluated here -------------------------------------------------

    def _regex_runs(self, path: str, branches: tuple[Branch, ...]) -> list[int]:
        """Runs whose attribute ``path`` has a type of a branch and matches its pattern."""
        patterns = {t: compile_user_regex(b.cond.value).search for b in branches for t in b.types}
        prefix = _common_prefix([b.cond.value for b in branches])
        runs = set()
        for run_id, type_, text in self._attribute_texts(path, sorted(patterns), prefix):
            if patterns[type_](text):
                runs.add(run_id)
        return sorted(runs)

    def _regex_rows(self, path: str, types: list[str], pattern: str) -> list[int]:
        search = compile_user_regex(pattern).search
        rows = self._attribute_texts(path, types, anchored_prefix(pattern), column="a.id")
        return sorted(row_id for row_id, _, text in rows if search(text))

    def _attribute_texts(
        self, path: str, types: list[str], prefix: str, column: str = "a.run_id"
    ) -> list[tuple[int, str, str]]:
        """``(column, type, text)`` of the rows of ``path`` with one of ``types`` and a text
        starting with ``prefix``, in the projects of the filter."""
        sql = (
            f"SELECT {column}, a.type, a.text FROM attributes a "
            f"WHERE a.path = ? AND {type_sql(types)} AND a.text IS NOT NULL"
        )
        params: list[Any] = [path]
        if prefix:
            sql += " AND starts_with(a.text, ?)"
            params.append(prefix)
        if self.project_ids is not None:
            sql += " AND a.run_id IN (SELECT id FROM runs WHERE project_id = ANY(?))"
            params.append(self.project_ids)
        return [(row[0], row[1], row[2]) for row in self.conn.execute(sql, params)]

    def _regex_sys_runs(self, column: SysColumn, pattern: str) -> list[int]:
        """Runs whose ``sys/`` column matches ``pattern`` (NULL: no match)."""
        expression = self.sys_sql(column)
        search = compile_user_regex(pattern).search
        sql = (
            f"SELECT r.id, {expression} FROM runs r JOIN projects p ON p.id = r.project_id "
            f"WHERE {expression} IS NOT NULL"
        )
        params: list[Any] = []
        prefix = anchored_prefix(pattern)
        if prefix:
            sql += f" AND starts_with({expression}, ?)"
            params.append(prefix)
        if self.project_ids is not None:
            sql += " AND r.project_id = ANY(?)"
            params.append(self.project_ids)
        return sorted(run_id for run_id, text in self.conn.execute(sql, params) if search(text))

    def _compare_double_with_int(self, column: str, op: str, value: int) -> str:
        """``column <op> value`` for a double column and an int no double holds, exactly: the
        int lies strictly between two adjacent doubles ``below`` and ``above``."""
        below = float(value)
        if below > value:
            below = math.nextafter(below, -math.inf)
        above = math.nextafter(below, math.inf)
        if op == "==":
            return self.FALSE
        if op == "!=":
            return f"({column} IS NOT NULL)"
        if op in ("<", "<="):
            self.params.append(below)
            return f"{column} <= ?"
        self.params.append(above)
        return f"{column} >= ?"


def _fits_head(text: str, chars: int) -> bool:
    """Whether ``text`` has at most ``chars`` characters in the database's encoding: counted in
    UTF-8 bytes, which bounds the characters in UTF-8 and the bytes in a one-byte encoding."""
    return len(text.encode()) <= chars


def _is_membership(node: AttrTest) -> bool:
    """A lone ``CONTAINS`` test on a string set."""
    if len(node.branches) != 1:
        return False
    branch = node.branches[0]
    return branch.cond.op == "member" and branch.types == frozenset({"string_set"})


def _needs_re2(branch: Branch) -> bool:
    cond = branch.cond
    return cond.op == "matches" and literal_pattern(cond.value) is None


def _common_prefix(patterns: list[str]) -> str:
    prefixes = {anchored_prefix(pattern) for pattern in patterns}
    return prefixes.pop() if len(prefixes) == 1 else ""
