"""AST nodes and :func:`render`: canonical text, and ``parse(render(tree)) == tree``."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from nql_strategies import expressions

from despina.nql import parse, render
from despina.nql.ast import (
    Aggregate,
    And,
    Attribute,
    Comparison,
    Contains,
    Exists,
    Expr,
    Literal,
    MatchAll,
    Matches,
    Not,
    Or,
)

RENDER = [
    ("", ""),
    ("`a` = 1", "`a` == 1"),
    ("a:FLOAT>=0.85", "`a`:FLOAT >= 0.85"),
    ("(backbone: string = VGG)", "`backbone`:string == VGG"),
    ('`s` == "he said \\"hi\\" \\\\ ok"', '`s` == "he said \\"hi\\" \\\\ ok"'),
    ('`s` == "exp\\d"', '`s` == "exp\\\\d"'),
    ("`a\\`b` EXISTS", "`a\\`b` EXISTS"),
    ("`a\\b` EXISTS", "`a\\\\b` EXISTS"),
    ("a not exists", "`a` NOT EXISTS"),
    ('a =~ "x"', '`a` MATCHES "x"'),
    ('NOT a contains "x"', 'NOT (`a` CONTAINS "x")'),
    ("a = 1 AND b = 2 AND c = 3", "(`a` == 1) AND (`b` == 2) AND (`c` == 3)"),
    ("((a = 1) AND (b = 2)) AND (c = 3)", "(`a` == 1) AND (`b` == 2) AND (`c` == 3)"),
    ("(a = 1) AND ((b = 2) AND (c = 3))", "(`a` == 1) AND ((`b` == 2) AND (`c` == 3))"),
    ("a = 1 OR b = 2 AND NOT c = 3", "(`a` == 1) OR ((`b` == 2) AND (NOT (`c` == 3)))"),
    ("LAST(m):float > 1", "last(`m`):float > 1"),
    ("average(`acc`:floatSeries) > 0.8", "average(`acc`:floatSeries) > 0.8"),
]


@pytest.mark.parametrize(("text", "canonical"), RENDER)
def test_render(text: str, canonical: str) -> None:
    tree = parse(text)
    assert render(tree) == canonical
    assert parse(canonical) == tree


@given(expressions())
def test_render_parse_round_trip(tree: Expr) -> None:
    assert parse(render(tree)) == tree


def test_nodes_compare_by_value_not_position() -> None:
    a = Comparison(Attribute("x", "float", 0, 3, 4, 9), "==", Literal("1", False, 12, 13), 10, 11)
    b = Comparison(Attribute("x", "float"), "==", Literal("1", False))
    assert a == b and hash(a) == hash(b)
    assert a != Comparison(Attribute("x", "float"), "==", Literal("1", True))
    assert Exists(Attribute("x")) != Exists(Attribute("x"), negated=True)


def test_nodes_are_frozen_and_slotted() -> None:
    node = Attribute("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "y"  # type: ignore[misc]
    assert not hasattr(node, "__dict__")


def test_invalid_nodes_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown operator '='"):
        Comparison(Attribute("x"), "=", Literal("1"))
    with pytest.raises(ValueError, match="unknown aggregate 'sum'"):
        Aggregate("sum", Attribute("x"))


def test_match_all_only_alone() -> None:
    assert render(MatchAll()) == ""
    with pytest.raises(ValueError, match="cannot be part"):
        render(Not(MatchAll()))  # type: ignore[arg-type]


def test_bare_literal_that_cannot_be_bare_is_quoted() -> None:
    assert render(Comparison(Attribute("x"), "==", Literal("a b", quoted=False))) == '`x` == "a b"'
    assert render(Comparison(Attribute("x"), "==", Literal("and", quoted=False))) == '`x` == "and"'


def test_long_chains_render_without_recursion() -> None:
    leaf = Contains(Attribute("sys/tags"), Literal("t"))
    tree: Expr = leaf
    for _ in range(20_000):
        tree = Or(tree, leaf)
    text = render(tree)
    assert text.count(" OR ") == 20_000
    tree2: Expr = Matches(Attribute("a"), Literal("x"))
    for _ in range(5_000):
        tree2 = And(tree2, Matches(Attribute("a"), Literal("x")))
    # (== on dataclasses recurses, so compare texts: the pipeline itself never recurses on chains)
    assert render(parse(render(tree2))) == render(tree2)


def test_public_api() -> None:
    import importlib

    import despina.nql

    assert sorted(despina.nql.__all__) == [
        "NQLError", "NQLSemanticError", "NQLSyntaxError", "NqlError", "compile_query",
        "evaluate", "install_functions", "parse", "render",
    ]  # fmt: skip
    assert despina.nql.NQLError is despina.nql.NqlError
    for name in (
        "ast",
        "compile",
        "errors",
        "literals",
        "parser",
        "reference",
        "resolve",
        "tokens",
    ):
        module = importlib.import_module(f"despina.nql.{name}")
        assert module.__all__, name
        assert all(hasattr(module, public) for public in module.__all__), name
    assert callable(importlib.import_module("despina.nql.resolve").resolve)
