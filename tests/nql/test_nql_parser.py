"""Parser: trees, precedence (``spec/nql.md`` §2–§3) and the exact syntax errors of §9.1."""

from __future__ import annotations

import pytest

from despina.errors import InvalidQuery, NqlError
from despina.nql import NQLSyntaxError, parse
from despina.nql.ast import (
    Aggregate,
    And,
    Attribute,
    Comparison,
    Contains,
    Exists,
    Literal,
    MatchAll,
    Matches,
    Node,
    Not,
    Or,
)
from despina.nql.parser import MAX_DEPTH


def cmp(
    name: str, op: str, value: str, *, type: str | None = None, quoted: bool = False
) -> Comparison:
    return Comparison(Attribute(name, type), op, Literal(value, quoted))


A, B, C = (cmp(n, "==", "1") for n in "abc")

TREES: list[tuple[str, Node]] = [
    ("", MatchAll()),
    ("   \n\t", MatchAll()),
    ("`a` = 1", A),
    ("a == 1", A),
    ("(a = 1)", A),
    ("((((a = 1))))", A),
    ('`a` = "1"', cmp("a", "==", "1", quoted=True)),
    ("a != x", cmp("a", "!=", "x")),
    ("a:float >= 0.85", cmp("a", ">=", "0.85", type="float")),
    ("backbone: string = VGG", cmp("backbone", "==", "VGG", type="string")),
    ("backbone :string = VGG", cmp("backbone", "==", "VGG", type="string")),
    ("a = 1 OR b = 1 AND c = 1", Or(A, And(B, C))),
    ("a = 1 AND b = 1 OR c = 1", Or(And(A, B), C)),
    ("a = 1 AND b = 1 AND c = 1", And(And(A, B), C)),
    ("(a = 1) AND ((b = 1) AND (c = 1))", And(A, And(B, C))),
    ("a = 1 OR b = 1 OR c = 1", Or(Or(A, B), C)),
    (
        "x = 1 AND NOT y <= 5 OR z = 1",
        Or(And(cmp("x", "==", "1"), Not(cmp("y", "<=", "5"))), cmp("z", "==", "1")),
    ),
    ("NOT NOT a = 1", Not(Not(A))),
    ("NOT (a = 1 OR b = 1)", Not(Or(A, B))),
    (
        "(A = 1 OR B = 1 AND (`sys/trashed`:bool = false))",
        Or(
            cmp("A", "==", "1"),
            And(cmp("B", "==", "1"), cmp("sys/trashed", "==", "false", type="bool")),
        ),
    ),
    ('a CONTAINS "x"', Contains(Attribute("a"), Literal("x"))),
    ('a NOT CONTAINS "x"', Contains(Attribute("a"), Literal("x"), negated=True)),
    ('NOT a CONTAINS "x"', Not(Contains(Attribute("a"), Literal("x")))),
    ('a not contains "x"', Contains(Attribute("a"), Literal("x"), negated=True)),
    ('a MATCHES "x"', Matches(Attribute("a"), Literal("x"))),
    ('a =~ "x"', Matches(Attribute("a"), Literal("x"))),
    ('a NOT MATCHES "x"', Matches(Attribute("a"), Literal("x"), negated=True)),
    ("a EXISTS", Exists(Attribute("a"))),
    ("`sys/tags` NOT EXISTS", Exists(Attribute("sys/tags"), negated=True)),
    (
        "average(`accuracy`:floatSeries) > 0.8",
        Comparison(
            Aggregate("average", Attribute("accuracy", "floatSeries")), ">", Literal("0.8", False)
        ),
    ),
    (
        "LAST(`metrics/acc`):float >= 0.85",
        Comparison(
            Aggregate("last", Attribute("metrics/acc"), "float"), ">=", Literal("0.85", False)
        ),
    ),
    (
        "variance ( m ) : float > 1",
        Comparison(Aggregate("variance", Attribute("m"), "float"), ">", Literal("1", False)),
    ),
    ("last = 1", cmp("last", "==", "1")),  # an aggregate name not followed by "(" is a word
    ("a = last", cmp("a", "==", "last")),
    ("`last`:float = 1", cmp("last", "==", "1", type="float")),
]


@pytest.mark.parametrize(("text", "tree"), TREES)
def test_parse_tree(text: str, tree: Node) -> None:
    assert parse(text) == tree


def test_positions_are_kept_but_not_compared() -> None:
    node = parse('last(`m`:floatSeries):float NOT MATCHES "x"')
    assert isinstance(node, Matches)
    operand = node.operand
    assert isinstance(operand, Aggregate)
    assert (operand.start, operand.end) == (0, 4)
    assert (operand.attribute.start, operand.attribute.end) == (5, 8)
    assert (operand.attribute.type_start, operand.attribute.type_end) == (9, 20)
    assert (operand.type_start, operand.type_end) == (22, 27)
    assert (node.op_start, node.op_end) == (28, 39)
    assert (node.value.start, node.value.end) == (40, 43)
    assert node == Matches(
        Aggregate("last", Attribute("m", "floatSeries"), "float"), Literal("x"), negated=True
    )


