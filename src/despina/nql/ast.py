"""The NQL syntax tree, and :func:`render` back to canonical NQL text.

Nodes are frozen, slotted dataclasses that compare by value: source positions are kept for
error messages in fields declared with ``compare=False`` (``-1`` when a node was built in code).
The tree is purely syntactic: type names are kept as written and checked by the resolver.

Canonical text is the form ``neptune-query`` renders: names always backquoted, keywords upper
case, ``==`` for equality, each operand of ``AND``/``OR`` in parentheses (``(a) AND (b)``,
a left-nested chain flat: ``(a) AND (b) AND (c)``) and ``NOT (x)``.
``parse(render(node)) == node`` for every tree the parser can produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from despina.nql.tokens import KEYWORDS, WORD_STOP_CHARS

__all__ = [
    "AGGREGATES",
    "COMPARISON_OPERATORS",
    "Aggregate",
    "And",
    "Attribute",
    "Comparison",
    "Contains",
    "Exists",
    "Expr",
    "Literal",
    "MatchAll",
    "Matches",
    "Node",
    "Not",
    "Operand",
    "Or",
    "Predicate",
    "escape_name",
    "escape_string",
    "render",
]

COMPARISON_OPERATORS = ("==", "!=", ">", ">=", "<", "<=")
"""Comparison operators in canonical spelling (``=`` parses as ``==``)."""

AGGREGATES = ("last", "min", "max", "average", "variance")
"""Aggregate function names (lower case, the canonical spelling)."""


@dataclass(frozen=True, slots=True)
class Attribute:
    """A reference to an attribute path, with the type name as written (``None``: untyped)."""

    name: str
    type: str | None = None
    start: int = field(default=-1, compare=False)
    end: int = field(default=-1, compare=False)
    type_start: int = field(default=-1, compare=False)
    type_end: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """``function(attribute)[:type]``; ``type`` is the outer (result) type as written."""

    function: str
    attribute: Attribute
    type: str | None = None
    start: int = field(default=-1, compare=False)
    end: int = field(default=-1, compare=False)
    type_start: int = field(default=-1, compare=False)
    type_end: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if self.function not in AGGREGATES:
            raise ValueError(f"unknown aggregate {self.function!r}; expected one of {AGGREGATES}")


Operand: TypeAlias = Attribute | Aggregate


@dataclass(frozen=True, slots=True)
class Literal:
    """A value as written: ``text`` after unescaping, and whether it was a quoted string."""

    text: str
    quoted: bool = True
    start: int = field(default=-1, compare=False)
    end: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Comparison:
    """``operand <op> value`` with ``op`` one of :data:`COMPARISON_OPERATORS`."""

    operand: Operand
    op: str
    value: Literal
    op_start: int = field(default=-1, compare=False)
    op_end: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if self.op not in COMPARISON_OPERATORS:
            expected = ", ".join(COMPARISON_OPERATORS)
            raise ValueError(f"unknown operator {self.op!r}; expected one of {expected}")


@dataclass(frozen=True, slots=True)
class Contains:
    """``operand [NOT] CONTAINS value``."""

    operand: Operand
    value: Literal
    negated: bool = False
    op_start: int = field(default=-1, compare=False)
    op_end: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Matches:
    """``operand [NOT] MATCHES value`` (also ``operand =~ value``)."""

    operand: Operand
    value: Literal
    negated: bool = False
    op_start: int = field(default=-1, compare=False)
    op_end: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Exists:
    """``operand [NOT] EXISTS``."""

    operand: Operand
    negated: bool = False
    op_start: int = field(default=-1, compare=False)
    op_end: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    """``NOT clause``."""

    clause: Expr
    start: int = field(default=-1, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    """``left AND right`` (a chain ``a AND b AND c`` is left-nested)."""

    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Or:
    """``left OR right`` (a chain ``a OR b OR c`` is left-nested)."""

    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class MatchAll:
    """The empty query: every run matches. Only valid as a whole query, never inside another."""


Predicate: TypeAlias = Comparison | Contains | Matches | Exists
Expr: TypeAlias = Comparison | Contains | Matches | Exists | Not | And | Or
Node: TypeAlias = Expr | MatchAll


def escape_string(text: str) -> str:
    """``text`` as an NQL string literal: ``\\`` → ``\\\\`` then ``"`` → ``\\"``, in quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape_name(name: str) -> str:
    """``name`` backquoted, with ``\\`` and backquote escaped so that it parses back exactly."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _is_bare_word(text: str) -> bool:
    return (
        bool(text)
        and not any(ch in WORD_STOP_CHARS for ch in text)
        and text.upper() not in KEYWORDS
        and not text.startswith("'")  # would lex as a single-quoted string (extension)
    )


def _render_literal(lit: Literal) -> str:
    # A literal marked bare that would not lex back as one word is quoted instead.
    return lit.text if not lit.quoted and _is_bare_word(lit.text) else escape_string(lit.text)


def _render_attribute(attr: Attribute) -> str:
    text = escape_name(attr.name)
    return text if attr.type is None else f"{text}:{attr.type}"


def _render_operand(operand: Operand) -> str:
    if isinstance(operand, Attribute):
        return _render_attribute(operand)
    text = f"{operand.function}({_render_attribute(operand.attribute)})"
    return text if operand.type is None else f"{text}:{operand.type}"


def _render_predicate(node: Predicate) -> str:
    left = _render_operand(node.operand)
    if isinstance(node, Comparison):
        return f"{left} {node.op} {_render_literal(node.value)}"
    neg = "NOT " if node.negated else ""
    if isinstance(node, Exists):
        return f"{left} {neg}EXISTS"
    keyword = "CONTAINS" if isinstance(node, Contains) else "MATCHES"
    return f"{left} {neg}{keyword} {_render_literal(node.value)}"


def _chain(node: And | Or) -> list[Expr]:
    """The operands of a left-nested chain of one operator, iteratively (chains can be long)."""
    kind = type(node)
    items: list[Expr] = []
    current: Expr = node
    while type(current) is kind:
        assert isinstance(current, And | Or)
        items.append(current.right)
        current = current.left
    items.append(current)
    items.reverse()
    return items


def render(node: Node) -> str:
    """Canonical NQL text for ``node``; parsing it gives back an equal tree.

    Raises:
        ValueError: ``MatchAll`` inside another node (it has no text of its own).
    """
    if isinstance(node, MatchAll):
        return ""
    if isinstance(node, And | Or):
        # A left-nested chain renders flat, "(a) AND (b) AND (c)": it parses back to the same
        # left-nested tree without one level of parentheses per operand.
        keyword = " AND " if isinstance(node, And) else " OR "
        return keyword.join(f"({render(_inner(item))})" for item in _chain(node))
    if isinstance(node, Not):
        return f"NOT ({render(_inner(node.clause))})"
    return _render_predicate(node)


def _inner(node: Node) -> Expr:
    if isinstance(node, MatchAll):
        raise ValueError("MatchAll (the empty query) cannot be part of another query")
    return node
