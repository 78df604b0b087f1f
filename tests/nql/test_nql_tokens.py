"""Tokenizer: token kinds, values, positions (``spec/nql.md`` §1)."""

from __future__ import annotations

import pytest

from despina.nql import NQLSyntaxError
from despina.nql.tokens import Token, TokenType, tokenize

T = TokenType


def kinds(text: str) -> list[tuple[TokenType, str]]:
    return [(tok.kind, tok.text) for tok in tokenize(text)[:-1]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("  \t\r\n ", []),
        ("a==b", [(T.WORD, "a"), (T.EQ, "=="), (T.WORD, "b")]),
        ("a=b", [(T.WORD, "a"), (T.EQ, "="), (T.WORD, "b")]),
        ("a=~b", [(T.WORD, "a"), (T.TILDE, "=~"), (T.WORD, "b")]),
        ("a = ~b", [(T.WORD, "a"), (T.EQ, "="), (T.WORD, "~b")]),
        ("a!=b", [(T.WORD, "a"), (T.NE, "!="), (T.WORD, "b")]),
        (
            "a>=b<=c>d<e",
            [
                (T.WORD, "a"),
                (T.GE, ">="),
                (T.WORD, "b"),
                (T.LE, "<="),
                (T.WORD, "c"),
                (T.GT, ">"),
                (T.WORD, "d"),
                (T.LT, "<"),
                (T.WORD, "e"),
            ],
        ),
        (
            "(a:float)",
            [(T.LPAREN, "("), (T.WORD, "a"), (T.COLON, ":"), (T.WORD, "float"), (T.RPAREN, ")")],
        ),
        ("backbone : string", [(T.WORD, "backbone"), (T.COLON, ":"), (T.WORD, "string")]),
        ("sys/creation_time", [(T.WORD, "sys/creation_time")]),
        (
            "-2h 50MB 0.85 True 9a113b don't 'x'",
            [
                (T.WORD, "-2h"),
                (T.WORD, "50MB"),
                (T.WORD, "0.85"),
                (T.WORD, "True"),
                (T.WORD, "9a113b"),
                (T.WORD, "don't"),
                (T.STRING, "x"),  # extension: single-quoted strings
            ],
        ),
        (
            "and Or nOT contains MATCHES exists",
            [
                (T.AND, "and"),
                (T.OR, "Or"),
                (T.NOT, "nOT"),
                (T.CONTAINS, "contains"),
                (T.MATCHES, "MATCHES"),
                (T.EXISTS, "exists"),
            ],
        ),
        ("ANDROID notable", [(T.WORD, "ANDROID"), (T.WORD, "notable")]),
        ('"and"', [(T.STRING, "and")]),
        ("`not`", [(T.NAME, "not")]),
        ('"he said \\"hi\\" \\\\ ok"', [(T.STRING, 'he said "hi" \\ ok')]),
        ('"exp\\d"', [(T.STRING, "exp\\d")]),
        ('"exp\\\\d"', [(T.STRING, "exp\\d")]),
        ('"a\\nb"', [(T.STRING, "a\\nb")]),
        ('"multi\nline"', [(T.STRING, "multi\nline")]),
        ("`a\\`b`", [(T.NAME, "a`b")]),
        ("`a\\\\b`", [(T.NAME, "a\\b")]),
        ("`a\\b`", [(T.NAME, "a\\b")]),
        ("`metrics/loss (val)`", [(T.NAME, "metrics/loss (val)")]),
        ('x"y"', [(T.WORD, "x"), (T.STRING, "y")]),
        ("last(`m`)", [(T.WORD, "last"), (T.LPAREN, "("), (T.NAME, "m"), (T.RPAREN, ")")]),
        ("naïve 日本", [(T.WORD, "naïve"), (T.WORD, "日本")]),
        ("a\u00a0b", [(T.WORD, "a\u00a0b")]),  # only space, tab, CR and LF separate tokens
    ],
)
def test_token_kinds_and_values(text: str, expected: list[tuple[TokenType, str]]) -> None:
    assert kinds(text) == expected


def test_positions_lines_and_columns() -> None:
    tokens = tokenize('`a` = 1 AND\n  "x\ny" OR\tb')
    assert tokens == [
        Token(T.NAME, "a", 0, 3, 1, 1),
        Token(T.EQ, "=", 4, 5, 1, 5),
        Token(T.WORD, "1", 6, 7, 1, 7),
        Token(T.AND, "AND", 8, 11, 1, 9),
        Token(T.STRING, "x\ny", 14, 19, 2, 3),
        Token(T.OR, "OR", 20, 22, 3, 4),
        Token(T.WORD, "b", 23, 24, 3, 7),
        Token(T.EOF, "", 24, 24, 3, 8),
    ]


def test_positions_count_code_points() -> None:
    tokens = tokenize("`日本` = 1")
    assert [(t.start, t.end) for t in tokens] == [(0, 4), (5, 6), (7, 8), (8, 8)]


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("`a` ! 1", 4, "unexpected character '!', expected an operator"),
        ("a!b", 1, "unexpected character '!', expected an operator"),
        ('`a` = "abc', 6, "unterminated string starting here, found end of query"),
        ('`a` = "abc\\"', 6, "unterminated string starting here, found end of query"),
        ("`a = 1", 0, "unterminated backquoted name starting here, found end of query"),
    ],
)
def test_lexical_errors(text: str, position: int, reason: str) -> None:
    with pytest.raises(NQLSyntaxError) as info:
        tokenize(text)
    assert info.value.position == position
    assert info.value.reason == reason
