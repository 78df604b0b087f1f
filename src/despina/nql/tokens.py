"""NQL tokens (``spec/nql.md`` §1): the token kinds and :func:`tokenize`.

Strings and backquoted names are unescaped here: ``Token.text`` holds the value, while
``start``/``end`` still delimit the source text (quotes included).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import NoReturn

from despina.nql.errors import NQLSyntaxError

__all__ = ["KEYWORDS", "OPERATOR_TOKENS", "WORD_STOP_CHARS", "Token", "TokenType", "tokenize"]


class TokenType(enum.Enum):
    """The kind of a token."""

    LPAREN = "("
    RPAREN = ")"
    COLON = ":"
    EQ = "=="  # also "="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    TILDE = "=~"  # Extension: synonym of MATCHES
    NAME = "name"  # `backquoted`
    STRING = "string"  # "double quoted"
    WORD = "word"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    CONTAINS = "CONTAINS"
    MATCHES = "MATCHES"
    EXISTS = "EXISTS"
    EOF = "end of query"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``text`` is the value (unescaped for strings and names), ``start``/``end`` the
    0-based code-point span in the query, ``line``/``col`` the 1-based position of ``start``."""

    kind: TokenType
    text: str
    start: int
    end: int
    line: int
    col: int


KEYWORDS: dict[str, TokenType] = {
    kind.value: kind
    for kind in (
        TokenType.AND,
        TokenType.OR,
        TokenType.NOT,
        TokenType.CONTAINS,
        TokenType.MATCHES,
        TokenType.EXISTS,
    )
}
"""Keywords by upper-case spelling; a word equal to one of them (in any case) is the keyword."""

OPERATOR_TOKENS: dict[str, TokenType] = {
    "==": TokenType.EQ,
    "=~": TokenType.TILDE,
    "!=": TokenType.NE,
    ">=": TokenType.GE,
    "<=": TokenType.LE,
    "=": TokenType.EQ,
    ">": TokenType.GT,
    "<": TokenType.LT,
}

WORD_STOP_CHARS = frozenset(' \t\r\n()":`=!<>')
"""Characters that end a bare word (besides the end of the query)."""

# One alternation, tried at each position; the operator alternatives are longest first.
_TOKEN_RE = re.compile(
    r"""
      (?P<ws>[ \t\r\n]+)
    | (?P<op>==|=~|!=|>=|<=|=|>|<)
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<colon>:)
    | (?P<name>`(?:[^`\\]|\\.)*`)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<word>[^ \t\r\n()":`=!<>]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_STRING_ESCAPE_RE = re.compile(r'\\(["\\])', re.DOTALL)
_NAME_ESCAPE_RE = re.compile(r"\\([`\\])", re.DOTALL)
_PUNCT = {"lparen": TokenType.LPAREN, "rparen": TokenType.RPAREN, "colon": TokenType.COLON}


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with one ``EOF`` token.

    Raises:
        NQLSyntaxError: an unterminated string or backquoted name, or a lone ``!``.
    """
    tokens: list[Token] = []
    pos, line, line_start, size = 0, 1, 0, len(text)
    while pos < size:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            _fail_at(text, pos)
        group = m.lastgroup
        raw = m.group()
        end = m.end()
        if group != "ws":
            if group == "word":
                kind = KEYWORDS.get(raw.upper(), TokenType.WORD)
                value = raw
            elif group == "op":
                kind, value = OPERATOR_TOKENS[raw], raw
            elif group == "string":
                kind, value = TokenType.STRING, _STRING_ESCAPE_RE.sub(r"\1", raw[1:-1])
            elif group == "name":
                kind, value = TokenType.NAME, _NAME_ESCAPE_RE.sub(r"\1", raw[1:-1])
            else:
                kind, value = _PUNCT[group or ""], raw
            tokens.append(Token(kind, value, pos, end, line, pos - line_start + 1))
        newlines = raw.count("\n")
        if newlines:
            line += newlines
            line_start = pos + raw.rfind("\n") + 1
        pos = end
    tokens.append(Token(TokenType.EOF, "", size, size, line, size - line_start + 1))
    return tokens


def _fail_at(text: str, pos: int) -> NoReturn:
    """Raise the syntax error for the character at ``pos`` that starts no token."""
    ch = text[pos]
    if ch == '"':
        reason = "unterminated string starting here, found end of query"
    elif ch == "`":
        reason = "unterminated backquoted name starting here, found end of query"
    else:  # only a lone "!" can get here: every other character starts some token
        reason = f"unexpected character {ch!r}, expected an operator"
    raise NQLSyntaxError(reason, text, pos, pos + 1)
