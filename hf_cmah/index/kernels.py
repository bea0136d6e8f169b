"""Exact top-k Hamming search over packed codes, compiled with numba.

Why this shape (benchmarks in docs/BENCHMARKS.md):

- Codes are read as machine words (a zero-copy view: 64 bits → one ``uint64``), so one
  XOR and one popcount give a distance; LLVM vectorises the loop for the host CPU
  (``vpshufb`` popcount on AVX2, ``vpopcntq`` with AVX-512 VPOPCNTDQ).
- Distances are small integers (0..K), so top-k is kept by *counting*: a histogram of
  accepted distances gives the current k-th distance, and a code is looked at again only
  if it beats it. After the first few thousand codes almost nothing does, so the scan is
  a branch-free vectorised count of codes below the bound, per group of codes.
- Codes are scanned in blocks that stay in L1/L2 while every query of a task visits
  them (queries × codes blocking); tasks run on all cores, split by queries for large
  batches and by codes for small ones.
- Ties are broken by row: codes are scanned in increasing row order and an equal
  distance never displaces an earlier row, so results are sorted by (distance, row).

`hf_cmah.codes.hamming_distance` is the NumPy reference these kernels are tested against.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

# Codes per block: 4096 × 8 bytes = 32 KiB of 64-bit codes, one L1d, visited by every query
# of a task before the next block is read.
CODE_BLOCK = 4096
# Each group of this many codes is first counted against a query's bound (vectorised, no
# branches); only on a hit are its rows looked at again, so rescans stay rare. 512 / 32 were
# the fastest of 64/8 … 1024/32 at 10k, 100k and 1M codes (docs/BENCHMARKS.md).
CHECK_GROUP = 512
# A group with a hit is narrowed to sub-groups this size before rows are looked at one by one.
CHECK_SUBGROUP = 32
# Below this many query × code pairs (~1 ms of work) the search runs in the calling thread:
# waking the pool costs more than it saves, and far more on a busy machine.
PARALLEL_MIN_PAIRS = 1 << 22


@intrinsic
def _popcount(typingctx, value):
    """LLVM ``ctpop`` on a uint64: the POPCNT instruction, or a SIMD popcount when vectorised."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return signature, codegen


def as_words(packed: np.ndarray) -> tuple[np.ndarray, int]:
    """Packed codes ``uint8 [N, B]`` as one flat array of the widest unsigned words dividing B, and words per code.

    A flat, contiguous array is what LLVM vectorises (a 2-D view with a column index is ~3×
    slower); it is a view, not a copy, when the codes are contiguous. Popcount does not care
    about the byte order inside a word.
    """
    packed = np.ascontiguousarray(packed)
    width = packed.shape[-1]
    for dtype in (np.uint64, np.uint32, np.uint16, np.uint8):
        itemsize = np.dtype(dtype).itemsize
        if width % itemsize == 0:
            return packed.view(dtype).reshape(-1), width // itemsize
    raise AssertionError("unreachable: every width is a multiple of 1 byte")


@njit(cache=True, nogil=True, inline="always")
def _distance(queries, query, words, row, width):
    """Hamming distance of query row ``query`` to code row ``row`` (flat word arrays, ``width`` words a code)."""
    total = np.uint64(0)
    for word in range(width):
        total += _popcount(np.uint64(queries[query * width + word]) ^ np.uint64(words[row * width + word]))
    return total


@njit(cache=True, nogil=True, inline="always")
def _count_below(queries, query, words, start, stop, width, bound):
    """How many rows ``start:stop`` lie closer than ``bound``: the branch-free loop LLVM vectorises.

    Signed 64-bit compares on purpose: AVX2 has ``vpcmpgtq`` only for signed lanes, and the
    unsigned form costs two extra instructions per 4 codes (~10% of the scan).
    """
    limit = np.int64(bound)
    hits = np.int64(0)
    if width == 1:  # one word per code (16/32/64 bits)
        value = np.uint64(queries[query])
        for row in range(start, stop):
            hits += np.int64(np.int64(_popcount(value ^ np.uint64(words[row]))) < limit)
    elif width == 2:  # 128 bits
        first, second = np.uint64(queries[2 * query]), np.uint64(queries[2 * query + 1])
        for row in range(start, stop):
            total = _popcount(first ^ np.uint64(words[2 * row])) + _popcount(second ^ np.uint64(words[2 * row + 1]))
            hits += np.int64(np.int64(total) < limit)
    else:
        for row in range(start, stop):
            hits += np.int64(np.int64(_distance(queries, query, words, row, width)) < limit)
    return hits


