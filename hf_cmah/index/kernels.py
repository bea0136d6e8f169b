"""Exact top-k Hamming search over packed codes, compiled with numba.

Why this shape (benchmarks in docs/BENCHMARKS.md):

- Codes are read as machine words (a zero-copy view: 64 bits → one ``uint64``; two 32-bit
  codes → one ``uint64``), so one XOR and one popcount give a distance; LLVM vectorises
  the loop for the host CPU (``vpshufb`` popcount on AVX2, ``vpopcntq`` with AVX-512 VPOPCNTDQ).
- Distances are small integers (0..K), so top-k is kept by *counting*: a histogram of
  accepted distances gives the current k-th distance (the bound), and a code is looked at
  again only if it beats it. After the first few thousand codes almost nothing does, so
  the scan is a branch-free vectorised count of codes below the bound, group by group; a
  group with a hit gets its distances written to a small buffer (vectorised too), which a
  scalar loop then reads, so no distance is computed one code at a time. For 128-bit and
  wider codes, whose popcount costs twice as much, groups go straight to that buffer while
  hits keep coming (the bound is still settling), instead of being counted first and then
  recomputed: +15–20% at 10k–100k codes, no change at 1M. A batch of them reads each block
  split into two planes (all first words, all second words), so no query pays for
  de-interleaving the word pairs.
- Codes are scanned in blocks that stay in L1/L2 while every query of a task visits
  them (queries × codes blocking); tasks run on all cores, split by queries for large
  batches and by codes for small ones.
- Ties are broken by row: codes are scanned in increasing row order and an equal
  distance never displaces an earlier row, so results are sorted by (distance, row).

`hf_cmah.codes.hamming_distance` is the NumPy reference these kernels are tested against.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from ..codes import hamming_distance

# Words per block: 4096 × 8 bytes = 32 KiB of 64-bit codes, one L1d, visited by every query
# of a task before the next block is read.
CODE_BLOCK = 4096
# Each group of this many codes is first counted against a query's bound (vectorised, no
# branches); only on a hit are its distances written out and read one by one. 64…1024 were
# within noise of each other at 10k–100k 64-bit codes, 512 and 1024 fastest at 1M; for 32-bit
# codes (two a word) 512 codes beat 1024 by 1.3–1.7× at 10k–100k.
CHECK_GROUP = 512
# From this many queries a task, 128-bit blocks are first split into two planes (first words, second words):
# the count and distance loops then read two plain arrays instead of de-interleaving word pairs for every query,
# 1.2–1.7× faster on batches of 1000 and 1.1–1.3× on batches of 2–7; a single query does not repay the copy.
PLANAR_MIN_QUERIES = 2
# Below this many query × code pairs (~1 ms of work) the search runs in the calling thread:
# waking the pool costs more than it saves, and far more on a busy machine.
PARALLEL_MIN_PAIRS = 1 << 22
# Widest first; dtype objects made once (``np.dtype(...)`` costs ~0.25 µs, a tenth of a small search's overhead).
WORD_DTYPES = tuple(np.dtype(word) for word in (np.uint64, np.uint32, np.uint16, np.uint8))
LOW_HALF = np.uint64(0xFFFFFFFF)
HALF_SHIFT = np.uint64(32)


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
    width = packed.shape[-1]
    for dtype in WORD_DTYPES:
        if width % dtype.itemsize == 0:
            return _flat_words(packed, dtype), width // dtype.itemsize
    raise AssertionError("unreachable: every width is a multiple of 1 byte")


def _flat_words(packed: np.ndarray, dtype) -> np.ndarray:
    """The bytes of ``packed`` as a flat array of ``dtype`` words (a view; ``frombuffer`` is the cheapest, ~0.6 µs)."""
    return np.frombuffer(np.ascontiguousarray(packed), dtype)


@njit(cache=True, nogil=True, inline="always")
def _distance(queries, query, words, row, width):
    """Hamming distance of query row ``query`` to code row ``row`` (flat word arrays, ``width`` words a code)."""
    total = np.uint64(0)
    for word in range(width):
        total += _popcount(np.uint64(queries[query * width + word]) ^ np.uint64(words[row * width + word]))
    return total


@njit(cache=True, nogil=True, inline="always")
def _count_below(queries, query, words, firsts, seconds, width, paired, bound):
    """How many codes of ``words`` (one group) lie closer than ``bound``: the branch-free loop LLVM vectorises.

    128-bit groups are read from ``firsts``/``seconds`` (the group split into planes) when
    those are not empty.

    Loops start at a literal 0 over a slice (an unknown start index vectorises ~2.5× worse).
    Signed 64-bit compares on purpose: AVX2 has ``vpcmpgtq`` only for signed lanes, and the
    unsigned form costs two extra instructions per 4 codes (~10% of the scan).
    """
    limit = np.int64(bound)
    hits = np.int64(0)
    units = words.shape[0] // width
    if paired:  # two 32-bit codes a word, the (uint32) query in both halves
        value = np.uint64(queries[query]) | (np.uint64(queries[query]) << HALF_SHIFT)
        for unit in range(units):
            both = value ^ np.uint64(words[unit])
            hits += np.int64(np.int64(_popcount(both & LOW_HALF)) < limit)
            hits += np.int64(np.int64(_popcount(both >> HALF_SHIFT)) < limit)
    elif width == 1:  # one word a code (16/64 bits, or 32 bits as a lone uint32)
        value = np.uint64(queries[query])
        for unit in range(units):
            hits += np.int64(np.int64(_popcount(value ^ np.uint64(words[unit]))) < limit)
    elif width == 2 and firsts.shape[0]:  # 128 bits, split into planes
        first, second = np.uint64(queries[2 * query]), np.uint64(queries[2 * query + 1])
        for unit in range(units):
            total = _popcount(first ^ np.uint64(firsts[unit])) + _popcount(second ^ np.uint64(seconds[unit]))
            hits += np.int64(np.int64(total) < limit)
    elif width == 2:  # 128 bits, word pairs
        first, second = np.uint64(queries[2 * query]), np.uint64(queries[2 * query + 1])
        for unit in range(units):
            total = _popcount(first ^ np.uint64(words[2 * unit])) + _popcount(second ^ np.uint64(words[2 * unit + 1]))
            hits += np.int64(np.int64(total) < limit)
    else:
        for unit in range(units):
            hits += np.int64(np.int64(_distance(queries, query, words, unit, width)) < limit)
    return hits


@njit(cache=True, nogil=True, inline="always")
def _group_distances(queries, query, words, firsts, seconds, width, paired, scratch):
    """Distances of every code of ``words`` (one group) to the query, into ``scratch``; returns the code count.

    128-bit groups are read from ``firsts``/``seconds`` when those are not empty, as in `_count_below`.
    """
    units = words.shape[0] // width
    if paired:
        value = np.uint64(queries[query]) | (np.uint64(queries[query]) << HALF_SHIFT)
        for unit in range(units):
            both = value ^ np.uint64(words[unit])
            scratch[2 * unit] = np.int32(_popcount(both & LOW_HALF))
            scratch[2 * unit + 1] = np.int32(_popcount(both >> HALF_SHIFT))
        return 2 * units
    if width == 1:
        value = np.uint64(queries[query])
        for unit in range(units):
            scratch[unit] = np.int32(_popcount(value ^ np.uint64(words[unit])))
    elif width == 2 and firsts.shape[0]:
        first, second = np.uint64(queries[2 * query]), np.uint64(queries[2 * query + 1])
        for unit in range(units):
            total = _popcount(first ^ np.uint64(firsts[unit])) + _popcount(second ^ np.uint64(seconds[unit]))
            scratch[unit] = np.int32(total)
    elif width == 2:
        first, second = np.uint64(queries[2 * query]), np.uint64(queries[2 * query + 1])
        for unit in range(units):
            total = _popcount(first ^ np.uint64(words[2 * unit])) + _popcount(second ^ np.uint64(words[2 * unit + 1]))
            scratch[unit] = np.int32(total)
    else:
        for unit in range(units):
            scratch[unit] = np.int32(_distance(queries, query, words, unit, width))
    return units


@njit(cache=True, nogil=True, inline="always")
def _split_planes(words, planes):
    """A block of 128-bit codes (word pairs) into ``planes[0]`` (first words) and ``planes[1]`` (second words)."""
    for unit in range(words.shape[0] // 2):
        planes[0, unit] = words[2 * unit]
        planes[1, unit] = words[2 * unit + 1]


@njit(cache=True, nogil=True, inline="always")
def _count_distances_below(distances, bound):
    """How many of ``distances`` (int32) lie below ``bound``: eight a vector instruction."""
    hits = np.int32(0)
    for item in range(distances.shape[0]):
        hits += np.int32(distances[item] < bound)
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
def _accept(scratch, codes, first_row, k, bound, buffer_distances, buffer_rows, state, counts):
    """Accept the codes of a group (distances in ``scratch``) closer than ``bound``, in row order; return the new bound.

    ``state`` is ``[fill, below]``: the fill of this query's buffer of (distance, row) pairs and
    how many accepted distances lie below the bound; ``counts`` is their histogram. The bound
    is the k-th smallest distance so far (``below < k ≤ below + counts[bound]``), lowered in
    place as rows arrive: O(1) per accepted row, no rescan of the histogram.
    """
    capacity = buffer_distances.shape[0]
    for code in range(codes):
        distance = scratch[code]
        if distance >= bound:
            continue
        if state[0] == capacity:
            state[0] = _compact(buffer_distances, buffer_rows, state[0], counts, k, bound)
        buffer_distances[state[0]] = distance
        buffer_rows[state[0]] = first_row + code
        state[0] += 1
        counts[distance] += 1
        state[1] += 1
        while state[1] >= k:
            bound -= 1
            state[1] -= counts[bound]
    return bound


@njit(cache=True, nogil=True)
def _write_sorted(buffer_distances, buffer_rows, fill, code_bits, row_offset, out_rows, out_distances):
    """Counting sort of the kept pairs by distance into the output rows; stable, so ties stay in row order."""
    starts = np.zeros(code_bits + 2, np.int64)
    for item in range(fill):
        starts[buffer_distances[item] + 1] += 1
    for distance in range(code_bits + 1):
        starts[distance + 1] += starts[distance]
    for item in range(fill):
        distance = buffer_distances[item]
        out_rows[starts[distance]] = buffer_rows[item] + row_offset
        out_distances[starts[distance]] = distance
        starts[distance] += 1


@njit(cache=True, nogil=True)
def _scan(queries, words, width, paired, first_query, last_query, row_offset, k, code_bits, out_rows, out_distances):
    """Top-k of queries ``first_query:last_query`` over ``words`` (rows from ``row_offset``), sorted by (distance, row)."""
    count = last_query - first_query
    units = words.shape[0] // width
    codes_per_unit = 2 if paired else 1
    buffer_distances = np.empty((count, 2 * k), np.int32)
    buffer_rows = np.empty((count, 2 * k), np.int64)
    state = np.zeros((count, 2), np.int64)  # [fill, below] per query
    counts = np.zeros((count, code_bits + 2), np.int64)
    bounds = np.full(count, code_bits + 1, np.int32)  # a distance is accepted if < bound
    group_units = CHECK_GROUP // codes_per_unit
    scratch = np.empty(CHECK_GROUP, np.int32)
    planar = width == 2 and count >= PLANAR_MIN_QUERIES
    planes = np.empty((2, CODE_BLOCK if planar else 0), words.dtype)
    for block_start in range(0, units, CODE_BLOCK):
        block_stop = min(block_start + CODE_BLOCK, units)
        if planar:
            _split_planes(words[block_start * width : block_stop * width], planes)
        for slot in range(count):
            query = first_query + slot
            bound = bounds[slot]
            settling = width >= 2  # wide codes: write distances at once while the bound still moves
            for group_start in range(block_start, block_stop, group_units):
                group_stop = min(group_start + group_units, block_stop)
                group = words[group_start * width : group_stop * width]
                firsts = planes[0, group_start - block_start : group_stop - block_start]  # empty unless planar
                seconds = planes[1, group_start - block_start : group_stop - block_start]
                if settling:
                    codes = _group_distances(queries, query, group, firsts, seconds, width, paired, scratch)
                    if _count_distances_below(scratch[:codes], bound) == 0:
                        settling = False  # the bound has settled: back to the cheaper count-only pass
                        continue
                else:
                    if _count_below(queries, query, group, firsts, seconds, width, paired, bound) == 0:
                        continue
                    codes = _group_distances(queries, query, group, firsts, seconds, width, paired, scratch)
                    settling = width >= 2
                bound = _accept(
                    scratch, codes, group_start * codes_per_unit, k, bound,
                    buffer_distances[slot], buffer_rows[slot], state[slot], counts[slot],
                )  # fmt: skip
            bounds[slot] = bound
    for slot in range(count):
        fill = state[slot, 0]
        if bounds[slot] <= code_bits:  # at least k rows seen: drop the ones the bound passed by
            fill = _compact(buffer_distances[slot], buffer_rows[slot], fill, counts[slot], k, bounds[slot])
        _write_sorted(
            buffer_distances[slot], buffer_rows[slot], fill, code_bits, row_offset,
            out_rows[first_query + slot], out_distances[first_query + slot],
        )  # fmt: skip


def _merge_sorted(rows: np.ndarray, distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of per-query candidate lists laid out in row order, each sorted by (distance, row).

    A stable sort by distance keeps rows ascending within a distance.
    """
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(distances, order, axis=1)


