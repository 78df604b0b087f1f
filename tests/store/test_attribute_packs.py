"""Attribute packs (``store/sql/attribute_packs.py``): written when a run is marked closed, read
instead of the rows while the run's revision and uuid are the pack's, exact, never stale."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from despina.store import Store
from despina.store.batch import Assign, Batch, MetricColumn, ModifySet, PointAppend
from despina.store.runs import RunSpec, create_run, mark_closed
from despina.store.sql.attribute_columns import READ_STATS, AttrRows, read_columns
from despina.store.sql.attribute_packs import PACK_MIN_ROWS, pack_idle_runs, write_pack
from despina.store.writer import RunWriter

PROJECT = "ws/packs"
PARAMS = PACK_MIN_ROWS  # with the series and sys rows: packed


def _log(store: Store, pk: int, value: float) -> None:
    one = np.array([0, 1_000_000], np.int64)
    ops: list[Assign | ModifySet] = [
        Assign(f"cfg/p{j:03d}", "float", value + j / 7) for j in range(PARAMS)
    ]
    ops += [
        Assign("cfg/nan", "float", math.nan),
        Assign("cfg/neg_zero", "float", -0.0),
        Assign("cfg/inf", "float", -math.inf),
        Assign("cfg/big", "int", 2**62 + 3),
        Assign("cfg/small", "int", -(2**53) - 1),
        Assign("cfg/flag", "bool", True),
        Assign("cfg/when", "datetime", 1_735_689_600_123),
        Assign("cfg/name", "string", f"run at {value} é\x01"),
        Assign("cfg/empty", "string", ""),
        ModifySet("sys/tags", ["a", f"v{value}"], []),
    ]
    metrics = {
        "m/loss": MetricColumn(one, np.array([value, math.nan]), one + 5),
        "m/acc": MetricColumn(one, np.array([0.5, value]), one + 6),
    }
    points = [PointAppend("log/text", "string_series", 0, 7, f"line {value}")]
    RunWriter(store, pk).apply(Batch(ops=ops, metrics=metrics, points=points))


def _runs(store: Store, n: int, *, closed: bool = True) -> list[int]:
    pks = []
    for i in range(n):
        pk = create_run(store, RunSpec(project=PROJECT, run_id=f"r{i:03d}", creation_ms=i)).pk
        _log(store, pk, float(i))
        if closed:
            mark_closed(store, pk, failed=False)
        pks.append(pk)
    return pks


def _cells(rows: AttrRows) -> dict[tuple[int, str], tuple[Any, ...]]:
    """Every cell of every row, by (run, path): floats as their bits."""
    return {
        (int(rows.run[i]), rows.paths[int(rows.path[i])]): (
            int(rows.attr_id[i]),
            int(rows.type[i]),
            rows.num_f[i].tobytes(),
            int(rows.num_i[i]),
            rows.text[i],
            int(rows.count[i]),
            int(rows.last_step[i]),
            int(rows.last_ts[i]),
        )
        for i in range(len(rows))
    }


def _read(store: Store, pks: list[int], **spec: Any) -> tuple[AttrRows, int]:
    """The rows ``read_columns`` reads now, and the number of packs it decoded."""
    before = READ_STATS.packs
    with store.read() as conn:
        rows = read_columns(conn, pks, **spec)
    assert len(set(rows.paths)) == len(rows.paths)
    assert set(np.unique(rows.path).tolist()) == set(range(len(rows.paths)))  # no unused paths
    return rows, READ_STATS.packs - before


def _from_rows(store: Store, pks: list[int], **spec: Any) -> AttrRows:
    with store.read() as conn:
        return read_columns(conn, pks, packs=False, **spec)


SPECS: list[dict[str, Any]] = [
    {},
    {"values": False},
    {"text": False},
    {"series": False},
    {"series": False, "text": False},
    {"values": False, "series": False},
    {"types": ["float_series"], "text": False},
    {"types": ["string", "string_set", "string_series"]},
    {"paths": [f"cfg/p{j:03d}" for j in range(20)] + ["cfg/name", "m/loss", "nothing"]},
    {"skip_empty": True},
]


@pytest.mark.parametrize("spec", SPECS, ids=[str(s)[:60] for s in SPECS])
def test_packs_are_read_and_equal_to_the_rows(tmp_path: Path, spec: dict[str, Any]) -> None:
    store = Store.open(tmp_path / "store")  # DESPINA_STORE (PostgreSQL) wins when set
    try:
        pks = _runs(store, 4)
        packed, decoded = _read(store, pks, **spec)
        assert decoded == 4
        assert _cells(packed) == _cells(_from_rows(store, pks, **spec))
        assert len(packed) > 0
        packed.num_f[:1] = 1.0  # writable, not views of the packs
    finally:
        store.close()


def test_values_survive_exactly(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    try:
        (pk,) = _runs(store, 1)
        rows, decoded = _read(store, [pk])
        assert decoded == 1
        cells = _cells(rows)
        assert cells[(pk, "cfg/big")][3] == 2**62 + 3
        assert cells[(pk, "cfg/small")][3] == -(2**53) - 1
        zero = -0.0 if store.dialect == "sqlite" else 0.0  # numeric has no -0
        assert cells[(pk, "cfg/neg_zero")][2] == np.float64(zero).tobytes()
        assert math.isnan(np.frombuffer(cells[(pk, "cfg/nan")][2])[0])
        assert cells[(pk, "cfg/name")][4] == "run at 0.0 é\x01"
        assert cells[(pk, "cfg/empty")][4] == ""
    finally:
        store.close()


def test_open_runs_small_runs_and_a_mix_are_read_from_their_rows(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    try:
        closed = _runs(store, 3)
        open_pk = create_run(store, RunSpec(project=PROJECT, run_id="open", creation_ms=9)).pk
        _log(store, open_pk, 9.0)
        small = create_run(store, RunSpec(project=PROJECT, run_id="small", creation_ms=10)).pk
        RunWriter(store, small).apply(Batch(ops=[Assign("cfg/a", "float", 1.0)]))
        mark_closed(store, small, failed=False)
        everyone = [*closed, open_pk, small]
        rows, decoded = _read(store, everyone)
        assert decoded == 3  # neither the open run nor the small one has a pack
        assert _cells(rows) == _cells(_from_rows(store, everyone))
        assert {int(r) for r in rows.run} == set(everyone)
    finally:
        store.close()


def test_runs_that_never_close_are_packed_once_idle(tmp_path: Path) -> None:
    """The server's pack-idle-runs job: runs of the Neptune wire, or of a killed process."""
    store = Store.open(tmp_path / "store")
    try:
        idle, busy = _runs(store, 2, closed=False)
        small = create_run(store, RunSpec(project=PROJECT, run_id="small", creation_ms=10)).pk
        RunWriter(store, small).apply(Batch(ops=[Assign("cfg/a", "float", 1.0)]))
        with store.write() as conn:  # the last write an hour ago, for two of them
            conn.execute(
                "UPDATE runs SET ping_ms = ping_ms - 3600000 WHERE id IN (?, ?)", (idle, small)
            )
        assert pack_idle_runs(store) == 1  # neither the busy run nor the small one
        assert pack_idle_runs(store) == 0  # its pack is current
        rows, decoded = _read(store, [idle, busy, small])
        assert decoded == 1
        assert _cells(rows) == _cells(_from_rows(store, [idle, busy, small]))
        _log(store, idle, 5.0)  # written again: stale, packed again once idle
        with store.write() as conn:
            conn.execute("UPDATE runs SET ping_ms = ping_ms - 3600000 WHERE id = ?", (idle,))
        assert pack_idle_runs(store) == 1
        rows, decoded = _read(store, [idle])
        assert decoded == 1
        assert _cells(rows) == _cells(_from_rows(store, [idle]))
        _log(store, busy, 5.0)  # stopped long ago: past the horizon, left to its rows
        with store.write() as conn:
            month = 30 * 86_400_000
            conn.execute("UPDATE runs SET ping_ms = ping_ms - ? WHERE id = ?", (month, busy))
        assert pack_idle_runs(store) == 0
    finally:
        store.close()


