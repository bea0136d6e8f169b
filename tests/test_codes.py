"""The bit order of packed codes (contract 4) and the reference Hamming distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_cmah import InvalidInputError, hamming_distance, pack_codes, unpack_codes


def test_bit_order_is_numpy_packbits_big_endian():
    codes = np.array([[1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1]], dtype=np.int8)
    assert pack_codes(codes).tolist() == [[0b10000001, 0b00000010]]


@pytest.mark.parametrize("bits", [8, 16, 32, 64, 128])
def test_pack_unpack_round_trip(bits):
    codes = np.where(np.random.default_rng(bits).random((5, bits)) > 0.5, 1, -1).astype(np.int8)
    packed = pack_codes(torch.from_numpy(codes))
    assert packed.dtype == np.uint8 and packed.shape == (5, bits // 8)
    assert np.array_equal(unpack_codes(packed, bits), codes)


def test_hamming_distance_counts_differing_bits():
    rng = np.random.default_rng(0)
    a = np.where(rng.random((4, 64)) > 0.5, 1, -1)
    b = np.where(rng.random((6, 64)) > 0.5, 1, -1)
    expected = (a[:, None, :] != b[None, :, :]).sum(-1)
    assert np.array_equal(hamming_distance(pack_codes(a), pack_codes(b)), expected)


def test_bad_codes_are_rejected():
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        pack_codes(np.ones((2, 12)))
    with pytest.raises(InvalidInputError, match="uint8"):
        unpack_codes(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(InvalidInputError, match="not code_bits=32"):
        unpack_codes(np.ones((2, 2), dtype=np.uint8), 32)
    with pytest.raises(InvalidInputError, match="bytes"):
        hamming_distance(np.zeros((1, 2), np.uint8), np.zeros((1, 4), np.uint8))
