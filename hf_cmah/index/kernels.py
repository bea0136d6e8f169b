"""Exact top-k Hamming search over packed codes, compiled with numba.

Why this shape (benchmarks in docs/BENCHMARKS.md):

- Codes are read as machine words (a zero-copy view: 16, 32 or 64 bits → one word, 128 →
  two), so one XOR and one popcount give a distance.
- Distances are small integers (0..K), so top-k is kept by *counting*: a histogram of
  accepted distances gives the current k-th distance (the bound), and a code is looked at
  again only if it beats it. After the first few thousand codes almost nothing does, so
  the scan is a branch-free pass over codes keeping their minimum distance, group by group,
  written as explicit vectors of the width the CPU runs best (`hf_cmah.index.popcount`,
  chosen by `hf_cmah.index.simd`), two queries per load; a group with a hit gets a bit mask
  of its codes below the bound, and only those codes are visited. For 128-bit and wider
  codes, whose popcount costs twice as much, groups go straight to their mask while hits
  keep coming (the bound is still settling), instead of being scanned first. A batch of
  them reads each block split into two planes (all first words, all second words), so no
  query pays for de-interleaving the word pairs.
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
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from . import simd
from .popcount import PAIRS, PLANES, WORDS, find_first_hit, mask_below

# Words per block: 4096 × 8 bytes = 32 KiB of 64-bit codes, one L1d, visited by every query
# of a task before the next block is read.
CODE_BLOCK = 4096
# The scan stops at each group of this many codes holding a hit, whose hits are then marked in a bit mask
# and visited. A group costs one compare of its minimum distance with the bound, a hit one more pass over
# the group; a multiple of 64 (one mask word) and of the widest step (128 one-byte codes).
CHECK_GROUP = 256
MASK_WORDS = CHECK_GROUP // 64
# From this many queries a task, 128-bit blocks are first split into two planes (first words, second words):
# the count and distance loops then read two plain arrays instead of de-interleaving word pairs for every query,
# 1.2–1.7× faster on batches of 1000 and 1.1–1.3× on batches of 2–7; a single query does not repay the copy.
PLANAR_MIN_QUERIES = 2
# Below this many query × code pairs (~1 ms of work) the search runs in the calling thread:
# waking the pool costs more than it saves, and far more on a busy machine.
PARALLEL_MIN_PAIRS = 1 << 22
# Widest first; dtype objects made once (``np.dtype(...)`` costs ~0.25 µs, a tenth of a small search's overhead).
WORD_DTYPES = tuple(np.dtype(word) for word in (np.uint64, np.uint32, np.uint16, np.uint8))
# The kernel variants as the compiled code sees them: an int argument, so one compiled scan serves all three.
VARIANT_CODES = {name: code for code, name in enumerate(simd.REGISTER_BITS)}
# Every explicit loop (variant × layout × one or two queries) behind one intrinsic, and the hit masks likewise.
_FIRST_HIT = find_first_hit(CHECK_GROUP, tuple(simd.REGISTER_BITS.values()))
_MASK_BELOW = mask_below(CHECK_GROUP, tuple(simd.REGISTER_BITS.values()))


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
def _count_below(queries, query, words, width, bound):
    """How many codes of ``words`` (one group of codes wider than 128 bits) lie closer than ``bound``.

    Left to LLVM's vectoriser: loops start at a literal 0 over a slice (an unknown start index
    vectorises ~2.5× worse).
    """
    limit = np.int64(bound)
    hits = np.int64(0)
    for unit in range(words.shape[0] // width):
        hits += np.int64(np.int64(_distance(queries, query, words, unit, width)) < limit)
    return hits


@njit(cache=True, nogil=True)
def _mask_codes(queries, query, words, width, start, stop, bound, mask):
    """`mask_below` for any code width and any ``stop - start ≤ CHECK_GROUP``; returns whether any bit is set.

    For what the explicit loops do not read: a block's last part group and codes wider than 128 bits.
    """
    mask[:] = 0
    found = False
    for row in range(start, stop):
        if np.int64(_distance(queries, query, words, row, width)) < bound:
            mask[(row - start) >> 6] |= np.uint64(1) << np.uint64((row - start) & 63)
            found = True
    return found


@njit(cache=True, nogil=True, inline="always")
def _split_planes(words, planes):
    """A block of 128-bit codes (word pairs) into ``planes[0]`` (first words) and ``planes[1]`` (second words)."""
    for unit in range(words.shape[0] // 2):
        planes[0, unit] = words[2 * unit]
        planes[1, unit] = words[2 * unit + 1]


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


@njit(cache=True, nogil=True, inline="always")
def _accept_marked(mask, first_row, slot, query, queries, words, width, k, bounds, buffer_distances, buffer_rows,
                   state, counts):  # fmt: skip
    """Accept the codes ``mask`` marks (bit i: row ``first_row + i``) that are closer than the query's bound, in row order.

    ``state[slot]`` is ``[fill, below]``: the fill of this query's buffer of (distance, row)
    pairs and how many accepted distances lie below the bound; ``counts[slot]`` is their
    histogram. The bound is the k-th smallest distance so far (``below < k ≤ below +
    counts[bound]``), lowered in place as rows arrive: O(1) per accepted row, no rescan.
    """
    capacity = buffer_distances.shape[1]
    bound = bounds[slot]
    for word in range(mask.shape[0]):
        bits = mask[word]
        while bits:
            row = first_row + 64 * word + trailing_zeros(bits)
            bits &= bits - np.uint64(1)
            distance = np.int32(_distance(queries, query, words, row, width))
            if distance >= bound:  # the bound moved below it since the mask was made
                continue
            if state[slot, 0] == capacity:
                state[slot, 0] = _compact(
                    buffer_distances[slot], buffer_rows[slot], state[slot, 0], counts[slot], k, bound
                )
            buffer_distances[slot, state[slot, 0]] = distance
            buffer_rows[slot, state[slot, 0]] = row
            state[slot, 0] += 1
            counts[slot, distance] += 1
            state[slot, 1] += 1
            while state[slot, 1] >= k:
                bound -= 1
                state[slot, 1] -= counts[slot, bound]
    bounds[slot] = bound


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
def _scan(variant, queries, words, width, first_query, last_query, row_offset, k, code_bits, out_rows, out_distances):
    """Top-k of queries ``first_query:last_query`` over ``words`` (rows from ``row_offset``), sorted by (distance, row).

    Queries go through each group two at a time (one load, two XORs), except a last odd one.
    """
    count = last_query - first_query
    units = words.shape[0] // width
    buffer_distances = np.empty((count, 2 * k), np.int32)
    buffer_rows = np.empty((count, 2 * k), np.int64)
    state = np.zeros((count, 2), np.int64)  # [fill, below] per query
    counts = np.zeros((count, code_bits + 2), np.int64)
    bounds = np.full(count, code_bits + 1, np.int32)  # a distance is accepted if < bound
    settling = np.zeros(count, np.bool_)
    mask = np.zeros(MASK_WORDS, np.uint64)
    planar = width == 2 and count >= PLANAR_MIN_QUERIES
    planes = np.empty((2, CODE_BLOCK if planar else 0), words.dtype)
    # One-word and 128-bit codes are read by the explicit vector loops, at an address: a slice of an array in
    # the loop costs two atomic reference-count updates, which at 512 codes a group was a quarter of the scan.
    explicit = width <= 2
    layout = WORDS if width == 1 else PLANES if planar else PAIRS
    plane_count = 1 if width == 1 else 2
    first_address = planes[0].ctypes.data if planar else words.ctypes.data
    second_address = planes[1].ctypes.data if planar else first_address
    mask_address = mask.ctypes.data
    for block_start in range(0, units, CODE_BLOCK):
        block_stop = min(block_start + CODE_BLOCK, units)
        if planar:
            _split_planes(words[block_start * width : block_stop * width], planes)
        settling[:] = width >= 2  # wide codes: straight to the hit mask while the bound still moves
        offset = block_start if planar else 0  # planes hold the block's codes only
        whole_stop = block_start + (block_stop - block_start) // CHECK_GROUP * CHECK_GROUP
        for slot in range(0, count, 2):
            pair = slot + 1 < count
            other = slot + 1 if pair else slot
            query, other_query = first_query + slot, first_query + other
            q0a, q0b = queries[plane_count * query], queries[plane_count * query + plane_count - 1]
            q1a, q1b = queries[plane_count * other_query], queries[plane_count * other_query + plane_count - 1]
            position = block_start
            while position < block_stop:
                if explicit and position < whole_stop and not (settling[slot] or settling[other]):
                    # The common case: skip to the first group where either query has a hit.
                    found, hit0, hit1 = _FIRST_HIT(
                        variant, pair, layout, first_address, second_address, position - offset,
                        whole_stop - offset, q0a, q0b, q1a, q1b, bounds[slot], bounds[other],
                    )  # fmt: skip
                    position = found + offset
                    if position == whole_stop:
                        continue
                    for member in range(2 if hit0 and hit1 else 1):
                        member_slot = slot if hit0 and member == 0 else other
                        member_query = first_query + member_slot
                        qa, qb = (q0a, q0b) if member_slot == slot else (q1a, q1b)
                        _MASK_BELOW(variant, layout, first_address, second_address, position - offset, qa, qb,
                                    bounds[member_slot], mask_address)  # fmt: skip
                        _accept_marked(mask, position, member_slot, member_query, queries, words, width, k, bounds,
                                       buffer_distances, buffer_rows, state, counts)  # fmt: skip
                        settling[member_slot] = width >= 2  # hits came: the next groups go straight to their mask
                    position += CHECK_GROUP
                    continue
                # One group at a time: a query still settling, the block's last part group, or codes wider
                # than 128 bits, which the explicit loops do not read.
                group_stop = min(position + CHECK_GROUP, block_stop)
                whole = explicit and group_stop - position == CHECK_GROUP
                for member in range(2 if pair else 1):
                    member_slot, member_query = (slot, query) if member == 0 else (other, other_query)
                    qa, qb = (q0a, q0b) if member == 0 else (q1a, q1b)
                    if whole:
                        hit = _MASK_BELOW(variant, layout, first_address, second_address, position - offset, qa, qb,
                                          bounds[member_slot], mask_address) != 0  # fmt: skip
                    elif not (explicit or settling[member_slot]) and _count_below(
                        queries, member_query, words[position * width : group_stop * width], width,
                        bounds[member_slot],
                    ) == 0:  # fmt: skip
                        hit = False  # wide codes, settled: a vectorised count first, the mask only on a hit
                    else:
                        hit = _mask_codes(queries, member_query, words, width, position, group_stop,
                                          bounds[member_slot], mask)  # fmt: skip
                    if hit:
                        _accept_marked(mask, position, member_slot, member_query, queries, words, width, k, bounds,
                                       buffer_distances, buffer_rows, state, counts)  # fmt: skip
                    settling[member_slot] = hit and width >= 2
                position = group_stop
    for slot in range(count):
        fill = state[slot, 0]
        if bounds[slot] <= code_bits:  # at least k rows seen: drop the ones the bound passed by
            fill = _compact(buffer_distances[slot], buffer_rows[slot], fill, counts[slot], k, bounds[slot])
        _write_sorted(
            buffer_distances[slot], buffer_rows[slot], fill, code_bits, row_offset,
            out_rows[first_query + slot], out_distances[first_query + slot],
        )  # fmt: skip


def topk_search(
    queries: np.ndarray, codes: np.ndarray, k: int, code_bits: int, threads: int | None = None,
    kernel: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Exact top-k by Hamming distance: packed ``uint8 [Q, B]`` queries over ``uint8 [N, B]`` codes.

    Returns ``(rows int64 [Q, k'], distances int32 [Q, k'])`` with ``k' = min(k, N)``, sorted by
    distance, ties by row. ``threads`` defaults to ``NUMBA_NUM_THREADS`` (the CPU count unless set);
    ``kernel`` (``scalar``, ``avx2``, ``avx512``) overrides the inner loop `hf_cmah.index.simd` chose.
    """
    num_queries, num_codes = queries.shape[0], codes.shape[0]
    k = min(k, num_codes)
    if num_queries == 0 or k == 0:
        return np.empty((num_queries, k), np.int64), np.empty((num_queries, k), np.int32)
    threads = threads or numba.config.NUMBA_NUM_THREADS
    variant = VARIANT_CODES[kernel or simd.KERNEL]
    query_words, width = as_words(queries)
    return _search_words(variant, query_words, as_words(codes)[0], width, num_queries, num_codes, k, code_bits, threads)