@njit(cache=True, nogil=True)
def _compact(buffer_distances, buffer_rows, fill, counts, k, bound):
    """Keep the k best accepted (distance, row) pairs in row order; return the new fill."""
    below = 0
    for distance in range(bound):
        below += counts[distance]
    ties_left = k - below  # how many rows at exactly the bound still make the top k
    kept = 0
    for slot in range(fill):
        distance = buffer_distances[slot]
        if distance < bound or (distance == bound and ties_left > 0):
            if distance == bound:
                ties_left -= 1
            buffer_distances[kept] = distance
            buffer_rows[kept] = buffer_rows[slot]
            kept += 1
    counts[bound] = k - below
    counts[bound + 1 :] = 0
    return kept


@njit(cache=True, nogil=True)
def _accept_rows(queries, query, words, width, start, stop, k, bound, state_distances, state_rows, state, counts):
    """Rescan rows ``start:stop`` one by one, keeping those closer than ``bound``; return the new bound.

    ``state`` is ``[fill, below]``: the fill of this query's buffer of (distance, row) pairs and
    how many accepted distances lie below the bound; ``counts`` is their histogram. The bound
    is the k-th smallest distance so far (``below < k ≤ below + counts[bound]``), lowered in
    place as rows arrive: O(1) per accepted row, no rescan of the histogram.
    """
    capacity = state_distances.shape[0]
    for row in range(start, stop):
        distance = np.int32(_distance(queries, query, words, row, width))
        if distance >= bound:
            continue
        if state[0] == capacity:
            state[0] = _compact(state_distances, state_rows, state[0], counts, k, bound)
        state_distances[state[0]] = distance
        state_rows[state[0]] = row
        state[0] += 1
        counts[distance] += 1
        state[1] += 1
        while state[1] >= k:
            bound -= 1
            state[1] -= counts[bound]
    return bound


@njit(cache=True, nogil=True)
def _scan(queries, words, width, first_query, last_query, row_offset, k, code_bits, out_rows, out_distances):
    """Top-k of queries ``first_query:last_query`` over ``words`` (rows from ``row_offset``), sorted by (distance, row).

    Loops start at a literal 0 on purpose: with an unknown start LLVM vectorises the
    counting loop ~2.5× worse, so a code split arrives as a slice, not as a start index.
    """
    count = last_query - first_query
    stop = words.shape[0] // width
    state_distances = np.empty((count, 2 * k), np.int32)
    state_rows = np.empty((count, 2 * k), np.int64)
    state = np.zeros((count, 2), np.int64)  # [fill, below] per query
    counts = np.zeros((count, code_bits + 2), np.int64)
    bounds = np.full(count, code_bits + 1, np.int32)  # a distance is accepted if < bound
    for block_start in range(0, stop, CODE_BLOCK):
        block_stop = min(block_start + CODE_BLOCK, stop)
        for slot in range(count):
            query = first_query + slot
            bound = bounds[slot]
            for group_start in range(block_start, block_stop, CHECK_GROUP):
                group_stop = min(group_start + CHECK_GROUP, block_stop)
                if _count_below(queries, query, words, group_start, group_stop, width, bound) == 0:
                    continue
                for sub_start in range(group_start, group_stop, CHECK_SUBGROUP):
                    sub_stop = min(sub_start + CHECK_SUBGROUP, group_stop)
                    if _count_below(queries, query, words, sub_start, sub_stop, width, bound) == 0:
                        continue
                    bound = _accept_rows(
                        queries, query, words, width, sub_start, sub_stop, k, bound,
                        state_distances[slot], state_rows[slot], state[slot], counts[slot],
                    )  # fmt: skip
            bounds[slot] = bound
    for slot in range(count):
        fill = state[slot, 0]
        if bounds[slot] <= code_bits:  # at least k rows seen: drop the ones the bound passed by
            fill = _compact(state_distances[slot], state_rows[slot], fill, counts[slot], k, bounds[slot])
        # counting sort by distance; stable, so rows stay ascending within a distance
        written = 0
        for distance in range(code_bits + 1):
            for item in range(fill):
                if state_distances[slot, item] == distance:
                    out_rows[first_query + slot, written] = state_rows[slot, item] + row_offset
                    out_distances[first_query + slot, written] = distance
                    written += 1