# (query, position, line, column, reason) — the §9.1 table first, then more.
ERRORS = [
    ("`a` >=", 6, 1, 7, "expected a value after '>=', found end of query"),
    ("(`a` = 1", 8, 1, 9, "expected ')' to close '(' at position 0, found end of query"),
    ("`a` = 1 `b` = 2", 8, 1, 9, "expected AND, OR or ')', found name `b`"),
    ("`a` ! 1", 4, 1, 5, "unexpected character '!', expected an operator"),
    ('`a` = "abc', 6, 1, 7, "unterminated string starting here, found end of query"),
    ("`a = 1", 0, 1, 1, "unterminated backquoted name starting here, found end of query"),
    ("AND `a` = 1", 0, 1, 1, "expected a clause, found keyword AND"),
    ("`a` CONTAINS", 12, 1, 13, "expected a value after CONTAINS, found end of query"),
    ("NOT", 3, 1, 4, "expected a clause after NOT, found end of query"),
    ("()", 1, 1, 2, "expected a clause, found ')'"),
    ("`a` NOT = 1", 8, 1, 9, "expected CONTAINS, MATCHES or EXISTS after NOT, found '='"),
    ("`a` = 1 AND", 11, 1, 12, "expected a clause after AND, found end of query"),
    ("`a` = 1 or or", 11, 1, 12, "expected a clause after OR, found keyword OR"),
    ("`a` = 1)", 7, 1, 8, "expected AND, OR or end of query, found ')'"),
    ("`a` = AND", 6, 1, 7, "expected a value after '=', found keyword AND"),
    ("`a` =~ (", 7, 1, 8, "expected a value after '=~', found '('"),
    ("`a` NOT MATCHES", 15, 1, 16, "expected a value after MATCHES, found end of query"),
    ("`a`: = 1", 5, 1, 6, "expected a type name after ':', found '='"),
    ('`a`:"float" = 1', 4, 1, 5, "expected a type name after ':', found string \"float\""),
    ("last(`x` = 1", 9, 1, 10, "expected ')' to close '(' at position 4, found '='"),
    ("last() > 1", 5, 1, 6, "expected an attribute name, found ')'"),
    ('"a" = 1', 0, 1, 1, 'expected a clause, found string "a"'),
    (
        "free text",
        5,
        1,
        6,
        "expected an operator (==, !=, <, <=, >, >=, CONTAINS, MATCHES or "
        "EXISTS), found word 'text'",
    ),
    ("`a` = 1 AND\n  `b` >", 19, 2, 8, "expected a value after '>', found end of query"),
    ("(`a` = 1\n\tOR `b` = 2 `c`", 21, 2, 13, "expected AND, OR or ')', found name `c`"),
]


@pytest.mark.parametrize(("text", "position", "line", "col", "reason"), ERRORS)
def test_syntax_errors(text: str, position: int, line: int, col: int, reason: str) -> None:
    with pytest.raises(NQLSyntaxError) as info:
        parse(text)
    err = info.value
    assert (err.position, err.start, err.line, err.col, err.column) == (
        position,
        position,
        line,
        col,
        col,
    )
    assert err.reason == err.description == reason
    text_line = text.split("\n")[line - 1]
    pad = "".join("\t" if ch == "\t" else " " for ch in text_line[: col - 1])
    assert str(err) == (
        f"NQL syntax error at position {position} (line {line}, column {col}): {reason}\n"
        f"{text_line}\n{pad}^"
    )
    assert isinstance(err, NqlError) and isinstance(err, InvalidQuery)
    assert isinstance(err, ValueError) and err.query == text and err.title == "Syntax error"


def test_exact_message_layout() -> None:
    with pytest.raises(NqlError) as info:
        parse("`a` >=")
    assert str(info.value) == (
        "NQL syntax error at position 6 (line 1, column 7): expected a value after '>=', "
        "found end of query\n`a` >=\n      ^"
    )


def test_keywords_must_be_quoted_to_be_names_or_values() -> None:
    assert parse('`not` = "and"') == cmp("not", "==", "and", quoted=True)
    with pytest.raises(NQLSyntaxError):
        parse("not = 1")


def test_nesting_limit() -> None:
    deep = "(" * MAX_DEPTH + "a = 1" + ")" * MAX_DEPTH
    assert parse(deep) == A
    with pytest.raises(NQLSyntaxError, match="nested more than"):
        parse("(" + deep + ")")


def test_long_flat_chains_parse_without_recursion() -> None:
    text = " OR ".join(f'(`sys/id`:string = "K-{i}")' for i in range(5000))
    tree = parse(text)
    depth = 0
    while isinstance(tree, Or):
        tree, depth = tree.left, depth + 1
    assert depth == 4999
