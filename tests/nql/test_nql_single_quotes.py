"""Single-quoted strings (an extension of NQL): ``'sgd'`` means what ``"sgd"`` means.

Before, ``'sgd'`` lexed as a bare word of five characters (quotes included) and silently matched
nothing where ``"sgd"`` matched; now it is a string, with the same escapes plus ``\\'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nql_testdata import Attr, Dataset, RunSpec, open_dataset

from despina.nql import NQLSyntaxError, parse, render
from despina.nql.tokens import TokenType, tokenize

NOW = 1_700_000_000_000

RUNS = [
    RunSpec("r1", 1, attrs={"optimizer": Attr("string", "sgd"), "note": Attr("string", "it's")}),
    RunSpec("r2", 2, attrs={"optimizer": Attr("string", "adam"), "note": Attr("string", "x")}),
    RunSpec("r3", 3, attrs={"optimizer": Attr("string", "sgd"), "note": Attr("string", 'a"b')}),
]


@pytest.fixture(scope="module")
def dataset(nql_location: str, nql_home: Path) -> Iterator[Dataset]:
    data = open_dataset(nql_location, nql_home, RUNS)
    yield data
    data.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("`optimizer`:string == 'sgd'", {"r1", "r3"}),
        ("optimizer = 'sgd'", {"r1", "r3"}),
        ("optimizer != 'sgd'", {"r2"}),
        ("optimizer MATCHES '^ad'", {"r2"}),
        ("note == 'it\\'s'", {"r1"}),
        ("note == 'a\"b'", {"r3"}),
        ("note == 'a\\\"b'", {"r3"}),
        ("(optimizer == 'sgd') AND (note == \"it's\")", {"r1"}),
    ],
)
def test_single_quotes_match_like_double_quotes(
    dataset: Dataset, query: str, expected: set[str]
) -> None:
    assert dataset.select(query, NOW) == expected


def test_single_and_double_quotes_parse_to_the_same_tree() -> None:
    assert parse("a == 'sgd'") == parse('a == "sgd"')
    assert render(parse("a == 'it\\'s'")) == render(parse('a == "it\'s"'))


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("'sgd'", [(TokenType.STRING, "sgd")]),
        ("''", [(TokenType.STRING, "")]),
        ("'a\\'b'", [(TokenType.STRING, "a'b")]),
        ("'a\\\\b'", [(TokenType.STRING, "a\\b")]),
        ("'exp\\d'", [(TokenType.STRING, "exp\\d")]),
        ("'two words'", [(TokenType.STRING, "two words")]),
        ("don't", [(TokenType.WORD, "don't")]),
        ("a'b'", [(TokenType.WORD, "a'b'")]),
    ],
)
def test_tokens(text: str, tokens: list[tuple[TokenType, str]]) -> None:
    assert [(t.kind, t.text) for t in tokenize(text)[:-1]] == tokens


def test_spans_include_the_quotes() -> None:
    token = tokenize("x == 'sgd'")[2]
    assert (token.start, token.end) == (5, 10)


@pytest.mark.parametrize(("text", "position"), [("a == 'sgd", 5), ("a == 'sgd\\'", 5)])
def test_unterminated_single_quote_is_a_positioned_error(text: str, position: int) -> None:
    with pytest.raises(NQLSyntaxError) as info:
        tokenize(text)
    assert info.value.position == position
    assert info.value.reason == "unterminated string starting here, found end of query"


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8))
def test_render_round_trip_of_a_leading_quote(text: str) -> None:
    """A value starting with a quote is rendered quoted, so it parses back as itself."""
    from despina.nql import ast

    tree = ast.Comparison(ast.Attribute("a", None), "==", ast.Literal("'" + text, False))
    assert parse(render(tree)) == parse(render(parse(render(tree))))
    value = parse(render(tree))
    assert isinstance(value, ast.Comparison) and value.value.text == "'" + text
