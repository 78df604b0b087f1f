"""Resolution: from the syntax tree to a typed tree of tests the compiler and the reference
evaluator both consume (``spec/nql.md`` §4–§7).

The resolver checks type names, aggregates and operators, coerces every literal to the value it
is compared with, and decides where each predicate looks:

* :class:`SysTest` — a ``sys/`` attribute stored as a runs column (``SYS_COLUMNS``);
* :class:`StateTest` — the virtual ``sys/state``;
* :class:`AttrTest` — a row of ``attributes``, one :class:`Branch` per group of stored types
  that share a condition (untyped references get a branch for every type the literal and
  operator suit; typed ``int``/``float`` comparisons cover both numeric types);
* :class:`Const` — a predicate decided without data (``artifact`` types, impossible types).

Typed references raise :class:`NQLSemanticError` where untyped ones are just false (§4.3).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, TypeAlias

from despina.nql import ast
from despina.nql.errors import NQLSemanticError
from despina.nql.literals import (
    NonFinite,
    NotCoercible,
    UnknownUnit,
    coerce_bool,
    coerce_datetime,
    coerce_number,
    coerce_state,
)
from despina.nql.parser import parse
from despina.store.sysattrs import SYS_COLUMNS, SysColumn
from despina.userregex import InvalidPattern, compile_user_regex

__all__ = [
    "NQL_TYPES",
    "STATE_PATH",
    "STORED_TYPES",
    "TYPE_ALIASES",
    "AllOf",
    "AnyOf",
    "AttrTest",
    "Branch",
    "Cond",
    "Const",
    "NotOf",
    "Resolved",
    "StateTest",
    "SysTest",
    "canonical_type",
    "resolve",
]

NQL_TYPES = (
    "float",
    "int",
    "bool",
    "string",
    "datetime",
    "stringSet",
    "floatSeries",
    "stringSeries",
    "histogramSeries",
    "fileRef",
    "fileRefSeries",
    "experimentState",
    "artifact",
    "fileSet",
    "gitRef",
    "notebookRef",
)
"""Canonical NQL type names (§4.2)."""

TYPE_ALIASES = {
    "integer": "int",
    "boolean": "bool",
    "string_set": "stringSet",
    "float_series": "floatSeries",
    "string_series": "stringSeries",
    "histogram_series": "histogramSeries",
    "file": "fileRef",
    "file_series": "fileRefSeries",
}
"""Alternative spellings: ``neptune`` 1.x names and the query API's Python names."""

STORED_TYPES = {
    "float": "float",
    "int": "int",
    "bool": "bool",
    "string": "string",
    "datetime": "datetime",
    "stringSet": "string_set",
    "floatSeries": "float_series",
    "stringSeries": "string_series",
    "histogramSeries": "histogram_series",
    "fileRef": "file",
    "fileRefSeries": "file_series",
    "artifact": "artifact",
}
"""NQL type → ``attributes.type`` value, for the types despina stores."""

STATE_PATH = "sys/state"
"""The virtual attribute of type ``experimentState``."""

_LOOKUP = {name.lower(): name for name in NQL_TYPES} | {
    alias.lower(): name for alias, name in TYPE_ALIASES.items()
}
_SPELLINGS = {name.lower(): name for name in (*NQL_TYPES, *TYPE_ALIASES)}
_VOID_TYPES = frozenset({"fileSet", "gitRef", "notebookRef"})
_SERIES_OF_AGGREGATE = {"floatSeries": "float_series", "stringSeries": "string_series"}

_EQ = frozenset({"==", "!="})
_CMP = _EQ | {"<", "<=", ">", ">="}
_ALL_OPS = _CMP | {"contains", "matches", "exists"}
_OP_ORDER = ("==", "!=", "<", "<=", ">", ">=", "contains", "matches", "exists")

