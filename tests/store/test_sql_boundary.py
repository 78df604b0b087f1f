"""SQL lives only in ``despina.store`` (issue #13): no module outside it imports ``sqlite3``,
runs statements (``.execute``/``.executemany``/``.executescript``) or spells SQL text.

Modules not moved behind the store contract yet are listed in ``STILL_TO_MOVE``; the list can
only shrink: a listed module that has become clean fails the test too, so that it is struck off.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import despina

SRC = Path(despina.__file__).resolve().parent
"""The ``despina`` package directory."""

STORE = SRC / "store"

STILL_TO_MOVE: frozenset[str] = frozenset()
"""Modules (paths under ``src/despina``, ``dir/*`` for a whole directory) that still hold SQL."""

_SQL_START = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|REPLACE|PRAGMA)\b")
_RUNS_SQL = frozenset({"execute", "executemany", "executescript"})


def _findings(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, what)`` of every SQL use in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlite3":
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] == "sqlite3":
                yield node.lineno, f"from {node.module} import ..."
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _RUNS_SQL:
                yield node.lineno, f"call of .{func.attr}()"
        # an f-string's literal parts are constants too: its first part is checked here
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _SQL_START.match(node.value)
        ):
            yield node.lineno, f"SQL text {node.value[:40]!r}"


def _listed(relative: str) -> str | None:
    """The allowlist entry covering a module, if any."""
    if relative in STILL_TO_MOVE:
        return relative
    parts = relative.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        entry = "/".join(parts[:depth]) + "/*"
        if entry in STILL_TO_MOVE:
            return entry
    return None


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(STORE):
            continue
        yield path.relative_to(SRC).as_posix(), path


def test_no_sql_outside_the_store() -> None:
    found = []
    for relative, path in _modules():
        if _listed(relative) is not None:
            continue
        found += [
            f"src/despina/{relative}:{line}: {what}" for line, what in sorted(_findings(path))
        ]
    assert not found, (
        "SQL outside despina.store (move it into a store module with a function named by what "
        "it does for the caller):\n" + "\n".join(found)
    )


def test_the_allowlist_only_shrinks() -> None:
    """Every entry still covers a module with SQL: a clean one must leave the list."""
    dirty: set[str] = set()
    for relative, path in _modules():
        entry = _listed(relative)
        if entry is not None and next(_findings(path), None) is not None:
            dirty.add(entry)
    clean = sorted(STILL_TO_MOVE - dirty)
    assert not clean, f"no SQL left in {clean}: strike them off STILL_TO_MOVE in {__file__}"


def test_the_scanner_finds_each_kind(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import sqlite3\n"
        "from sqlite3 import Connection\n"
        "conn.execute('x')\n"
        "conn.executemany('x', [])\n"
        "q = 'SELECT 1'\n"
        "f = f'UPDATE runs SET {x}'\n"
        "doc = 'Select a run'\n",
        encoding="utf-8",
    )
    lines = sorted(line for line, _ in _findings(module))
    assert lines == [1, 2, 3, 4, 5, 6]
