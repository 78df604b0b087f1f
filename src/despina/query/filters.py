"""Filters of the query API (``spec/query-api.md`` §4–§5), mirroring ``neptune_query.filters``.

``Filter`` objects render exactly the NQL text ``neptune-query`` 1.14.1 sends
(``str(filter)``) and build the same syntax tree as parsing that text (:meth:`Filter.to_ast`).
Type inference (§6) needs the store and lives in the query service; it hands the inferred
types back through :meth:`Filter.with_types`.

>>> str(Filter.eq("config/lr", 0.01) & ~Filter.exists(Attribute("f", type="file")))
'(`config/lr` == "0.01") AND (NOT (`f`:fileRef EXISTS))'
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

import re2

from despina.nql import ast
from despina.nql.parser import parse
from despina.userregex import compile_user_regex

__all__ = ["KNOWN_TYPES", "Attribute", "AttributeFilter", "Filter"]

KnownType: TypeAlias = Literal[
    "float",
    "int",
    "string",
    "bool",
    "datetime",
    "float_series",
    "string_set",
    "string_series",
    "file",
    "histogram_series",
    "file_series",
]
KNOWN_TYPES: tuple[KnownType, ...] = (
    "float",
    "int",
    "string",
    "bool",
    "datetime",
    "float_series",
    "string_set",
    "string_series",
    "file",
    "histogram_series",
    "file_series",
)
"""The attribute types, in ``neptune_query.filters.KNOWN_TYPES`` order."""

FilterValue: TypeAlias = bool | int | float | str | datetime

_BACKEND_TYPES = {
    "float_series": "floatSeries",
    "string_set": "stringSet",
    "string_series": "stringSeries",
    "file": "fileRef",
    "file_series": "fileRefSeries",
    "histogram_series": "histogramSeries",
}
_WS = r"[ \t\r\n]"
# RE2, not re: Python's re splits a long run of blanks in quadratic time (80,000 blanks: 30 s).
_OR_RE = re2.compile(rf"{_WS}+\|{_WS}+")
_AND_RE = re2.compile(rf"{_WS}+&{_WS}+")
_NOT_RE = re.compile(rf"!{_WS}*")
_VALUE_OPS = ("==", "!=", ">", ">=", "<", "<=")


def backend_type(type_name: str) -> str:
    """The NQL (backend) name of a query-API type: ``float_series`` → ``floatSeries``."""
    return _BACKEND_TYPES.get(type_name, type_name)


def parse_ers(pattern: str) -> list[tuple[list[str], list[str]]]:
    """Split an extended regex (§4) into alternatives of (positive, negated) patterns.

    >>> parse_ers("a & !b | c")
    [(['a'], ['b']), (['c'], [])]
    """
    alternatives = []
    for alternative in _OR_RE.split(pattern.strip()):
        positive: list[str] = []
        negated: list[str] = []
        for part in _AND_RE.split(alternative):
            if _NOT_RE.match(part):
                negated.append(_unescape_ers(_NOT_RE.sub("", part, count=1)))
            else:
                positive.append(_unescape_ers(part))
        alternatives.append((positive, negated))
    return alternatives


def _unescape_ers(part: str) -> str:
    return part.replace(r"\x20", " ").replace(r"\x21", "!")


def ers_match(alternatives: list[tuple[list[str], list[str]]], text: str) -> bool:
    """Whether ``text`` matches parsed extended-regex ``alternatives`` (unanchored RE2 search,
    ``despina.userregex``).

    Raises:
        InvalidPattern: a pattern is too long or not valid RE2 syntax.
    """
    return any(
        all(compile_user_regex(p).search(text) for p in positive)
        and not any(compile_user_regex(n).search(text) for n in negated)
        for positive, negated in alternatives
    )


# -- Attribute --------------------------------------------------------------------------------


@dataclass
class Attribute:
    """An attribute name and, optionally, its type (one of :data:`KNOWN_TYPES`)."""

    name: str
    type: KnownType | None = None

    def __post_init__(self) -> None:
        if self.type is not None and (
            not isinstance(self.type, str) or self.type not in KNOWN_TYPES
        ):
            raise ValueError(f"type must be one of: {sorted(KNOWN_TYPES)}")

    def __str__(self) -> str:
        text = f"`{self.name}`"  # neptune-query never escapes inside the backquotes
        return text if self.type is None else f"{text}:{backend_type(self.type)}"

    def to_ast(self) -> ast.Attribute:
        """The NQL attribute reference."""
        return ast.Attribute(self.name, None if self.type is None else backend_type(self.type))


# -- Filter internals -------------------------------------------------------------------------


class _Node(abc.ABC):
    @abc.abstractmethod
    def text(self) -> str: ...

    @abc.abstractmethod
    def to_ast(self) -> ast.Expr: ...

    @abc.abstractmethod
    def with_types(self, types: Mapping[str, str]) -> _Node: ...

    @abc.abstractmethod
    def attributes(self) -> Iterator[Attribute]: ...


def _typed(attribute: Attribute, types: Mapping[str, str]) -> Attribute:
    if attribute.type is None and attribute.name in types:
        return Attribute(attribute.name, types[attribute.name])  # type: ignore[arg-type]
    return attribute


class _Predicate(_Node):
    """``attr OP "value"`` (OP a comparison, [NOT] MATCHES, [NOT] CONTAINS) or ``attr EXISTS``."""

    def __init__(self, op: str, attribute: Attribute, value: FilterValue | None = None) -> None:
        if op != "EXISTS" and not isinstance(value, bool | int | float | str | datetime):
            raise TypeError(
                f"Invalid value type: {type(value).__name__}. "
                "Expected int, float, str, or datetime."
            )
        self.op = op
        self.attribute = Attribute(attribute.name, attribute.type)  # a snapshot, like neptune
        self.value = value

    def value_text(self) -> str:
        if isinstance(self.value, datetime):
            return self.value.astimezone().isoformat()
        return str(self.value)

    def text(self) -> str:
        if self.op == "EXISTS":
            return f"{self.attribute} EXISTS"
        escaped = self.value_text().replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.attribute} {self.op} "{escaped}"'

    def to_ast(self) -> ast.Expr:
        attr = self.attribute.to_ast()
        if self.op == "EXISTS":
            return ast.Exists(attr)
        value = ast.Literal(self.value_text(), quoted=True)
        if self.op in _VALUE_OPS:
            return ast.Comparison(attr, self.op, value)
        negated = self.op.startswith("NOT ")
        if self.op.endswith("MATCHES"):
            return ast.Matches(attr, value, negated)
        return ast.Contains(attr, value, negated)

    def with_types(self, types: Mapping[str, str]) -> _Node:
        return _Predicate(self.op, _typed(self.attribute, types), self.value)

    def attributes(self) -> Iterator[Attribute]:
        yield self.attribute


class _Associative(_Node):
    """Children joined by ``AND``/``OR``, each in parentheses, flat as built."""

    def __init__(self, op: str, children: Sequence[_Node]) -> None:
        if not children:
            raise ValueError(f"At least one filter must be provided to combine with {op}.")
        self.op = op
        self.children = tuple(children)

    def text(self) -> str:
        return f" {self.op} ".join(f"({child.text()})" for child in self.children)

    def to_ast(self) -> ast.Expr:
        combine = ast.And if self.op == "AND" else ast.Or
        node = self.children[0].to_ast()
        for child in self.children[1:]:
            node = combine(node, child.to_ast())
        return node

    def with_types(self, types: Mapping[str, str]) -> _Node:
        return _Associative(self.op, [child.with_types(types) for child in self.children])

    def attributes(self) -> Iterator[Attribute]:
        for child in self.children:
            yield from child.attributes()


class _Negation(_Node):
    def __init__(self, child: _Node) -> None:
        self.child = child

    def text(self) -> str:
        return f"NOT ({self.child.text()})"

    def to_ast(self) -> ast.Expr:
        return ast.Not(self.child.to_ast())

    def with_types(self, types: Mapping[str, str]) -> _Node:
        return _Negation(self.child.with_types(types))

    def attributes(self) -> Iterator[Attribute]:
        return self.child.attributes()


class _RawNql(_Node):
    """Extension: NQL text used as is (its attributes are not subject to type inference)."""

    def __init__(self, text: str) -> None:
        tree = parse(text)
        if isinstance(tree, ast.MatchAll):
            raise ValueError("Filter.nql() needs a non-empty query")
        self.source = text
        self.tree: ast.Expr = tree

    def text(self) -> str:
        return self.source

    def to_ast(self) -> ast.Expr:
        return self.tree

    def with_types(self, types: Mapping[str, str]) -> _Node:
        return self

    def attributes(self) -> Iterator[Attribute]:
        return iter(())


def _attr(attribute: str | Attribute) -> Attribute:
    return Attribute(name=attribute) if isinstance(attribute, str) else attribute


def _matches(attribute: Attribute, pattern: str) -> _Node:
    """An extended-regex match: OR of ANDs; positives first, as ``neptune-query`` orders them."""
    alternatives = [
        _Associative(
            "AND",
            [_Predicate("MATCHES", attribute, p) for p in positive]
            + [_Predicate("NOT MATCHES", attribute, n) for n in negated],
        )
        for positive, negated in parse_ers(pattern)
    ]
    return _Associative("OR", alternatives)


# -- Filter -----------------------------------------------------------------------------------


class Filter:
    """Criteria on attribute values that select experiments or runs.

    Build with the static constructors and combine with ``&``, ``|`` and ``~``. ``str()``
    gives the NQL text before type inference. Filters have no ``==``: compare their text.
    """

    def __init__(self, node: _Node) -> None:
        self._node = node

    @staticmethod
    def name(name: str | list[str]) -> Filter:
        """``sys/name`` matching an extended regex (``str``) or equal to one of the names."""
        attribute = Attribute(name="sys/name", type="string")
        if isinstance(name, str):
            return Filter.matches(attribute, name)
        return Filter(_Associative("OR", [_Predicate("==", attribute, n) for n in name]))

    @staticmethod
    def eq(attribute: str | Attribute, value: FilterValue) -> Filter:
        """The attribute equals ``value`` (a series: its last value)."""
        return Filter(_Predicate("==", _attr(attribute), value))

    @staticmethod
    def ne(attribute: str | Attribute, value: FilterValue) -> Filter:
        """The attribute exists and differs from ``value``."""
        return Filter(_Predicate("!=", _attr(attribute), value))

    @staticmethod
    def gt(attribute: str | Attribute, value: FilterValue) -> Filter:
        """The attribute is greater than ``value``."""
        return Filter(_Predicate(">", _attr(attribute), value))

    @staticmethod
    def ge(attribute: str | Attribute, value: FilterValue) -> Filter:
        """The attribute is greater than or equal to ``value``."""
        return Filter(_Predicate(">=", _attr(attribute), value))

    @staticmethod
    def lt(attribute: str | Attribute, value: FilterValue) -> Filter:
        """The attribute is less than ``value``."""
        return Filter(_Predicate("<", _attr(attribute), value))

    @staticmethod
    def le(attribute: str | Attribute, value: FilterValue) -> Filter:
        """The attribute is less than or equal to ``value``."""
        return Filter(_Predicate("<=", _attr(attribute), value))

    @staticmethod
    def matches(attribute: str | Attribute, pattern: str) -> Filter:
        """A string attribute matches an extended regex (``a & !b | c``, §4)."""
        return Filter(_matches(_attr(attribute), pattern))

    @staticmethod
    def contains_all(attribute: str | Attribute, values: str | list[str]) -> Filter:
        """A string set contains every value, or a string every substring."""
        if isinstance(values, str):
            values = [values]
        if values == []:
            raise ValueError(
                "Invalid value for `contains_all` filter. Expected str, or non-empty list of "
                "str, but got an empty list"
            )
        attr = _attr(attribute)
        return Filter(_Associative("AND", [_Predicate("CONTAINS", attr, v) for v in values]))

    @staticmethod
    def contains_none(attribute: str | Attribute, values: str | list[str]) -> Filter:
        """A string set contains none of the values, or a string none of the substrings."""
        if values == []:
            raise ValueError(
                "Invalid value for `contains_none` filter. Expected str, or non-empty list of "
                "str, but got an empty list"
            )
        if isinstance(values, str):
            values = [values]
        attr = _attr(attribute)
        return Filter(_Associative("AND", [_Predicate("NOT CONTAINS", attr, v) for v in values]))

    @staticmethod
    def exists(attribute: str | Attribute) -> Filter:
        """The attribute exists (with that type, if the attribute has one)."""
        return Filter(_Predicate("EXISTS", _attr(attribute)))

    @staticmethod
    def nql(text: str) -> Filter:
        """Extension: a filter from NQL text, checked for syntax now and used verbatim.

        Raises:
            NQLSyntaxError: ``text`` is not valid NQL.
            ValueError: ``text`` is empty.
        """
        return Filter(_RawNql(text))

    def __and__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return Filter(_Associative("AND", [self._node, other._node]))

    def __or__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return Filter(_Associative("OR", [self._node, other._node]))

    def __invert__(self) -> Filter:
        return Filter(_Negation(self._node))

    def __str__(self) -> str:
        return self._node.text()

    def __repr__(self) -> str:
        return f"Filter({self._node.text()!r})"

    def to_ast(self) -> ast.Expr:
        """The NQL tree; equal to ``parse(str(self))`` (names with a backquote or a backslash
        excepted: the text leaves them unescaped, as ``neptune-query`` does, the tree not)."""
        return self._node.to_ast()

    def attributes(self) -> list[Attribute]:
        """Every attribute the filter refers to, in order (those of :meth:`nql` parts aside)."""
        return list(self._node.attributes())

    def with_types(self, types: Mapping[str, str]) -> Filter:
        """A copy where each untyped attribute named in ``types`` gets that type (a name of
        :data:`KNOWN_TYPES`): the result of type inference (§6).

        Raises:
            ValueError: a type is not one of :data:`KNOWN_TYPES`.
        """
        return Filter(self._node.with_types(types))


def all_of(filters: Sequence[Filter]) -> Filter:
    """``(f1) AND (f2) AND …`` flat, for the query service (not a public ``Filter`` method)."""
    return Filter(_Associative("AND", [f._node for f in filters]))


def any_of(filters: Sequence[Filter]) -> Filter:
    """``(f1) OR (f2) OR …`` flat, for the query service (not a public ``Filter`` method)."""
    return Filter(_Associative("OR", [f._node for f in filters]))


# -- AttributeFilter --------------------------------------------------------------------------


class BaseAttributeFilter(abc.ABC):
    """An attribute filter or a union of them (``f1 | f2``, ``AttributeFilter.any(f1, f2)``)."""

    def __or__(self, other: BaseAttributeFilter) -> BaseAttributeFilter:
        return BaseAttributeFilter.any(self, other)

    # Deliberately not a staticmethod, like neptune-query: ``f.any(g)`` and
    # ``AttributeFilter.any(f, g)`` both work.
    def any(*filters: BaseAttributeFilter) -> BaseAttributeFilter:
        """The union of ``filters``."""
        return _AttributeFilterAlternative(filters=tuple(filters))

    @abc.abstractmethod
    def leaves(self) -> list[AttributeFilter]:
        """The :class:`AttributeFilter` objects of the union."""

    def accepts(self, name: str, type: str) -> bool:
        """Whether an attribute ``name`` of ``type`` passes some leaf."""
        return any(leaf.accepts(name, type) for leaf in self.leaves())


@dataclass
class AttributeFilter(BaseAttributeFilter):
    """Attributes selected by name (extended regex ``str``, exact ``list``, ``None``: any) and
    type (one of :data:`KNOWN_TYPES`, a list of them, ``None``: all)."""

    name: str | list[str] | None = None
    type: KnownType | list[KnownType] | None = None

    def __post_init__(self) -> None:
        if self.type is None:
            self.type = list(KNOWN_TYPES)
        elif isinstance(self.type, str):
            self.type = [self.type]
        if self.name is not None and not (
            isinstance(self.name, str)
            or (isinstance(self.name, list) and all(isinstance(n, str) for n in self.name))
        ):
            raise ValueError("name must be a string or list of strings")
        if not isinstance(self.type, Sequence) or not all(
            isinstance(t, str) and t in KNOWN_TYPES for t in self.type
        ):
            raise ValueError(
                f"type must be a list of valid values: {sorted(KNOWN_TYPES)} (got {self.type!r})"
            )

    def leaves(self) -> list[AttributeFilter]:
        return [self]

    def types(self) -> list[str]:
        """The allowed types, as a list (``__post_init__`` normalised them)."""
        return list(self.type) if isinstance(self.type, list) else [str(self.type)]

    def accepts(self, name: str, type: str) -> bool:
        if type not in self.types():
            return False
        if self.name is None:
            return True
        if isinstance(self.name, list):
            return name in self.name
        return ers_match(parse_ers(self.name), name)


@dataclass
class _AttributeFilterAlternative(BaseAttributeFilter):
    filters: tuple[BaseAttributeFilter, ...]

    def __or__(self, other: BaseAttributeFilter) -> BaseAttributeFilter:
        return _AttributeFilterAlternative((*self.filters, other))

    def leaves(self) -> list[AttributeFilter]:
        return [leaf for f in self.filters for leaf in f.leaves()]
