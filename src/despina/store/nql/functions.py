"""The SQL functions the embedded store's compiled NQL calls, registered on each of its
connections (``store/sqlite.py``): kept apart from the compiler so that opening a store does not
load the NQL parser."""

from __future__ import annotations

import sqlite3

from despina.userregex import InvalidPattern, compile_user_regex

__all__ = ["REGEXP_FUNCTION", "install_functions"]

REGEXP_FUNCTION = "nql_regexp"
"""The SQL function ``nql_regexp(pattern, text)`` that :func:`install_functions` registers."""


def _regexp(pattern: object, text: object) -> int:
    """``nql_regexp(pattern, text)``: 1 when the user pattern occurs in ``text`` (RE2 search,
    ``despina.userregex``: linear time, the GIL released while matching)."""
    if not isinstance(pattern, str) or not isinstance(text, str):
        return 0
    try:
        return 1 if compile_user_regex(pattern).search(text) else 0
    except InvalidPattern:  # the resolver rejects bad patterns; stay total for hand-written SQL
        return 0


def install_functions(conn: sqlite3.Connection) -> None:
    """Register the SQL functions compiled filters use (``nql_regexp``) on ``conn``.

    The embedded store does this for every connection it opens; call it on a connection opened
    some other way.
    """
    conn.create_function(REGEXP_FUNCTION, 2, _regexp, deterministic=True)
