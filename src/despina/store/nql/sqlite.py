"""The SQLite dialect of NQL: the embedded store's spelling of the shared plan.

* truth values are ``1``/``0``; attribute tests name the covering index (``INDEXED BY
  attributes_for_filters``): SQLite's planner would otherwise pick the ``(run_id, path)`` key
  for a scan of one path;
* substrings: ``instr``; an artifact's hash: ``json_extract(a.text, '$.hash')``;
* regular expressions: ``nql_regexp(pattern, text)``, an SQL function that runs RE2 in this
  process (``despina.userregex``), registered on every connection of the embedded store
  (:func:`install_functions`). A pattern anchored on a literal prefix (``^run-1…``) is narrowed
  by a plain ``substr`` comparison first.

SQLite compares an integer with a float exactly, and keeps ints as ints and floats as floats in
the untyped ``attributes.num``, so comparisons need no help here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from despina.store.nql.compiler import FILTER_INDEX, FilterCompiler, anchored_prefix
from despina.store.nql.functions import REGEXP_FUNCTION, install_functions

__all__ = ["REGEXP_FUNCTION", "SqliteFilterCompiler", "install_functions"]

_AGGREGATE_SQL = {
    "min": "a.fmin",
    "max": "a.fmax",
    "average": "(a.fsum / a.fcount)",
    # Population variance of the finite values; rounding can dip below zero, hence MAX.
    "variance": "MAX(0.0, a.fsumsq / a.fcount - (a.fsum / a.fcount) * (a.fsum / a.fcount))",
}


class SqliteFilterCompiler(FilterCompiler):
    """NQL to SQLite SQL (see the module docstring)."""

    TRUE: ClassVar[str] = "1"
    FALSE: ClassVar[str] = "0"
    source: ClassVar[str] = f"attributes a INDEXED BY {FILTER_INDEX}"

    def member_runs_sql(self) -> str:
        return (
            "SELECT a.run_id FROM set_members m CROSS JOIN attributes a ON a.id = m.attr_id "
            "WHERE m.value = ? AND a.path = ? AND a.type = 'string_set'"
        )

    def artifact_hash_sql(self) -> str:
        return "json_extract(a.text, '$.hash')"

    def aggregate_sql(self, field: str) -> str:
        return _AGGREGATE_SQL[field]

    def contains_sql(self, column: str) -> str:
        return f"instr({column}, ?) > 0"

    def matches_sql(self, column: str, pattern: Any) -> str:
        prefix = anchored_prefix(pattern) if isinstance(pattern, str) else ""
        if prefix:  # a plain comparison rules out most texts before Python sees them
            self.params += [prefix, pattern]
            return f"(substr({column}, 1, {len(prefix)}) = ? AND {REGEXP_FUNCTION}(?, {column}))"
        self.params.append(pattern)
        return f"{REGEXP_FUNCTION}(?, {column})"
