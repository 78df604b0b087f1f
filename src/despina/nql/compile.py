"""Compilation of NQL to SQL lives with the store (:mod:`despina.store.nql`), one dialect per
database; this module keeps the names older code imports.

:func:`compile_query` gives the embedded store's dialect; code that holds a store connection
calls :func:`despina.store.nql.compile_filter`, which picks the connection's dialect.
"""

from __future__ import annotations

from despina.store.nql import REGEXP_FUNCTION, compile_filter, install_functions
from despina.store.nql import compile_sqlite as compile_query

__all__ = ["REGEXP_FUNCTION", "compile_filter", "compile_query", "install_functions"]
