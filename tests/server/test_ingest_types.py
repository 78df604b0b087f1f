"""A path keeps its first type through the server (issue #12, finding 6).

One ``update_batch`` carrying a value of one type and then of another on the same path used to
apply its assigns before its appends: a config logged after a float series replaced it. Every
pair of wire types is checked with hand-built operations (the status counts the refusals as
``FIELD_TYPE_CONFLICTING``), and the official neptune-scale client is checked end to end (its
error callback receives ``NeptuneAttributeTypeMismatch``; the stored points are intact).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from neptune_api.proto.google_rpc.code_pb2 import Code
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
from server_helpers import ServerProcess, Tokens, run_logging_script
from test_ingest import Client, create, update

from despina.store import Store
from despina.store.series import read_float_points

pytestmark = pytest.mark.slow

HISTOGRAM = c.Histogram(bin_edges=[0, 1, 2], counts=c.Histogram.Counts(values=[1, 2]))
FILE = c.FileRef(path="fixed/key.txt", mime_type="text/plain", size_bytes=4)

ASSIGN: dict[str, c.Value] = {
    "float": c.Value(float64=1.5),
    "int": c.Value(int64=7),
    "bool": c.Value(bool=True),
    "string": c.Value(string="text"),
    "datetime": c.Value(timestamp=Timestamp(seconds=1_700_000_000)),
    "string_set": c.Value(string_set=c.StringSet(values=["a", "b"])),
    "file": c.Value(file_ref=FILE),
}
APPEND: dict[str, c.Value] = {
    "float_series": c.Value(float64=2.5),
    "string_series": c.Value(string="line"),
    "histogram_series": c.Value(histogram=HISTOGRAM),
    "file_series": c.Value(file_ref=FILE),
}
WIRE_PAIRS = [(a, b) for a, b in itertools.product([*ASSIGN, *APPEND], repeat=2) if a != b]


def content(conn: sqlite3.Connection, run_id: str, path: str) -> tuple[Any, ...] | None:
    """Everything stored for ``path``: the attribute row, float points and other points."""
    row = conn.execute(
        "SELECT a.id, a.type, a.num, a.text, a.count, a.last_step, a.fmin, a.fmax, a.fsum, "
        "a.fsumsq, a.fcount FROM attributes a JOIN runs r ON r.id = a.run_id "
        "WHERE r.run_id = ? AND a.path = ?",
        (run_id, path),
    ).fetchone()
    if row is None:
        return None
    floats = read_float_points(conn, row[0])
    others = conn.execute(
        "SELECT step, value FROM points WHERE attr_id = ? ORDER BY step", (row[0],)
    ).fetchall()
    attribute = list(row[1:])
    if attribute[0] in ("file", "file_series"):  # storage keys are unique per upload
        attribute[2] = _without_key(attribute[2])
        others = [(step, _without_key(value)) for step, value in others]
    return (tuple(attribute), floats.steps.tolist(), floats.values.tolist(), others)


def _without_key(text: str | None) -> str | None:
    if text is None:
        return None
    ref = json.loads(text)
    ref.pop("path", None)
    return json.dumps(ref, sort_keys=True)


def wrong_types(home: Path, run_id: str, pairs: list[tuple[str, str]]) -> list[object]:
    """Pairs whose path does not hold exactly what its control path (first value only) holds."""
    store = Store.open(home)
    try:
        conn = store.connection()
        wrong: list[object] = []
        for first, second in pairs:
            want = content(conn, run_id, f"control/{first}/{second}")
            got = content(conn, run_id, f"p/{first}/{second}")
            assert want is not None, (first, second)
            if got != want:
                wrong.append((first, second, None if got is None else got[0][0]))
        return wrong
    finally:
        store.close()


def _snapshot(step: int, values: dict[str, tuple[str, c.Value]]) -> c.UpdateRunSnapshot:
    out = c.UpdateRunSnapshot(timestamp=Timestamp(seconds=1_700_000_000 + step))
    out.step.CopyFrom(c.Step(whole=step))
    for path, (type_, value) in values.items():
        target = out.assign if type_ in ASSIGN else out.append
        target[path].CopyFrom(value)
    return out


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> Client:
    return Client(server, tokens.project)


def test_every_pair_in_one_operation(client: Client, server: ServerProcess) -> None:
    client.submit(create("types-wire"))
    firsts = {}
    seconds = {}
    for first, second in WIRE_PAIRS:
        value = {**ASSIGN, **APPEND}
        firsts[f"control/{first}/{second}"] = (first, value[first])
        firsts[f"p/{first}/{second}"] = (first, value[first])
        seconds[f"p/{first}/{second}"] = (second, value[second])
    status = client.status(update("types-wire", _snapshot(1, firsts), _snapshot(2, seconds)))
    assert status["FIELD_TYPE_CONFLICTING"] == (Code.INVALID_ARGUMENT, len(WIRE_PAIRS))
    assert status["OK"] == (Code.OK, len(firsts))
    assert wrong_types(server.home, "types-wire", WIRE_PAIRS) == []


def test_a_config_after_many_points_keeps_the_series(client: Client, server: ServerProcess) -> None:
    # 300 float-only snapshots take the bulk decoder; the config after them must not win
    client.submit(create("types-fast"))
    snapshots = [_snapshot(s, {"m": ("float_series", c.Value(float64=s))}) for s in range(1, 301)]
    snapshots.append(_snapshot(301, {"m": ("float", c.Value(float64=0.5))}))
    status = client.status(update("types-fast", *snapshots))
    assert status["FIELD_TYPE_CONFLICTING"] == (Code.INVALID_ARGUMENT, 1)
    store = Store.open(server.home)
    try:
        row = (
            store.connection()
            .execute(
                "SELECT a.type, a.count FROM attributes a JOIN runs r ON r.id = a.run_id "
                "WHERE r.run_id = 'types-fast' AND a.path = 'm'"
            )
            .fetchone()
        )
    finally:
        store.close()
    assert row == ("float_series", 300)


NEPTUNE_TYPES = [*ASSIGN, *APPEND]
NEPTUNE_SCRIPT = """
import json, sys
from datetime import datetime, timezone
UTC = timezone.utc
from neptune_scale import Run
from neptune_scale.types import File, Histogram

