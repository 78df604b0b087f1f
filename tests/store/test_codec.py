from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from despina.store.codec import decode_floats, decode_ints, encode_floats, encode_ints

int64s = st.integers(min_value=-(2**62), max_value=2**62)


@given(st.lists(int64s, max_size=300))
def test_any_int_sequence_round_trips(values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    assert decode_ints(encode_ints(array), len(values)).tolist() == values


@given(
    st.integers(0, 10**15),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=200),
)
def test_increasing_steps_round_trip(first: int, deltas: list[int]) -> None:
    array = first + np.cumsum(np.array(deltas, dtype=np.int64))
    assert (decode_ints(encode_ints(array), len(array)) == array).all()


def test_regular_steps_cost_sixteen_bytes_for_the_whole_chunk() -> None:
    steps = np.arange(1024, dtype=np.int64) * 1_000_000
    assert len(encode_ints(steps)) == 17


def test_small_deltas_use_one_byte_per_point() -> None:
    stamps = 1_700_000_000_000 + np.cumsum(np.random.default_rng(1).integers(0, 100, 1024))
    assert len(encode_ints(stamps)) == 1 + 8 + 1023


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=100))
def test_floats_are_bit_exact(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    back = decode_floats(encode_floats(array), len(values))
    assert back.tobytes() == array.tobytes()


def test_huge_arithmetic_sequences_keep_their_length() -> None:
    for values in ([0, 2**62], [2**62, 0], [-(2**62), 0, 2**62]):
        array = np.array(values, dtype=np.int64)
        assert decode_ints(encode_ints(array), len(values)).tolist() == values
