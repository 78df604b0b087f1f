"""The store's joined decoding of a series' chunks equals decoding them one by one."""

from __future__ import annotations

import numpy as np
import pytest

from despina.store.codec import decode_ints, encode_ints
from despina.store.sql.series_reads import _decode_joined

CASES = {
    "one progression": [np.arange(0, 10, 2), np.arange(10, 30, 2), np.array([30])],
    "gap between chunks": [np.arange(0, 10), np.arange(20, 25)],
    "different deltas": [np.arange(0, 10), np.arange(10, 30, 2)],
    "single points": [np.array([5]), np.array([7]), np.array([100])],
    "irregular": [np.array([0, 1, 5, 6]), np.arange(7, 12)],
    "two raw points": [np.array([0, 2**40]), np.array([2**41, 2**42])],  # 17-byte RAW blobs
    "descending delta": [np.arange(10, 0, -1)],
    "one chunk": [np.arange(3, 3000, 3)],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_joined_decoding_equals_each_chunk(case: str) -> None:
    chunks = [np.asarray(c, np.int64) for c in CASES[case]]
    blobs = [encode_ints(c) for c in chunks]
    ns = np.array([len(c) for c in chunks], np.int64)
    lengths = np.array([len(b) for b in blobs], np.int64)
    expected = np.concatenate([decode_ints(b, len(c)) for b, c in zip(blobs, chunks, strict=True)])
    got = _decode_joined(b"".join(blobs), lengths, ns)
    assert got.dtype == np.int64
    assert got.tolist() == expected.tolist() == np.concatenate(chunks).tolist()
