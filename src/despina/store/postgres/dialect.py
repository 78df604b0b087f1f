"""The PostgreSQL dialect of the store's shared SQL.

The store's statements are written once, in the SQL both databases understand, with SQLite's
``?`` placeholders (see ``store/sql/``). :func:`translate` turns one into PostgreSQL's form, once
per statement text (cached):

* ``?`` placeholders become ``%s``, and a literal ``%`` becomes ``%%`` (psycopg's escaping);
* ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``; ``INSERT OR REPLACE`` and
  ``REPLACE`` become ``INSERT ... ON CONFLICT (<the table's key>) DO UPDATE`` of every column
  given (the keys are listed in :data:`CONFLICT_KEYS`);
* ``x IN (SELECT value FROM json_each(?))`` (a list passed as one JSON parameter) becomes
  ``x = ANY(%s)``, and the wrapper binds the decoded list as an array;
* ``ifnull`` becomes ``COALESCE``, two-argument ``max``/``min`` become ``GREATEST``/``LEAST``,
  ``group_concat(x[, sep])`` becomes ``string_agg((x)::text, sep)``, ``char(n)`` becomes
  ``chr(n)``, ``CAST(... AS REAL)`` casts to ``double precision``, ``LIKE`` becomes ``ILIKE``
  (SQLite's ``LIKE`` ignores ASCII case), ``x IS ?`` becomes ``IS NOT DISTINCT FROM``;
* SQLite's planner hints (``INDEXED BY name``, ``NOT INDEXED``) are dropped;
* an ``INSERT`` into a table with a generated ``id`` returns it (``RETURNING id``) so that
  ``cursor.lastrowid`` works as with ``sqlite3``.

Statements that cannot be said the same way on both (the NQL filter plan, a few reads that lean
on SQLite's ``json_each`` rows) branch on :attr:`despina.store.contract.Store.dialect`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["CONFLICT_KEYS", "Translated", "translate"]

CONFLICT_KEYS: dict[str, tuple[str, ...]] = {
    "projects": ("workspace", "name"),
    "runs": ("project_id", "run_id"),
    "attributes": ("run_id", "path"),
    "chunks": ("id",),
    "previews": ("attr_id", "step"),
    "points": ("attr_id", "step"),
    "blobs": ("project_id", "path"),
    "api_keys": ("key_id",),
    "refresh_tokens": ("token_sha256",),
    "ingest_requests": ("request_id",),
    "set_members": ("value", "attr_id"),
    "blob_url_uses": ("signature",),
    "blob_uploads": ("upload_id",),
    "ui_sessions": ("session_sha256",),
    "server_secrets": ("name",),
    "saved_views": ("project_id", "name"),
    "chart_summaries": ("attr_id",),
    "attribute_packs": ("run_id",),
}
"""The conflict target of ``INSERT OR REPLACE`` per table (its primary or unique key)."""

_RETURNS_ID = frozenset({"projects", "runs", "attributes", "points"})
"""Tables whose ``id`` PostgreSQL generates: an ``INSERT`` returns it for ``lastrowid``."""


@dataclass(frozen=True)
class Translated:
    """A statement in PostgreSQL's form.

    ``json_lists`` are the indexes of parameters given as JSON text of a list that bind as an
    array; ``returns_id`` says that the statement ends in ``RETURNING id`` added for
    ``lastrowid``; ``binary`` asks for binary results (bytea columns: no hex round trip).
    """

    sql: str
    json_lists: tuple[int, ...] = ()
    returns_id: bool = False
    binary: bool = False


_STRING = re.compile(r"'(?:[^']|'')*'")
_INSERT_OR = re.compile(
    r"^\s*(?:INSERT\s+OR\s+(REPLACE|IGNORE)|(REPLACE))\s+INTO\s+(\w+)\s*(\(([^)]*)\))?",
    re.IGNORECASE,
)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)
_JSON_IN = re.compile(
    r"\bIN\s*\(\s*SELECT\s+value\s+FROM\s+json_each\(\s*\?\s*\)\s*\)", re.IGNORECASE
)
_HINTS = re.compile(r"\s+(?:INDEXED\s+BY\s+\w+|NOT\s+INDEXED)\b", re.IGNORECASE)
_REAL_CAST = re.compile(r"\bAS\s+REAL\b", re.IGNORECASE)
_LIKE = re.compile(r"(?<![\w.])(NOT\s+)?LIKE\b", re.IGNORECASE)
_IS_PARAM = re.compile(r"\bIS\s+(NOT\s+)?\?", re.IGNORECASE)
_CALL = re.compile(r"\b(ifnull|group_concat|char|max|min)\s*\(", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_MARK = "\x00JSONLIST\x00"


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> Translated:
    """``sql`` (SQLite's form, see the module docstring) in PostgreSQL's form."""
    literals: list[str] = []

    def hide(found: re.Match[str]) -> str:
        literals.append(found.group(0))
        return f"\x01{len(literals) - 1}\x01"

    text = _STRING.sub(hide, sql)
    text = _HINTS.sub("", text)
    text = _JSON_IN.sub(f"= ANY({_MARK})", text)
    text = _IS_PARAM.sub(
        lambda m: "IS DISTINCT FROM ?" if m.group(1) else "IS NOT DISTINCT FROM ?", text
    )
    text = _REAL_CAST.sub("AS double precision", text)
    text = _LIKE.sub(lambda m: (m.group(1) or "") + "ILIKE", text)
    text = _rewrite_calls(text)
    text, returns_id = _rewrite_insert(text)
    # number the parameters: which are JSON lists
    json_lists: list[int] = []
    out: list[str] = []
    index = 0
    pos = 0
    while pos < len(text):
        if text.startswith(_MARK, pos):
            json_lists.append(index)
            index += 1
            out.append("%s")
            pos += len(_MARK)
            continue
        ch = text[pos]
        if ch == "?":
            index += 1
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
        pos += 1
    text = "".join(out)
    text = re.sub("\x01(\\d+)\x01", lambda m: literals[int(m.group(1))].replace("%", "%%"), text)
    binary = bool(re.search(r"\bchunks\b", text)) and not _INSERT.match(text)
    return Translated(text, tuple(json_lists), returns_id, binary)


def _rewrite_insert(text: str) -> tuple[str, bool]:
    found = _INSERT_OR.match(text)
    if found is not None:
        action = (found.group(1) or found.group(2) or "").upper()
        table = found.group(3)
        columns = [c.strip() for c in (found.group(5) or "").split(",") if c.strip()]
        body = text[found.end() :]
        head = f"INSERT INTO {table}" + (f" ({', '.join(columns)})" if columns else "")
        ret = _RETURNING.search(body)
        tail = ""
        if ret is not None:
            body, tail = body[: ret.start()], " " + body[ret.start() :]
        if action == "IGNORE" or not columns:
            conflict = " ON CONFLICT DO NOTHING"
        else:
            key = CONFLICT_KEYS.get(table.lower())
            if key is None:
                raise ValueError(f"no conflict key known for table {table!r} (INSERT OR REPLACE)")
            updates = [c for c in columns if c not in key]
            conflict = f" ON CONFLICT ({', '.join(key)}) " + (
                "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)
                if updates
                else "DO NOTHING"
            )
        text = head + body.rstrip().rstrip(";") + conflict + tail
    plain = _INSERT.match(text)
    if (
        plain is not None
        and plain.group(1).lower() in _RETURNS_ID
        and _RETURNING.search(text) is None
    ):
        return text.rstrip().rstrip(";") + " RETURNING id", True
    return text, False


def _rewrite_calls(text: str) -> str:
    """Rewrite SQLite-only functions, innermost first, with balanced parentheses."""
    pos = 0
    while True:
        found = _CALL.search(text, pos)
        if found is None:
            return text
        name = found.group(1).lower()
        start, open_at = found.start(), found.end() - 1
        close_at = _closing(text, open_at)
        inner = _rewrite_calls(text[open_at + 1 : close_at])
        args = _split_args(inner)
        if name == "ifnull":
            new = f"COALESCE({inner})"
        elif name == "char":
            new = f"chr({inner})"
        elif name == "group_concat":
            sep = args[1] if len(args) > 1 else "','"
            new = f"string_agg(({args[0]})::text, {sep})"
        elif len(args) > 1:  # max/min with several arguments: the scalar form
            new = ("GREATEST" if name == "max" else "LEAST") + f"({inner})"
        else:
            new = f"{found.group(1)}({inner})"
        text = text[:start] + new + text[close_at + 1 :]
        pos = start + len(new)


def _closing(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in SQL: {text!r}")


def _split_args(inner: str) -> list[str]:
    args, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    return args
