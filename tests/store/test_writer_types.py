"""The writer keeps a path's first type for every pair of types (issue #12, finding 6).

A later value of another type is refused as ``FIELD_TYPE_CONFLICTING`` naming the path and both
types, whether the first value is stored already or comes earlier in the same batch
(``Batch.first_types``); what the path holds is exactly what the first value alone gives.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from despina.store import Store
from despina.store.batch import Assign, Batch, MetricColumn, ModifySet, PointAppend
from despina.store.runs import RunSpec, create_run
from despina.store.schema import ATTRIBUTE_TYPES
from despina.store.series import read_float_points
from despina.store.writer import RunWriter

M = 1_000_000
FILE_REF = {"path": "k/file.txt", "size_bytes": 4, "mime_type": "text/plain"}
PAIRS = [(a, b) for a, b in itertools.product(ATTRIBUTE_TYPES, repeat=2) if a != b]


def add_item(batch: Batch, type_: str, path: str) -> None:
    """Put a value of ``type_`` on ``path`` into ``batch``."""
    assigns: dict[str, Any] = {
        "float": 1.5,
        "int": 7,
        "bool": True,
        "string": "text",
        "datetime": 1_700_000_000_000,
        "string_set": frozenset({"a", "b"}),
        "file": FILE_REF,
        "artifact": {"hash": "0" * 64, "files": []},
    }
    if type_ in assigns:
        batch.ops.append(Assign(path, type_, assigns[type_]))
    elif type_ == "float_series":
        batch.metrics[path] = MetricColumn([M, 2 * M], [1.0, 2.0], [10, 20])
    else:
        value = {
            "string_series": "line",
            "histogram_series": json.dumps({"type": "COUNTING", "edges": [0, 1], "values": [1]}),
            "file_series": json.dumps(FILE_REF),
        }[type_]
        batch.points.append(PointAppend(path, type_, M, 10, value))


def content(store: Store, run_pk: int, path: str) -> tuple[Any, ...] | None:
    conn = store.connection()
    row = conn.execute(
        "SELECT id, type, num, text, count, last_step, fmin, fmax, fsum, fsumsq, fcount "
        "FROM attributes WHERE run_id = ? AND path = ?",
        (run_pk, path),
    ).fetchone()
    if row is None:
        return None
    floats = read_float_points(conn, row[0])
    others = conn.execute(
        "SELECT step, ts, value FROM points WHERE attr_id = ? ORDER BY step", (row[0],)
    ).fetchall()
    return (row[1:], floats.steps.tolist(), floats.values.tolist(), others)


@pytest.fixture
def writer(home: Path) -> RunWriter:
    store = Store.open(home)
    return RunWriter(store, create_run(store, RunSpec("ws/p", "r")).pk)


def check(writer: RunWriter, messages: dict[str, str]) -> None:
    wrong = []
    for first, second in PAIRS:
        path = f"p/{first}/{second}"
        want = content(writer.store, writer.run_pk, f"control/{first}/{second}")
        assert want is not None and want[0][0] == first
        if content(writer.store, writer.run_pk, path) != want:
            wrong.append((first, second))
        message = messages.get(path, "")
        assert re.search(rf"\b{first}\b", message) and re.search(rf"\b{second}\b", message), (
            path,
            message,
        )
    assert wrong == []


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "two-batches"])
def test_every_pair_keeps_the_first_type(writer: RunWriter, together: bool) -> None:
    first_batch = Batch()
    second_batch = first_batch if together else Batch()
    for first, second in PAIRS:
        add_item(first_batch, first, f"control/{first}/{second}")
        path = f"p/{first}/{second}"
        if together:
            first_batch.first_types[path] = first
        add_item(first_batch, first, path)
        add_item(second_batch, second, path)
    issues = writer.apply(first_batch)
    if not together:
        issues += writer.apply(second_batch)
    assert {i.code for i in issues} == {"FIELD_TYPE_CONFLICTING"}
    messages = {str(i.path): i.message for i in issues}
    check(writer, messages)


def test_tags_on_a_path_that_is_a_string(writer: RunWriter) -> None:
    batch = Batch(ops=[Assign("t", "string", "x"), ModifySet("t", ["a"], [])])
    issues = writer.apply(batch)
    assert [(i.code, i.path) for i in issues] == [("FIELD_TYPE_CONFLICTING", "t")]
    assert "string_set" in issues[0].message and "'t' is a string" in issues[0].message
    assert content(writer.store, writer.run_pk, "t")[0][:3] == ("string", None, "x")  # type: ignore[index]
