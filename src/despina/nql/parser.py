"""Recursive-descent NQL parser (``spec/nql.md`` §2–§3): :func:`parse` text into an AST.

Precedence comes from the tables below, lowest first: ``OR``, ``AND``, prefix ``NOT``, then the
predicate. Errors name what was expected and what was found, at the position of the found token.
"""

from __future__ import annotations

from despina.nql import ast
from despina.nql.errors import NQLSyntaxError
from despina.nql.tokens import Token, TokenType, tokenize

__all__ = ["AND_OPS", "COMPARISON_OPS", "MAX_DEPTH", "OR_OPS", "parse"]

OR_OPS: dict[TokenType, type[ast.Or]] = {TokenType.OR: ast.Or}
AND_OPS: dict[TokenType, type[ast.And]] = {TokenType.AND: ast.And}
COMPARISON_OPS: dict[TokenType, str] = {
    TokenType.EQ: "==",
    TokenType.NE: "!=",
    TokenType.GT: ">",
    TokenType.GE: ">=",
    TokenType.LT: "<",
    TokenType.LE: "<=",
}
NEGATABLE_OPS: dict[TokenType, type[ast.Contains] | type[ast.Matches]] = {
    TokenType.CONTAINS: ast.Contains,
    TokenType.MATCHES: ast.Matches,
}
MAX_DEPTH = 200
"""Deepest nesting of parentheses accepted; deeper queries would exhaust the Python stack."""

_CLAUSE_START = frozenset({TokenType.LPAREN, TokenType.NOT, TokenType.NAME, TokenType.WORD})
_VALUE = frozenset({TokenType.STRING, TokenType.WORD})
_KEYWORD_KINDS = frozenset(
    {
        TokenType.AND,
        TokenType.OR,
        TokenType.NOT,
        TokenType.CONTAINS,
        TokenType.MATCHES,
        TokenType.EXISTS,
    }
)