def topk_search(
    queries: np.ndarray, codes: np.ndarray, k: int, code_bits: int, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by Hamming distance: packed ``uint8 [Q, B]`` queries over ``uint8 [N, B]`` codes.

    Returns ``(rows int64 [Q, k'], distances int32 [Q, k'])`` with ``k' = min(k, N)``, sorted by
    distance, ties by row. ``threads`` defaults to ``NUMBA_NUM_THREADS`` (the CPU count unless set).
    """
    num_queries, num_codes = queries.shape[0], codes.shape[0]
    k = min(k, num_codes)
    if num_queries == 0 or k == 0:
        return np.empty((num_queries, k), np.int64), np.empty((num_queries, k), np.int32)
    threads = threads or numba.config.NUMBA_NUM_THREADS
    if codes.shape[1] != 4 or num_codes < 2:
        query_words, width = as_words(queries)
        return _search_words(
            query_words, as_words(codes)[0], width, False, num_queries, num_codes, k, code_bits, threads
        )
    # 32-bit codes two to a uint64 (each query in both halves): a widened uint32 lane fits four codes in an AVX2
    # register, a pair eight (~1.4× faster). An odd last row has no partner: it is searched on its own and merged.
    paired_codes = num_codes - num_codes % 2
    code_words = _flat_words(codes[:paired_codes], np.uint64)
    query_words = _flat_words(queries, np.uint32)
    rows, distances = _search_words(
        query_words, code_words, 1, True, num_queries, paired_codes, min(k, paired_codes), code_bits, threads
    )
    if paired_codes == num_codes:
        return rows, distances
    last_distances = hamming_distance(queries, codes[-1:]).astype(np.int32)
    rows = np.concatenate([rows, np.full((num_queries, 1), num_codes - 1, np.int64)], axis=1)
    return _merge_sorted(rows, np.concatenate([distances, last_distances], axis=1), k)


def _search_words(query_words, code_words, width, paired, num_queries, num_codes, k, code_bits, threads):
    """Run the search in the calling thread, or as (query block × code split) tasks on a thread pool."""
    if threads == 1 or num_queries * num_codes < PARALLEL_MIN_PAIRS:
        rows = np.empty((num_queries, k), np.int64)  # every slot is written: each query sees all ≥ k rows
        distances = np.empty((num_queries, k), np.int32)
        _scan(query_words, code_words, width, paired, 0, num_queries, 0, k, code_bits, rows, distances)
        return rows, distances
    units = code_words.shape[0] // width
    codes_per_unit = 2 if paired else 1
    # Enough tasks to keep every thread busy: split the batch when it is large, the codes when it is small.
    splits = 1 if num_queries >= 2 * threads else min(threads * 2, max(1, units // CODE_BLOCK))
    query_block = max(1, -(-num_queries // (2 * threads))) if splits == 1 else num_queries
    rows = np.full((splits, num_queries, k), -1, np.int64)
    distances = np.full((splits, num_queries, k), code_bits + 1, np.int32)

    def task(first: int, split: int) -> None:
        start, stop = units * split // splits, units * (split + 1) // splits
        _scan(
            query_words, code_words[start * width : stop * width], width, paired, first,
            min(first + query_block, num_queries), start * codes_per_unit, k, code_bits, rows[split], distances[split],
        )  # fmt: skip

    tasks = [(first, split) for first in range(0, num_queries, query_block) for split in range(splits)]
    list(_thread_pool(threads).map(lambda args: task(*args), tasks))
    if splits == 1:
        return rows[0], distances[0]
    # Splits are in row order and each is sorted by (distance, row): merging them is a stable sort by distance.
    rows = rows.transpose(1, 0, 2).reshape(num_queries, -1)
    distances = distances.transpose(1, 0, 2).reshape(num_queries, -1)
    return _merge_sorted(rows, distances, k)


@functools.lru_cache(maxsize=4)
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count. The kernel releases the GIL (``nogil``), so Python threads run it in parallel;
    numba's own ``parallel=True`` was ~15% slower here once loaded from its on-disk cache (docs/BENCHMARKS.md)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="hf-cmah-search")


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
