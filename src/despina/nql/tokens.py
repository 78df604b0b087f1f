"""NQL tokens (``spec/nql.md`` §1): the token kinds and :func:`tokenize`.

Strings and backquoted names are unescaped here: ``Token.text`` holds the value, while
``start``/``end`` still delimit the source text (quotes included).

**Extension**: a token starting with a single quote is a string too (``'sgd'`` ≡ ``"sgd"``, with
``\'`` for a quote inside); the spec has only double-quoted strings, so ``'sgd'`` used to be the
bare word of five characters and silently matched nothing. A quote inside a word (``don't``)
still belongs to the word.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple, NoReturn

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
    STRING = "string"  # "double quoted" (or 'single quoted': extension)
    WORD = "word"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    CONTAINS = "CONTAINS"
    MATCHES = "MATCHES"
    EXISTS = "EXISTS"
    EOF = "end of query"

    # Members are singletons: identity hashing is exact, and a C slot instead of Enum's
    # Python-level __hash__ (the parser looks kinds up in dicts and sets all the time).
    __hash__ = object.__hash__


class Token(NamedTuple):
    """One token: ``text`` is the value (unescaped for strings and names), ``start``/``end`` the
    0-based code-point span in the query, ``line``/``col`` the 1-based position of ``start``.

    A named tuple rather than a frozen dataclass: a query makes dozens and creating a tuple is
    several times cheaper.
    """

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

# One alternation, tried at each position after skipping whitespace; the operator alternatives
# are longest first. ``end`` matches trailing whitespace; ``bad`` any character no token starts
# with (a lone "!", an unterminated string or name).
_TOKEN_RE = re.compile(
    r"""
    [ \t\r\n]*
    (?:
      (?P<word>[^ \t\r\n()":`=!<>'][^ \t\r\n()":`=!<>]*)
    | (?P<op>==|=~|!=|>=|<=|=|>|<)
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<colon>:)
    | (?P<name>`(?:[^`\\]|\\.)*`)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<single>'(?:[^'\\]|\\.)*')
    | (?P<end>\Z)
    | (?P<bad>.)
    )
    """,
    re.VERBOSE | re.DOTALL,
)
_STRING_ESCAPE_RE = re.compile(r'\\(["\\])', re.DOTALL)
_SINGLE_ESCAPE_RE = re.compile(r"""\\(['"\\])""", re.DOTALL)
_NAME_ESCAPE_RE = re.compile(r"\\([`\\])", re.DOTALL)
_PUNCT = {"lparen": TokenType.LPAREN, "rparen": TokenType.RPAREN, "colon": TokenType.COLON}


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with one ``EOF`` token.

    Raises:
        NQLSyntaxError: an unterminated string or backquoted name, or a lone ``!``.
    """
    tokens: list[Token] = []
    append = tokens.append
    match = _TOKEN_RE.match
    multiline = "\n" in text
    pos, line, line_start = 0, 1, 0
    while True:
        m = match(text, pos)
        assert m is not None  # "end" or "bad" always match
        group = m.lastgroup or ""
        start, end = m.span(group)
        if multiline:
            newlines = text.count("\n", pos, start)
            if newlines:
                line += newlines
                line_start = text.rindex("\n", pos, start) + 1
        col = start - line_start + 1
        if group == "word":
            raw = m.group(group)
            append(Token(KEYWORDS.get(raw.upper(), TokenType.WORD), raw, start, end, line, col))
        elif group == "op":
            raw = m.group(group)
            append(Token(OPERATOR_TOKENS[raw], raw, start, end, line, col))
        elif group == "string":
            value = text[start + 1 : end - 1]
            if "\\" in value:
                value = _STRING_ESCAPE_RE.sub(r"\1", value)
            append(Token(TokenType.STRING, value, start, end, line, col))
        elif group == "single":
            value = text[start + 1 : end - 1]
            if "\\" in value:
                value = _SINGLE_ESCAPE_RE.sub(r"\1", value)
            append(Token(TokenType.STRING, value, start, end, line, col))
        elif group == "name":
            value = text[start + 1 : end - 1]
            if "\\" in value:
                value = _NAME_ESCAPE_RE.sub(r"\1", value)
            append(Token(TokenType.NAME, value, start, end, line, col))
        elif group == "end":
            append(Token(TokenType.EOF, "", start, start, line, col))
            return tokens
        elif group == "bad":
            _fail_at(text, start)
        else:
            append(Token(_PUNCT[group], text[start], start, end, line, col))
        if multiline and group in ("string", "single", "name"):  # quoted text may span lines
            newlines = text.count("\n", start, end)
            if newlines:
                line += newlines
                line_start = text.rindex("\n", start, end) + 1
        pos = end


def _fail_at(text: str, pos: int) -> NoReturn:
    """Raise the syntax error for the character at ``pos`` that starts no token."""
    ch = text[pos]
    if ch in "\"'":
        reason = "unterminated string starting here, found end of query"
    elif ch == "`":
        reason = "unterminated backquoted name starting here, found end of query"
    else:  # only a lone "!" can get here: every other character starts some token
        reason = f"unexpected character {ch!r}, expected an operator"
    raise NQLSyntaxError(reason, text, pos, pos + 1)