def parse(text: str) -> ast.Node:
    """Parse NQL ``text``; an empty or blank query gives :class:`ast.MatchAll`.

    Raises:
        NQLSyntaxError: the text is not valid NQL; the message names the position, what was
            expected and what was found.
    """
    return _Parser(text).parse_query()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.tok = self.tokens[0]  # the current token (a plain attribute: read very often)
        self.depth = 0

    # -- helpers -----------------------------------------------------------------------------

    def advance(self) -> Token:
        token = self.tok
        if token.kind is not TokenType.EOF:
            self.pos += 1
            self.tok = self.tokens[self.pos]
        return token

    def peek_kind(self, ahead: int = 1) -> TokenType:
        index = min(self.pos + ahead, len(self.tokens) - 1)
        return self.tokens[index].kind

    def describe(self, token: Token) -> str:
        """How an error message names ``token`` ("found <this>")."""
        source = self.text[token.start : token.end]
        if token.kind is TokenType.EOF:
            return "end of query"
        if token.kind is TokenType.WORD:
            return f"word {source!r}"
        if token.kind is TokenType.STRING:
            return f"string {source}"
        if token.kind is TokenType.NAME:
            return f"name {source}"
        if token.kind in _KEYWORD_KINDS:
            return f"keyword {token.kind.value}"
        return repr(source)

    def fail(self, expected: str, token: Token | None = None) -> NQLSyntaxError:
        token = token or self.tok
        reason = f"{expected}, found {self.describe(token)}"
        return NQLSyntaxError(reason, self.text, token.start, max(token.end, token.start + 1))

    # -- grammar -----------------------------------------------------------------------------

    def parse_query(self) -> ast.Node:
        if self.tok.kind is TokenType.EOF:
            return ast.MatchAll()
        node = self.parse_or("")
        if self.tok.kind is TokenType.RPAREN:
            raise self.fail("expected AND, OR or end of query")
        if self.tok.kind is not TokenType.EOF:
            raise self.fail("expected AND, OR or ')'")
        return node

    # parse_or and parse_and loop instead of sharing a helper: each level of parentheses
    # costs three Python frames (or → and → unary), which bounds the stack at MAX_DEPTH.

    def parse_or(self, context: str) -> ast.Expr:
        """``and_expr (OR and_expr)*``, left-associative."""
        left = self.parse_and(context)
        while self.tok.kind in OR_OPS:
            op = self.advance()
            left = OR_OPS[op.kind](left, self.parse_and(f" after {op.kind.value}"))
        return left

    def parse_and(self, context: str) -> ast.Expr:
        """``unary (AND unary)*``, left-associative."""
        left = self.parse_unary(context)
        while self.tok.kind in AND_OPS:
            op = self.advance()
            left = AND_OPS[op.kind](left, self.parse_unary(f" after {op.kind.value}"))
        return left

    def parse_unary(self, context: str) -> ast.Expr:
        """``NOT* (group | predicate)``; ``context`` says what preceded, for error messages."""
        nots: list[Token] = []
        while self.tok.kind is TokenType.NOT:
            nots.append(self.advance())
            context = " after NOT"
        if self.tok.kind not in _CLAUSE_START:
            raise self.fail(f"expected a clause{context}")
        node: ast.Expr
        if self.tok.kind is TokenType.LPAREN:  # a group, inline to save a frame per level
            opening = self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise NQLSyntaxError(
                    f"parentheses nested more than {MAX_DEPTH} levels deep; simplify the query",
                    self.text,
                    opening.start,
                )
            node = self.parse_or("")
            if self.tok.kind is TokenType.EOF:
                raise self.fail(f"expected ')' to close '(' at position {opening.start}")
            if self.tok.kind is not TokenType.RPAREN:
                raise self.fail("expected AND, OR or ')'")
            self.advance()
            self.depth -= 1
        else:
            node = self.parse_predicate()
        for token in reversed(nots):
            node = ast.Not(node, start=token.start)
        return node

    def parse_predicate(self) -> ast.Predicate:
        operand = self.parse_operand()
        op = self.tok
        if op.kind in COMPARISON_OPS:
            self.advance()
            value = self.parse_value(repr(op.text))
            return ast.Comparison(operand, COMPARISON_OPS[op.kind], value, op.start, op.end)
        if op.kind is TokenType.TILDE:
            self.advance()
            return ast.Matches(operand, self.parse_value("'=~'"), False, op.start, op.end)
        negated = op.kind is TokenType.NOT
        if negated:
            self.advance()
            if self.tok.kind not in NEGATABLE_OPS and self.tok.kind is not TokenType.EXISTS:
                raise self.fail("expected CONTAINS, MATCHES or EXISTS after NOT")
        keyword = self.tok
        if keyword.kind is TokenType.EXISTS:
            self.advance()
            return ast.Exists(operand, negated, op.start, keyword.end)
        if keyword.kind in NEGATABLE_OPS:
            self.advance()
            value = self.parse_value(keyword.kind.value)
            return NEGATABLE_OPS[keyword.kind](operand, value, negated, op.start, keyword.end)
        raise self.fail("expected an operator (==, !=, <, <=, >, >=, CONTAINS, MATCHES or EXISTS)")

    def parse_operand(self) -> ast.Operand:
        token = self.tok
        if (
            token.kind is TokenType.WORD
            and token.text.lower() in ast.AGGREGATES
            and self.peek_kind() is TokenType.LPAREN
        ):
            self.advance()
            opening = self.advance()
            attribute = self.parse_attribute()
            if self.tok.kind is not TokenType.RPAREN:
                raise self.fail(f"expected ')' to close '(' at position {opening.start}")
            self.advance()
            outer, type_start, type_end = self.parse_type()
            return ast.Aggregate(
                token.text.lower(), attribute, outer, token.start, token.end, type_start, type_end
            )
        return self.parse_attribute()

    def parse_attribute(self) -> ast.Attribute:
        token = self.tok
        if token.kind not in (TokenType.NAME, TokenType.WORD):
            raise self.fail("expected an attribute name")
        self.advance()
        type_name, type_start, type_end = self.parse_type()
        return ast.Attribute(token.text, type_name, token.start, token.end, type_start, type_end)

    def parse_type(self) -> tuple[str | None, int, int]:
        """An optional ``: type`` suffix: (type name, start, end), or (None, -1, -1)."""
        if self.tok.kind is not TokenType.COLON:
            return None, -1, -1
        self.advance()
        token = self.tok
        if token.kind is not TokenType.WORD:
            raise self.fail("expected a type name after ':'")
        self.advance()
        return token.text, token.start, token.end

    def parse_value(self, after: str) -> ast.Literal:
        token = self.tok
        if token.kind not in _VALUE:
            raise self.fail(f"expected a value after {after}")
        self.advance()
        return ast.Literal(token.text, token.kind is TokenType.STRING, token.start, token.end)
