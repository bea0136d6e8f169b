"""The compiled kernels against the NumPy reference `hf_cmah.codes.hamming_distance`."""

import numpy as np
import pytest

from hf_cmah.codes import hamming_distance
from hf_cmah.index import kernels
from hf_cmah.index.kernels import CODE_BLOCK, PLANAR_MIN_QUERIES, range_rows, topk_search


def reference_topk(queries, codes, k):
    distances = hamming_distance(queries, codes)
    rows = np.arange(codes.shape[0])
    order = np.array([np.lexsort((rows, row))[:k] for row in distances])
    return order, np.take_along_axis(distances, order, axis=1)


@pytest.mark.parametrize("code_bits", [8, 16, 24, 32, 64, 128])
@pytest.mark.parametrize("k", [1, 10, 100])
@pytest.mark.parametrize("batch", [1, PLANAR_MIN_QUERIES, 9])
def test_topk_equals_brute_force(code_bits, k, batch):
    """One query, and batches large enough for 128-bit blocks to be split into planes (at the threshold, above)."""
    rng = np.random.default_rng(code_bits * 1000 + k + batch)
    codes = rng.integers(0, 256, (3 * CODE_BLOCK + 17, code_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (batch, code_bits // 8), dtype=np.uint8)
    rows, distances = topk_search(queries, codes, k, code_bits)
    expected_rows, expected_distances = reference_topk(queries, codes, k)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(distances, expected_distances)


@pytest.mark.parametrize("code_bits", [16, 128])
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_heavy_ties_are_broken_by_row(code_bits, batch):
    """Few distinct codes: thousands of equal distances, the lowest rows must win."""
    rng = np.random.default_rng(batch)
    distinct = rng.integers(0, 256, (5, code_bits // 8), dtype=np.uint8)
    codes = distinct[rng.integers(0, 5, 2 * CODE_BLOCK + 3)]
    queries = distinct[rng.integers(0, 5, batch)]
    rows, distances = topk_search(queries, codes, 50, code_bits)
    expected_rows, expected_distances = reference_topk(queries, codes, 50)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(distances, expected_distances)


@pytest.mark.parametrize(
    ("code_bits", "num_codes"), [(64, 5 * CODE_BLOCK), (32, 5 * CODE_BLOCK), (32, 5 * CODE_BLOCK + 1)]
)
@pytest.mark.parametrize("batch", [2, 40])
def test_thread_pool_tasks_equal_brute_force(monkeypatch, code_bits, num_codes, batch):
    """Split by codes (small batch) or by queries (large batch) on 3 threads, odd code counts too."""
    monkeypatch.setattr(kernels, "PARALLEL_MIN_PAIRS", 0)  # use the thread pool even for this small search
    rng = np.random.default_rng(num_codes + batch)
    codes = rng.integers(0, 256, (num_codes, code_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (batch, code_bits // 8), dtype=np.uint8)
    rows, distances = topk_search(queries, codes, 10, code_bits, threads=3)
    expected_rows, expected_distances = reference_topk(queries, codes, 10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(distances, expected_distances)
    np.testing.assert_array_equal(topk_search(queries, codes, 10, code_bits, threads=1)[0], expected_rows)


@pytest.mark.parametrize("num_codes", [1, 2, 3, 6, 7])
def test_32_bit_codes_of_any_count(num_codes):
    """Fewer 32-bit codes than one vector step: the scalar end of the scan, ties in row order."""
    codes = np.zeros((num_codes, 4), np.uint8)  # all equal: every distance ties, rows must come in order
    codes[-1, 0] = num_codes % 2  # the last row: distance 1 for an odd count, 0 for an even one
    rows, distances = topk_search(np.zeros((1, 4), np.uint8), codes, num_codes, 32)
    assert rows.tolist() == [list(range(num_codes))]
    expected = [0] * (num_codes - 1) + [1 if num_codes % 2 else 0]
    assert distances.tolist() == [expected]


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
