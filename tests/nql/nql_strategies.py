"""Hypothesis strategies for NQL syntax trees."""

from __future__ import annotations

from hypothesis import strategies as st

from despina.nql import ast
from despina.nql.tokens import KEYWORDS, WORD_STOP_CHARS

__all__ = ["any_text", "bare_words", "expressions", "literals", "operands", "predicates"]

any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
"""Any string without surrogates (they cannot be encoded, so no query holds them)."""

bare_words = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(WORD_STOP_CHARS)),
    min_size=1,
    max_size=8,
).filter(lambda w: w.upper() not in KEYWORDS and not w.startswith("'"))
"""Text that lexes as one bare word (not a keyword; a leading ' starts a string)."""

type_names = st.one_of(
    st.sampled_from(["float", "int", "string", "floatSeries", "stringSet", "FLOAT", "file"]),
    bare_words,
)

literals = st.one_of(
    st.builds(ast.Literal, any_text, st.just(True)),
    st.builds(ast.Literal, bare_words, st.just(False)),
)
attributes = st.builds(ast.Attribute, any_text, st.none() | type_names)
operands: st.SearchStrategy[ast.Operand] = st.one_of(
    attributes,
    st.builds(ast.Aggregate, st.sampled_from(ast.AGGREGATES), attributes, st.none() | type_names),
)


def predicates(
    operand: st.SearchStrategy[ast.Operand] = operands,
    literal: st.SearchStrategy[ast.Literal] = literals,
) -> st.SearchStrategy[ast.Predicate]:
    """Any predicate over ``operand`` and ``literal``."""
    return st.one_of(
        st.builds(ast.Comparison, operand, st.sampled_from(ast.COMPARISON_OPERATORS), literal),
        st.builds(ast.Contains, operand, literal, st.booleans()),
        st.builds(ast.Matches, operand, literal, st.booleans()),
        st.builds(ast.Exists, operand, st.booleans()),
    )


def expressions(
    leaves: st.SearchStrategy[ast.Expr] | None = None, max_leaves: int = 8
) -> st.SearchStrategy[ast.Expr]:
    """Trees of ``NOT``/``AND``/``OR`` over ``leaves`` (any predicate by default)."""
    base: st.SearchStrategy[ast.Expr] = leaves if leaves is not None else predicates()

    def extend(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
        return st.one_of(
            st.builds(ast.Not, children),
            st.builds(ast.And, children, children),
            st.builds(ast.Or, children, children),
        )

    return st.recursive(base, extend, max_leaves=max_leaves)
