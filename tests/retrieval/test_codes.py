"""Hash code conversions: network outputs -> {-1, +1}, packed bits, 64-bit integers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval.codes import from_int, pack, packed_from_int, signs, to_int


def test_signs_count_zero_as_plus_one_and_keep_the_dtype():
    codes = signs(torch.tensor([[-0.3, 0.0, 2.0, -0.0]]))
    assert codes.tolist() == [[-1.0, 1.0, 1.0, 1.0]] and codes.dtype == torch.float32


def test_codes_round_trip_through_64_bit_integers():
    rng = np.random.default_rng(0)
    for bits in (16, 32, 64):
        codes = np.where(rng.random((50, bits)) > 0.5, 1, -1).astype(np.int8)
        codes[0] = 1  # top bit set: the signed value is negative for 64 bits
        values = to_int(codes)
        assert all(-(2**63) <= v < 2**63 for v in values)
        assert (from_int(values, bits) == codes).all()
        packed = packed_from_int(np.array(values), bits)  # the search index's load
        assert packed.dtype == np.uint8 and (packed == pack(codes)).all()
    with pytest.raises(ValueError):
        packed_from_int([1], 12)


def test_packed_bytes_and_integers_put_bit_0_first():
    codes = -np.ones((1, 16), np.int8)
    codes[0, 0] = 1
    assert pack(codes).tolist() == [[0b1000_0000, 0]]
    assert to_int(codes) == [1 << 15]