def test_a_run_written_after_its_close_is_read_from_its_rows(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    try:
        pks = _runs(store, 2)
        _log(store, pks[0], 42.0)  # resumed: new values and tags, revision moved
        rows, decoded = _read(store, pks)
        assert decoded == 1
        cells = _cells(rows)
        assert cells == _cells(_from_rows(store, pks))
        assert cells[(pks[0], "cfg/name")][4] == "run at 42.0 é\x01"
        assert "v42.0" in cells[(pks[0], "sys/tags")][4]
        mark_closed(store, pks[0], failed=False)  # closed again: packed again
        rows, decoded = _read(store, pks)
        assert decoded == 2 and _cells(rows) == cells
    finally:
        store.close()


def test_lifecycle_changes_make_the_pack_stale(tmp_path: Path) -> None:
    from despina.project import Project

    store = Store.open(tmp_path / "store")
    try:
        pks = _runs(store, 2)
        project = Project.over(store, PROJECT)
        assert project.trash_runs("r000") == 1
        rows, decoded = _read(store, pks)
        assert decoded == 1  # the trashed run's revision moved
        assert _cells(rows) == _cells(_from_rows(store, pks))
    finally:
        store.close()


def test_a_deleted_and_replaced_run_never_gets_the_old_pack(tmp_path: Path) -> None:
    from despina.store.admin import delete_runs

    store = Store.open(tmp_path / "store")
    try:
        pks = _runs(store, 2)
        with store.write() as conn:
            delete_runs(conn, [pks[1]])
        new = create_run(store, RunSpec(project=PROJECT, run_id="r001", creation_ms=5)).pk
        RunWriter(store, new).apply(Batch(ops=[Assign("cfg/p000", "float", 7.0)]))
        rows, decoded = _read(store, [pks[0], new])
        assert decoded == 1
        cells = _cells(rows)
        assert cells == _cells(_from_rows(store, [pks[0], new]))
        assert cells[(new, "cfg/p000")][2] == np.float64(7.0).tobytes()
        assert (new, "cfg/p001") not in cells
    finally:
        store.close()


def test_a_pack_of_another_uuid_is_not_read(tmp_path: Path) -> None:
    """The uuid is checked as well as the revision: a run replaced under the same row id and
    revision (a copy or import that kept them) is read from its rows."""
    store = Store.open(tmp_path / "store")
    try:
        (pk,) = _runs(store, 1)
        with store.write() as conn:
            conn.execute("UPDATE runs SET uuid = ? WHERE id = ?", ("another", pk))
        _, decoded = _read(store, [pk])
        assert decoded == 0
        with store.write() as conn:
            assert write_pack(conn, pk)  # packed again under the new uuid
            assert not write_pack(conn, pk)  # still current: not written twice
        _, decoded = _read(store, [pk])
        assert decoded == 1
    finally:
        store.close()


def test_a_query_reads_the_same_frames_from_packs(tmp_path: Path) -> None:
    from despina.query.service import QueryService

    store = Store.open(tmp_path / "store")
    try:
        _runs(store, 70)  # past the query cache's threshold: the cached (fill) path

        def table() -> Any:
            service = QueryService(store, cache_dir=None)
            with service.snapshot(PROJECT) as snap:
                return snap.rows(snap.search(kind="run"))

        before = READ_STATS.packs
        packed = table()
        assert READ_STATS.packs - before == 70
        with store.write() as conn:
            conn.execute("DELETE FROM attribute_packs")
        assert _cells(packed) == _cells(table())
    finally:
        store.close()


def test_a_copy_packs_the_closed_runs_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From an embedded store into the test's store (a directory, or PostgreSQL)."""
    from despina.store.copy import copy_store

    destination = os.environ.get("DESPINA_STORE") or str(tmp_path / "dest")
    monkeypatch.delenv("DESPINA_STORE", raising=False)
    source = Store.open(tmp_path / "source")
    try:
        closed = _runs(source, 2)
        open_pk = create_run(source, RunSpec(project=PROJECT, run_id="open", creation_ms=9)).pk
        _log(source, open_pk, 9.0)
        expected = _from_rows(source, [*closed, open_pk])
    finally:
        source.close()
    copy_store(str(tmp_path / "source"), destination)
    dest = Store.open(url=destination)
    try:
        with dest.read() as conn:
            pks = [int(pk) for (pk,) in conn.execute("SELECT id FROM runs ORDER BY run_id")]
        rows, decoded = _read(dest, pks)
        assert decoded == 2
        assert _cells(rows) == _cells(_from_rows(dest, pks))
        # (PostgreSQL's numeric keeps no -0: a known difference of the stores, not of packs)
        skip = {"cfg/neg_zero"} if dest.dialect == "postgresql" else set()
        by_path = {(p, cell[1:]) for (_, p), cell in _cells(rows).items() if p not in skip}
        assert by_path == {
            (p, cell[1:]) for (_, p), cell in _cells(expected).items() if p not in skip
        }
    finally:
        dest.close()


@pytest.mark.sqlite_only  # the embedded schema and its migrations
def test_a_store_from_before_packs_migrates(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import despina.store.sqlite as sqlite_module
    from despina.store import schema

    monkeypatch.setattr(sqlite_module, "MIGRATIONS", schema.MIGRATIONS[:11])
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", 11)
    old = Store.open(home)
    pk = create_run(old, RunSpec(project=PROJECT, run_id="old", creation_ms=1)).pk
    _log(old, pk, 1.0)
    old.close()
    monkeypatch.undo()
    store = Store.open(home)
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
        _, decoded = _read(store, [pk])
        assert decoded == 0  # closed before packs existed: its rows
        mark_closed(store, pk, failed=False)
        rows, decoded = _read(store, [pk])
        assert decoded == 1
        assert _cells(rows) == _cells(_from_rows(store, [pk]))
    finally:
        store.close()


def test_a_pack_of_another_format_is_not_read_and_is_rewritten(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    try:
        pks = _runs(store, 2)
        with store.write() as conn:
            conn.execute(
                "UPDATE attribute_packs SET data = ? WHERE run_id = ?",
                (b"DSPNATTR\x01" + bytes(64), pks[0]),
            )
        rows, decoded = _read(store, pks)
        assert decoded == 1
        assert _cells(rows) == _cells(_from_rows(store, pks))
        mark_closed(store, pks[0], failed=False)  # a later close writes this version's pack
        _, decoded = _read(store, pks)
        assert decoded == 2
    finally:
        store.close()


def test_many_encodings_decode_as_their_concatenation() -> None:
    """Columns stored, repeated and consecutive in different encodings, different paths."""
    from despina.store import attribute_codec

    def rows(n: int, first_id: int, paths: tuple[str, ...], step: int) -> AttrRows:
        text = np.full(n, None, dtype=object)
        text[::2] = [f"t{i}" for i in range(0, n, 2)]
        return AttrRows(
            np.arange(first_id, first_id + n * step, step, dtype=np.int64),  # range when step 1
            np.full(n, first_id, np.int64),
            (np.arange(n) % len(paths)).astype(np.int32),
            np.full(n, 3, np.int8),
            np.where(np.arange(n) % 3 == 0, -0.0, np.arange(n) / 7),
            np.full(n, 2**62 + 1, np.int64),
            text,
            np.full(n, -1, np.int64),
            np.arange(n, dtype=np.int64) * step,
            np.zeros(n, np.int64),
            paths,
        )

    parts = [
        rows(5, 10, ("a", "b", "c", "d", "e"), 1),
        rows(4, 99, ("b", "z"), 3),
        rows(1, 7, ("é",), 1),
        rows(6, 1, ("a", "b", "c", "d", "e", "f"), 1),
    ]
    wide = rows(3, 50, ("x", "y", "z"), 1)
    parts.append(  # distances of 1, 2 and 4 bytes from a negative base; a span past 4 bytes
        dataclasses.replace(
            wide,
            num_i=np.array([-3, 100_000, 7], np.int64),
            count=np.array([-1, 200, 0], np.int64),
            last_step=np.array([-(2**31), 2**31, 0], np.int64),
            last_ts=np.array([-5, 2**40, 0], np.int64),
        )
    )
    datas = []
    for part in parts:
        encoded = attribute_codec.encode({int(part.run[0]): (1, "u")}, part)
        assert encoded is not None
        datas.append(b"".join(encoded))
        assert _cells(attribute_codec.decode(datas[-1])[1]) == _cells(part)
    assert _cells(attribute_codec.decode_many(datas)) == _cells(AttrRows.concat(parts))