LOG = {
    "float": lambda run, path: run.log_configs({path: 1.5}),
    "int": lambda run, path: run.log_configs({path: 7}),
    "bool": lambda run, path: run.log_configs({path: True}),
    "string": lambda run, path: run.log_configs({path: "text"}),
    "datetime": lambda run, path: run.log_configs({path: datetime(2024, 1, 2, tzinfo=UTC)}),
    "string_set": lambda run, path: run.log_configs({path: ["a", "b"]}),
    "file": lambda run, path: run.assign_files(
        {path: File(b"file content", mime_type="text/plain")}),
    "float_series": lambda run, path: [
        run.log_metrics({path: float(s)}, step=s) for s in (1, 2, 3)],
    "string_series": lambda run, path: [
        run.log_string_series({path: f"line {s}"}, step=s) for s in (1, 2, 3)],
    "histogram_series": lambda run, path: run.log_histograms(
        {path: Histogram(bin_edges=[0, 1, 2], counts=[1, 2])}, step=1),
    "file_series": lambda run, path: run.log_files(
        {path: File(b"sample", mime_type="text/plain")}, step=1),
}
PAIRS = PAIRS_JSON
errors = []
with Run(run_id="types-ns", enable_console_log_capture=False, source_tracking_config=None,
         on_error_callback=lambda exc, last: errors.append(type(exc).__name__)) as run:
    # files are uploaded before their reference is sent: pairs with a file go in two rounds
    together = [(a, b) for a, b in PAIRS if "file" not in a + b]
    apart = [(a, b) for a, b in PAIRS if "file" in a + b]
    for first, second in PAIRS:
        LOG[first](run, f"control/{first}/{second}")
        LOG[first](run, f"p/{first}/{second}")
    for first, second in together:
        LOG[second](run, f"p/{first}/{second}")
    run.wait_for_processing()
    for first, second in apart:
        LOG[second](run, f"p/{first}/{second}")
    run.wait_for_processing()
print("ERRORS", json.dumps(sorted(set(errors))))
"""


def test_neptune_scale_keeps_the_first_type(
    server: ServerProcess, tokens: Tokens, tmp_path: Path
) -> None:
    pairs = [(a, b) for a, b in itertools.product(NEPTUNE_TYPES, repeat=2) if a != b]
    script = NEPTUNE_SCRIPT.replace("PAIRS_JSON", json.dumps(pairs))
    result = run_logging_script(script, tmp_path, tokens.project, timeout=240)
    line = next(x for x in result.stdout.splitlines() if x.startswith("ERRORS "))
    assert json.loads(line[len("ERRORS ") :]) == ["NeptuneAttributeTypeMismatch"]
    assert wrong_types(server.home, "types-ns", pairs) == []