# How values of each stored type compare, and the operators each kind supports (§6). An
# artifact compares its content hash (``Run.track_artifact``), for equality only.
_KIND = {
    "float": "number",
    "int": "number",
    "float_series": "number",
    "bool": "bool",
    "datetime": "datetime",
    "string": "string",
    "string_series": "string",
    "string_set": "set",
    "histogram_series": "none",
    "file": "none",
    "file_series": "none",
    "artifact": "artifact",
}
_KIND_OPS = {
    "number": _CMP,
    "bool": _EQ,
    "datetime": _CMP,
    "string": _CMP | {"contains", "matches"},
    "set": frozenset({"contains"}),
    "artifact": _EQ,
    "none": frozenset(),
    "state": _EQ,
}


@dataclass(frozen=True, slots=True)
class Cond:
    """A condition on one value of an attribute.

    ``field`` is ``"value"`` (the scalar, or a series' last value) or an aggregate
    (``"min"``, ``"max"``, ``"average"``, ``"variance"``). ``op`` is a comparison operator,
    ``"contains"`` (substring), ``"member"`` (string set element), ``"matches"`` (``value`` is
    the pattern) or ``"exists"``. ``value`` is coerced: ``int``/``float``, ``bool``, ``str``,
    epoch milliseconds for datetimes.
    """

    field: str
    op: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Branch:
    """``cond`` applies to an attribute whose stored type is in ``types``."""

    types: frozenset[str]
    cond: Cond