def _search_words(variant, query_words, code_words, width, num_queries, num_codes, k, code_bits, threads):
    """Run the search in the calling thread, or as (query block × code split) tasks on a thread pool."""
    if threads == 1 or num_queries * num_codes < PARALLEL_MIN_PAIRS:
        rows = np.empty((num_queries, k), np.int64)  # every slot is written: each query sees all ≥ k rows
        distances = np.empty((num_queries, k), np.int32)
        _scan(variant, query_words, code_words, width, 0, num_queries, 0, k, code_bits, rows, distances)
        return rows, distances
    # Enough tasks to keep every thread busy: split the batch when it is large, the codes when it is small.
    splits = 1 if num_queries >= 2 * threads else min(threads * 2, max(1, num_codes // CODE_BLOCK))
    query_block = max(1, -(-num_queries // (2 * threads))) if splits == 1 else num_queries
    rows = np.full((splits, num_queries, k), -1, np.int64)
    distances = np.full((splits, num_queries, k), code_bits + 1, np.int32)

    def task(first: int, split: int) -> None:
        start, stop = num_codes * split // splits, num_codes * (split + 1) // splits
        _scan(
            variant, query_words, code_words[start * width : stop * width], width, first,
            min(first + query_block, num_queries), start, k, code_bits, rows[split], distances[split],
        )  # fmt: skip

    tasks = [(first, split) for first in range(0, num_queries, query_block) for split in range(splits)]
    list(_thread_pool(threads).map(lambda args: task(*args), tasks))
    if splits == 1:
        return rows[0], distances[0]
    # Splits are in row order and each is sorted by (distance, row): merging them is a stable sort by distance.
    rows = rows.transpose(1, 0, 2).reshape(num_queries, -1)
    distances = distances.transpose(1, 0, 2).reshape(num_queries, -1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(distances, order, axis=1)


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
