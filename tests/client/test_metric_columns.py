"""The buffer's conversion of logged calls into columns: the fast paths keep exact values."""

from __future__ import annotations

import math

import numpy as np

from despina.client.buffer import metric_columns, row_packer


def _records(rows: list[tuple[object, ...]], keys: tuple[str, ...] = ("a", "b")) -> list:
    return [(keys, row, step * 1_000_000, 1_000 + step) for step, row in enumerate(rows)]


def test_same_keys_every_call_gives_one_exact_column_per_key() -> None:
    rows = [
        (
            0.1 * i,
            -1e308 * i,
        )
        for i in range(50)
    ]
    rows[7] = (math.inf, -math.inf)
    columns = metric_columns(_records(rows), lambda message: None)
    assert list(columns) == ["a", "b"]
    assert columns["a"].values.tolist() == [r[0] for r in rows]
    assert columns["b"].values.tolist() == [r[1] for r in rows]
    assert columns["a"].steps.tolist() == [i * 1_000_000 for i in range(50)]
    assert columns["b"].timestamps.tolist() == [1_000 + i for i in range(50)]


def test_none_and_bad_values_are_dropped_and_nan_kept() -> None:
    dropped: list[str] = []
    rows = [(1.0, 2.0), (None, math.nan), (np.datetime64(1, "s"), 3.0), ("x", 4)]
    columns = metric_columns(_records(rows), dropped.append)
    assert columns["a"].values.tolist() == [1.0]
    assert columns["a"].steps.tolist() == [0]
    got = columns["b"].values
    assert got[0] == 2.0 and math.isnan(got[1]) and got[2:].tolist() == [3.0, 4.0]
    assert len(dropped) == 3  # None, the datetime and "x"


def test_changing_key_sets_are_grouped_in_order() -> None:
    records = [*_records([(1.0, 2.0)]), (("b",), (5.0,), 3_000_000, 2_000)]
    columns = metric_columns(records, lambda message: None)
    assert columns["b"].values.tolist() == [2.0, 5.0]
    assert columns["b"].steps.tolist() == [0, 3_000_000]


def test_packed_calls_keep_exact_values_beside_calls_kept_as_given() -> None:
    """``log_metrics`` packs a call's values as float64 when each converts; a call with a value
    that does not (a string, None) is queued as given. Both kinds may share a flush."""
    keys = ("a", "b")
    packer = row_packer(2)
    packed = [
        (keys, packer.pack(math.nan, -0.0), 0, 1_000),
        (keys, packer.pack(math.inf, 2**60 + 1), 1_000_000, 1_001),
        (keys, packer.pack(np.float32(0.1), True), 2_000_000, 1_002),
    ]
    columns = metric_columns(packed, lambda message: None)
    a, b = columns["a"].values, columns["b"].values
    assert math.isnan(a[0]) and a[1:].tolist() == [math.inf, float(np.float32(0.1))]
    assert math.copysign(1.0, b[0]) == -1.0 and b[1:].tolist() == [float(2**60 + 1), 1.0]
    dropped: list[str] = []
    mixed = [*packed, (keys, ("1.5", None), 3_000_000, 1_003)]
    columns = metric_columns(mixed, dropped.append)
    assert columns["a"].values[1:].tolist() == [math.inf, float(np.float32(0.1)), 1.5]
    assert columns["b"].steps.tolist() == [0, 1_000_000, 2_000_000]
    assert len(dropped) == 1  # None


def test_wide_packed_calls_give_exact_columns() -> None:
    """Calls of many values are written into their columns call by call; a call kept as given
    among them sends the group the general way. Both give the same columns."""
    width = 300
    keys = tuple(f"m{j}" for j in range(width))
    packer = row_packer(width)
    rows = [[step * 0.5 + j for j in range(width)] for step in range(5)]
    rows[2][7], rows[3][8], rows[4][9] = math.nan, -math.inf, -0.0
    packed = [(keys, packer.pack(*row), step, 1_000 + step) for step, row in enumerate(rows)]
    as_given = [*packed[:4], (keys, tuple(rows[4]), 4, 1_004)]
    for records in (packed, as_given):
        columns = metric_columns(records, lambda message: None)
        assert list(columns) == list(keys)
        for j in (0, 7, 8, 9, width - 1):
            assert [repr(v) for v in columns[f"m{j}"].values.tolist()] == [
                repr(row[j]) for row in rows
            ]
        assert columns["m5"].steps.tolist() == [0, 1, 2, 3, 4]
        assert columns["m5"].values.flags.c_contiguous