@dataclass(frozen=True, slots=True)
class AttrTest:
    """True when the run has attribute ``path`` matching a branch (negated: when it has not)."""

    path: str
    branches: tuple[Branch, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class SysTest:
    """``cond`` on a ``sys/`` attribute stored as a runs column; a NULL value is absent."""

    column: SysColumn
    cond: Cond
    negated: bool = False


@dataclass(frozen=True, slots=True)
class StateTest:
    """``sys/state <op> state`` with ``state`` ``"running"``, ``"inactive"`` or ``None``
    (a legacy value no run has)."""

    state: str | None
    op: str


@dataclass(frozen=True, slots=True)
class Const:
    """A test decided without looking at data."""

    value: bool


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every item holds (at least two items, none of them ``AllOf`` or ``Const``)."""

    items: tuple[Resolved, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Some item holds (at least two items, none of them ``AnyOf`` or ``Const``)."""

    items: tuple[Resolved, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    """The item does not hold."""

    item: Resolved


Resolved: TypeAlias = AllOf | AnyOf | NotOf | Const | AttrTest | SysTest | StateTest


def canonical_type(name: str) -> str | None:
    """The canonical NQL type for ``name`` (any case, aliases allowed), or ``None``."""
    return _LOOKUP.get(name.lower())


def resolve(query: str | ast.Node, *, now_ms: int, source: str | None = None) -> Resolved:
    """Resolve NQL text or a tree into tests; relative datetimes count back from ``now_ms``.

    ``source`` is the text ``query`` was parsed from, if it is a tree; errors point into it.
    Without it, errors point into the canonical rendering of the tree.

    Raises:
        NQLSyntaxError: ``query`` is text that does not parse.
        NQLSemanticError: unknown type, unsupported operator for a typed reference, literal
            not coercible to a typed reference, non-finite number, invalid regex, misplaced
            aggregate or outer type.
    """
    if isinstance(query, str):
        source, query = query, parse(query)
    try:
        return _Resolver(source, now_ms).node(query)
    except _Unpositioned as missing:
        # Built in code, or no source: render and parse to get positions, then fail again.
        text = ast.render(query)
        _Resolver(text, now_ms).node(parse(text))
        raise NQLSemanticError(missing.reason, text, 0) from None  # not reached in practice


class _Unpositioned(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _display(lit: ast.Literal) -> str:
    return ast.escape_string(lit.text) if lit.quoted else lit.text


def _op_name(node: ast.Predicate) -> str:
    if isinstance(node, ast.Comparison):
        return node.op
    if isinstance(node, ast.Contains):
        return "contains"
    return "matches" if isinstance(node, ast.Matches) else "exists"


def _ops_text(ops: frozenset[str]) -> str:
    return ", ".join(op.upper() if op.isalpha() else op for op in _OP_ORDER if op in ops)


def _flatten(node: ast.And | ast.Or) -> list[ast.Expr]:
    """Operands of a chain of one operator, left to right, without recursing on the chain."""
    kind = type(node)
    out: list[ast.Expr] = []
    stack: list[ast.Expr] = [node]
    while stack:
        item = stack.pop()
        if type(item) is kind:
            assert isinstance(item, ast.And | ast.Or)
            stack.append(item.right)
            stack.append(item.left)
        else:
            out.append(item)
    return out


class _Resolver:
    def __init__(self, source: str | None, now_ms: int) -> None:
        self.source = source
        self.now_ms = now_ms

    def fail(self, reason: str, start: int, end: int) -> NQLSemanticError:
        if self.source is None or start < 0:
            raise _Unpositioned(reason)
        return NQLSemanticError(reason, self.source, start, end)

    # -- boolean structure -------------------------------------------------------------------

    def node(self, node: ast.Node) -> Resolved:
        if isinstance(node, ast.MatchAll):
            return Const(True)
        if isinstance(node, ast.And):
            return _all_of([self.node(item) for item in _flatten(node)])
        if isinstance(node, ast.Or):
            return _any_of([self.node(item) for item in _flatten(node)])
        if isinstance(node, ast.Not):
            return _not_of(self.node(node.clause))
        return self.predicate(node)

    # -- predicates --------------------------------------------------------------------------

    def predicate(self, node: ast.Predicate) -> Resolved:
        op = _op_name(node)
        negated = not isinstance(node, ast.Comparison) and node.negated
        literal = None if isinstance(node, ast.Exists) else node.value
        operand = node.operand
        if isinstance(operand, ast.Aggregate):  # report problems in text order: types first
            inner = operand.attribute
            self.type_of(inner.type, inner.type_start, inner.type_end)
            self.type_of(operand.type, operand.type_start, operand.type_end)
        else:
            type_name = self.type_of(operand.type, operand.type_start, operand.type_end)
        if isinstance(operand, ast.Aggregate):
            return self.aggregate(node, operand, op, literal, negated)
        path = operand.name
        if type_name is None:
            self.check_regex(node)
            return self.untyped(path, op, literal, negated)
        if type_name in _VOID_TYPES:
            # despina stores no attributes of these types: predicates are false (§4.2).
            self.check_op(node, op, _ALL_OPS, type_name)
            self.check_regex(node)
            return Const(negated)
        if type_name == "experimentState":
            self.check_op(node, op, _KIND_OPS["state"], type_name)
            assert literal is not None
            state = self.coerce_typed("state", literal, type_name)
            return StateTest(state, op) if path == STATE_PATH else Const(False)
        stored = STORED_TYPES[type_name]
        kind = _KIND[stored]
        self.check_op(node, op, _KIND_OPS[kind] | {"exists"}, type_name)
        self.check_regex(node)
        value = None if literal is None else self.coerce_typed(kind, literal, type_name)
        cond = Cond("value", _cond_op(op, kind), value)
        # §4.3: for comparisons a typed int also compares floats, and a typed float ints.
        types = {"int", "float"} if op in _CMP and stored in ("int", "float") else {stored}
        if path in SYS_COLUMNS:
            column = SYS_COLUMNS[path]
            return SysTest(column, cond, negated) if column.type in types else Const(negated)
        if path == STATE_PATH:
            return Const(negated)
        return AttrTest(path, (Branch(frozenset(types), cond),), negated)

    def untyped(self, path: str, op: str, literal: ast.Literal | None, negated: bool) -> Resolved:
        if path == STATE_PATH:
            cond = self.try_cond("state", op, literal)
            if cond is None:
                return Const(negated)
            return StateTest(cond.value, op)
        if path in SYS_COLUMNS:
            column = SYS_COLUMNS[path]
            cond = self.try_cond(_KIND[column.type], op, literal)
            return Const(negated) if cond is None else SysTest(column, cond, negated)
        return self.attr_test(path, [(t, "value") for t in _KIND], op, literal, negated)

    def aggregate(
        self,
        node: ast.Predicate,
        agg: ast.Aggregate,
        op: str,
        literal: ast.Literal | None,
        negated: bool,
    ) -> Resolved:
        inner = agg.attribute
        func = agg.function
        applies = "floatSeries or stringSeries" if func == "last" else "floatSeries only"
        tin = self.type_of(inner.type, inner.type_start, inner.type_end)
        tout = self.type_of(agg.type, agg.type_start, agg.type_end)
        if tin is not None and (
            tin not in _SERIES_OF_AGGREGATE or (tin == "stringSeries" and func != "last")
        ):
            raise self.fail(f"aggregate {func} applies to {applies}, not {tin}", agg.start, agg.end)
        series: list[str]
        if tin is not None:
            series = [_SERIES_OF_AGGREGATE[tin]]
            result = "float" if tin == "floatSeries" else "string"
            if tout is not None and tout not in (result, tin):
                raise self.fail(
                    f"the result of {func} on a {tin} is {result}, not {tout}",
                    agg.type_start,
                    agg.type_end,
                )
        elif tout is not None:
            if tout in ("float", "floatSeries"):
                series = ["float_series"]
            elif tout in ("string", "stringSeries") and func == "last":
                series = ["string_series"]
            else:
                result = "float or string" if func == "last" else "float"
                raise self.fail(
                    f"the result of {func} is {result}, not {tout}", agg.type_start, agg.type_end
                )
        else:
            series = ["float_series", "string_series"] if func == "last" else ["float_series"]
        field = "value" if func == "last" else func
        if tin is not None or tout is not None:
            kind = _KIND[series[0]]
            allowed = _KIND_OPS[kind]
            if op not in allowed:
                what = "an aggregate" + (f" of {tin}" if tin else "")
                raise self.fail(
                    f"operator {self.op_text(node)} is not supported for {what} "
                    f"(supported: {_ops_text(allowed)})",
                    node.op_start,
                    node.op_end,
                )
            self.check_regex(node)
            assert literal is not None
            value = self.coerce_typed(kind, literal, tin or tout or "")
            cond = Cond(field, _cond_op(op, kind), value)
            if inner.name in SYS_COLUMNS or inner.name == STATE_PATH:
                return Const(negated)
            return AttrTest(inner.name, (Branch(frozenset(series), cond),), negated)
        self.check_regex(node)
        if op == "exists" or inner.name in SYS_COLUMNS or inner.name == STATE_PATH:
            return Const(negated)
        return self.attr_test(inner.name, [(s, field) for s in series], op, literal, negated)

    def attr_test(
        self,
        path: str,
        candidates: list[tuple[str, str]],
        op: str,
        literal: ast.Literal | None,
        negated: bool,
    ) -> Resolved:
        """An untyped test: one branch per group of candidate types sharing a condition."""
        # artifacts keep a branch of their own: their value is read from another column
        groups: dict[tuple[bool, Cond], set[str]] = {}
        by_kind: dict[tuple[str, str], Cond | None] = {}
        for stored, field in candidates:
            kind = _KIND[stored]
            key = (kind, field)
            if key not in by_kind:
                cond = self.try_cond(kind, op, literal)
                by_kind[key] = None if cond is None else Cond(field, cond.op, cond.value)
            found = by_kind[key]
            if found is not None:
                groups.setdefault((kind == "artifact", found), set()).add(stored)
        if not groups:
            return Const(negated)
        branches = tuple(Branch(frozenset(types), cond) for (_, cond), types in groups.items())
        return AttrTest(path, branches, negated)

    # -- helpers -----------------------------------------------------------------------------

    def type_of(self, written: str | None, start: int, end: int) -> str | None:
        """The canonical type for ``written`` (``None`` stays ``None``)."""
        if written is None:
            return None
        found = _LOOKUP.get(written.lower())
        if found is not None:
            return found
        close = difflib.get_close_matches(written.lower(), list(_SPELLINGS), n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean {_SPELLINGS[close[0]]!r}?)"
        else:
            hint = f"; known types: {', '.join(NQL_TYPES)}"
        raise self.fail(f"unknown type {written!r}{hint}", start, end)

    def check_regex(self, node: ast.Predicate) -> None:
        """A ``MATCHES`` pattern must compile with RE2 within the length bound, whatever the
        reference (§7.5); the error points at the pattern's literal."""
        if isinstance(node, ast.Matches):
            try:
                compile_user_regex(node.value.text)
            except InvalidPattern as exc:
                raise self.fail(
                    f"invalid regular expression {_display(node.value)}: {exc.reason}",
                    node.value.start,
                    node.value.end,
                ) from None

    def op_text(self, node: ast.Predicate) -> str:
        if self.source is not None and node.op_start >= 0:
            text = " ".join(self.source[node.op_start : node.op_end].split())
        else:
            text = _op_name(node).upper()
        return text.upper() if text[:1].isalpha() else repr(text)

    def check_op(
        self, node: ast.Predicate, op: str, allowed: frozenset[str], type_name: str
    ) -> None:
        if op not in allowed:
            raise self.fail(
                f"operator {self.op_text(node)} is not supported for {type_name} "
                f"(supported: {_ops_text(allowed)})",
                node.op_start,
                node.op_end,
            )

    def coerce(self, kind: str, text: str) -> Any:
        if kind == "number":
            return coerce_number(text)
        if kind == "bool":
            return coerce_bool(text)
        if kind == "datetime":
            return coerce_datetime(text, self.now_ms)
        if kind == "state":
            return coerce_state(text)
        return text  # string, set, artifact hash

    def coerce_typed(self, kind: str, literal: ast.Literal, type_name: str) -> Any:
        try:
            return self.coerce(kind, literal.text)
        except NonFinite as exc:
            reason = f"{_display(literal)} is not a finite number: {exc}"
        except UnknownUnit as exc:
            reason = f"{_display(literal)}: {exc}"
        except NotCoercible as exc:
            reason = f"{_display(literal)} is not a valid {type_name} value: {exc}"
        raise self.fail(reason, literal.start, literal.end)

    def try_cond(self, kind: str, op: str, literal: ast.Literal | None) -> Cond | None:
        """The condition for an untyped reference of ``kind``, or ``None`` where it is false."""
        if op == "exists":
            return None if kind == "state" else Cond("value", "exists")
        if op not in _KIND_OPS[kind]:
            return None
        assert literal is not None
        try:
            value = self.coerce(kind, literal.text)
        except NotCoercible:
            return None
        return Cond("value", _cond_op(op, kind), value)


def _cond_op(op: str, kind: str) -> str:
    return "member" if op == "contains" and kind == "set" else op


def _all_of(items: list[Resolved]) -> Resolved:
    flat: list[Resolved] = []
    for item in items:
        if isinstance(item, Const):
            if not item.value:
                return item
            continue
        flat.extend(item.items if isinstance(item, AllOf) else (item,))
    if not flat:
        return Const(True)
    return flat[0] if len(flat) == 1 else AllOf(tuple(flat))


def _any_of(items: list[Resolved]) -> Resolved:
    flat: list[Resolved] = []
    for item in items:
        if isinstance(item, Const):
            if item.value:
                return item
            continue
        flat.extend(item.items if isinstance(item, AnyOf) else (item,))
    if not flat:
        return Const(False)
    return flat[0] if len(flat) == 1 else AnyOf(tuple(flat))


def _not_of(item: Resolved) -> Resolved:
    if isinstance(item, Const):
        return Const(not item.value)
    if isinstance(item, NotOf):
        return item.item
    return NotOf(item)