@njit(cache=True, parallel=True)
def _search_tasks(queries, words, width, k, code_bits, query_block, splits):
    """Run (query block × code split) tasks on all threads → per-split top-k ``[splits, Q, k]``."""
    num_queries = queries.shape[0] // width
    num_codes = words.shape[0] // width
    rows = np.full((splits, num_queries, k), -1, np.int64)
    distances = np.full((splits, num_queries, k), code_bits + 1, np.int32)
    query_blocks = (num_queries + query_block - 1) // query_block
    for task in prange(query_blocks * splits):
        block, split = task // splits, task % splits
        first = block * query_block
        last = min(first + query_block, num_queries)
        start = num_codes * split // splits
        stop = num_codes * (split + 1) // splits
        _scan(
            queries, words[start * width : stop * width], width, first, last, start, k, code_bits,
            rows[split], distances[split],
        )  # fmt: skip
    return rows, distances


def topk_search(queries: np.ndarray, codes: np.ndarray, k: int, code_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by Hamming distance: packed ``uint8 [Q, B]`` queries over ``uint8 [N, B]`` codes.

    Returns ``(rows int64 [Q, k'], distances int32 [Q, k'])`` with ``k' = min(k, N)``, sorted by
    distance, ties by row. Uses ``numba.get_num_threads()`` threads.
    """
    num_queries, num_codes = queries.shape[0], codes.shape[0]
    k = min(k, num_codes)
    if num_queries == 0 or k == 0:
        return np.empty((num_queries, k), np.int64), np.empty((num_queries, k), np.int32)
    query_words, width = as_words(queries)
    code_words, _ = as_words(codes)
    if num_queries * num_codes < PARALLEL_MIN_PAIRS:
        rows = np.full((num_queries, k), -1, np.int64)
        distances = np.full((num_queries, k), code_bits + 1, np.int32)
        _scan(query_words, code_words, width, 0, num_queries, 0, k, code_bits, rows, distances)
        return rows, distances
    threads = numba.get_num_threads()
    # Enough tasks to keep every thread busy: split the batch when it is large, the codes when it is small.
    splits = 1 if num_queries >= 2 * threads else min(threads * 2, max(1, num_codes // CODE_BLOCK))
    query_block = max(1, -(-num_queries // (2 * threads))) if splits == 1 else num_queries
    rows, distances = _search_tasks(query_words, code_words, width, k, code_bits, query_block, splits)
    if splits == 1:
        return rows[0], distances[0]
    # Splits are in row order and each is sorted by (distance, row): a stable sort by distance merges them.
    rows = rows.transpose(1, 0, 2).reshape(num_queries, -1)
    distances = distances.transpose(1, 0, 2).reshape(num_queries, -1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(distances, order, axis=1)


@njit(cache=True, parallel=True)
def _range_counts(queries, words, width, radius):
    """Per query, how many rows lie within ``radius`` (first pass of the range search)."""
    num_queries = queries.shape[0] // width
    num_codes = words.shape[0] // width
    counts = np.zeros(num_queries, np.int64)
    for query in prange(num_queries):
        total = 0
        for row in range(num_codes):
            total += _distance(queries, query, words, row, width) <= radius
        counts[query] = total
    return counts


@njit(cache=True, parallel=True)
def _range_fill(queries, words, width, radius, offsets, rows, distances):
    """Second pass: write each query's rows within ``radius`` at its offset, in row order."""
    num_queries = queries.shape[0] // width
    num_codes = words.shape[0] // width
    for query in prange(num_queries):
        slot = offsets[query]
        for row in range(num_codes):
            distance = _distance(queries, query, words, row, width)
            if distance <= radius:
                rows[slot] = row
                distances[slot] = distance
                slot += 1


def range_rows(queries: np.ndarray, codes: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every row within ``radius`` bits of each query: a list of ``(rows, distances)`` sorted by (distance, row)."""
    query_words, width = as_words(queries)
    code_words, _ = as_words(codes)
    counts = _range_counts(query_words, code_words, width, radius)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rows = np.empty(offsets[-1], np.int64)
    distances = np.empty(offsets[-1], np.int32)
    _range_fill(query_words, code_words, width, radius, offsets, rows, distances)
    results = []
    for start, stop in itertools.pairwise(offsets):
        order = np.argsort(distances[start:stop], kind="stable")  # rows are ascending: stable keeps ties by row
        results.append((rows[start:stop][order], distances[start:stop][order]))
    return results


__all__ = ["as_words", "range_rows", "topk_search"]
