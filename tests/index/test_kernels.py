"""The compiled kernels against the NumPy reference `hf_cmah.codes.hamming_distance`."""

import numba
import numpy as np
import pytest

from hf_cmah.codes import hamming_distance
from hf_cmah.index import kernels
from hf_cmah.index.kernels import CODE_BLOCK, range_rows, topk_search


def reference_topk(queries, codes, k):
    distances = hamming_distance(queries, codes)
    rows = np.arange(codes.shape[0])
    order = np.array([np.lexsort((rows, row))[:k] for row in distances])
    return order, np.take_along_axis(distances, order, axis=1)


@pytest.mark.parametrize("code_bits", [8, 16, 24, 32, 64, 128])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_topk_equals_brute_force(code_bits, k):
    rng = np.random.default_rng(code_bits * 1000 + k)
    codes = rng.integers(0, 256, (3 * CODE_BLOCK + 17, code_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (9, code_bits // 8), dtype=np.uint8)
    rows, distances = topk_search(queries, codes, k, code_bits)
    expected_rows, expected_distances = reference_topk(queries, codes, k)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(distances, expected_distances)


@pytest.mark.parametrize("batch", [1, 3, 40])
def test_heavy_ties_are_broken_by_row(batch):
    """Few distinct codes: thousands of equal distances, the lowest rows must win."""
    rng = np.random.default_rng(batch)
    distinct = rng.integers(0, 256, (5, 2), dtype=np.uint8)
    codes = distinct[rng.integers(0, 5, 2 * CODE_BLOCK + 3)]
    queries = distinct[rng.integers(0, 5, batch)]
    rows, distances = topk_search(queries, codes, 50, 16)
    expected_rows, expected_distances = reference_topk(queries, codes, 50)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(distances, expected_distances)


def test_single_thread_and_code_splits_agree(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN_PAIRS", 0)  # use the thread pool even for this small search
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (5 * CODE_BLOCK, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (2, 8), dtype=np.uint8)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = topk_search(queries, codes, 10, 64)
    finally:
        numba.set_num_threads(threads)
    split = topk_search(queries, codes, 10, 64)
    np.testing.assert_array_equal(single[0], split[0])
    np.testing.assert_array_equal(single[1], split[1])


def test_fewer_codes_than_k_returns_all_of_them():
    codes = np.array([[3], [1], [3]], dtype=np.uint8)
    rows, distances = topk_search(np.array([[3]], dtype=np.uint8), codes, 10, 8)
    assert rows.tolist() == [[0, 2, 1]]
    assert distances.tolist() == [[0, 0, 1]]


@pytest.mark.parametrize("radius", [0, 3, 8])
def test_range_rows_equals_brute_force(radius):
    rng = np.random.default_rng(radius)
    codes = rng.integers(0, 4, (500, 1), dtype=np.uint8)
    queries = rng.integers(0, 256, (4, 1), dtype=np.uint8)
    reference = hamming_distance(queries, codes)
    for (rows, distances), row in zip(range_rows(queries, codes, radius), reference):
        expected = np.lexsort((np.arange(len(row)), row))
        expected = expected[row[expected] <= radius]
        np.testing.assert_array_equal(rows, expected)
        np.testing.assert_array_equal(distances, row[expected])
