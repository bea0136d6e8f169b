/* Feasibility probe for benchmarks/bench_ceiling.py: the fastest plain scan this CPU allows.
 *
 * Counts, for each query, the 64-bit codes at Hamming distance below a threshold: the
 * count-only pass that dominates an exact top-k search once its bound has settled (no top-k
 * bookkeeping at all, so it is an upper bound on any scan of that design). Codes are visited
 * in blocks of 4096 (32 KiB, one L1d) by every query before the next block, as in
 * hf_cmah/index/kernels.py. Built by the benchmark with `cc -O3 -march=native`; not part of
 * the package.
 */
#include <stdint.h>
#if defined(__AVX2__) || defined(__AVX512VPOPCNTDQ__)
#include <immintrin.h>
#endif

#define BLOCK 4096

enum { PROBE_SCALAR = 1, PROBE_AVX2 = 2, PROBE_AVX512 = 4 };

int probe_variants(void) {
    int variants = PROBE_SCALAR;
#ifdef __AVX2__
    variants |= PROBE_AVX2;
#endif
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
    variants |= PROBE_AVX512;
#endif
    return variants;
}

/* POPCNT one code at a time; kept scalar (the compiler would otherwise vectorise it with whatever the CPU has). */
__attribute__((optimize("no-tree-vectorize"))) int64_t count_below_scalar(const uint64_t *queries, int64_t num_queries, const uint64_t *codes, int64_t num_codes,
                           int64_t bound) {
    int64_t hits = 0;
    for (int64_t start = 0; start < num_codes; start += BLOCK) {
        int64_t stop = start + BLOCK < num_codes ? start + BLOCK : num_codes;
        for (int64_t query = 0; query < num_queries; query++) {
            uint64_t value = queries[query];
            for (int64_t row = start; row < stop; row++) hits += __builtin_popcountll(value ^ codes[row]) < bound;
        }
    }
    return hits;
}

#ifdef __AVX2__
/* Nibble-table popcount (vpshufb) summed per 64-bit lane (vpsadbw): four codes a vector, two queries per load. */
static inline __m256i lane_popcounts(__m256i x) {
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                           2, 2, 3, 2, 3, 3, 4);
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    __m256i low = _mm256_and_si256(x, nibble), high = _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble);
    __m256i bytes = _mm256_add_epi8(_mm256_shuffle_epi8(table, low), _mm256_shuffle_epi8(table, high));
    return _mm256_sad_epu8(bytes, _mm256_setzero_si256());
}

static int64_t lane_sum(__m256i x) {
    int64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, x);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

int64_t count_below_avx2(const uint64_t *queries, int64_t num_queries, const uint64_t *codes, int64_t num_codes,
                         int64_t bound) {
    const __m256i limit = _mm256_set1_epi64x(bound);
    int64_t hits = 0, vector_codes = num_codes - num_codes % 4;
    for (int64_t start = 0; start < vector_codes; start += BLOCK) {
        int64_t stop = start + BLOCK < vector_codes ? start + BLOCK : vector_codes;
        int64_t query = 0;
        for (; query + 1 < num_queries; query += 2) {
            __m256i first = _mm256_set1_epi64x(queries[query]), second = _mm256_set1_epi64x(queries[query + 1]);
            __m256i first_hits = _mm256_setzero_si256(), second_hits = _mm256_setzero_si256();
            for (int64_t row = start; row < stop; row += 4) {
                __m256i block = _mm256_loadu_si256((const __m256i *)(codes + row));
                first_hits = _mm256_sub_epi64(first_hits,
                                              _mm256_cmpgt_epi64(limit, lane_popcounts(_mm256_xor_si256(block, first))));
                second_hits = _mm256_sub_epi64(
                    second_hits, _mm256_cmpgt_epi64(limit, lane_popcounts(_mm256_xor_si256(block, second))));
            }
            hits += lane_sum(_mm256_add_epi64(first_hits, second_hits));
        }
        if (query < num_queries) {  /* an odd last query (or a single one): the same loop, alone */
            __m256i value = _mm256_set1_epi64x(queries[query]), value_hits = _mm256_setzero_si256();
            for (int64_t row = start; row < stop; row += 4) {
                __m256i block = _mm256_loadu_si256((const __m256i *)(codes + row));
                value_hits = _mm256_sub_epi64(value_hits,
                                              _mm256_cmpgt_epi64(limit, lane_popcounts(_mm256_xor_si256(block, value))));
            }
            hits += lane_sum(value_hits);
        }
    }
    return hits + count_below_scalar(queries, num_queries, codes + vector_codes, num_codes - vector_codes, bound);
}
#endif

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
/* vpopcntq: eight codes a vector, two vectors a step, two queries per load. Hits are counted in vector
 * registers (a masked add per vector, four independent accumulators), not by popcounting each compare
 * mask into one scalar sum: that serial chain held this loop at ~0.9 of the kernel on a Zen 5 EPYC. */
static inline __m512i add_below(__m512i hits, __m512i block, __m512i query, __m512i limit, __m512i one) {
    __mmask8 below = _mm512_cmplt_epi64_mask(_mm512_popcnt_epi64(_mm512_xor_si512(block, query)), limit);
    return _mm512_mask_add_epi64(hits, below, hits, one);
}

int64_t count_below_avx512(const uint64_t *queries, int64_t num_queries, const uint64_t *codes, int64_t num_codes,
                           int64_t bound) {
    const __m512i limit = _mm512_set1_epi64(bound), one = _mm512_set1_epi64(1);
    int64_t hits = 0, vector_codes = num_codes - num_codes % 16;
    for (int64_t start = 0; start < vector_codes; start += BLOCK) {
        int64_t stop = start + BLOCK < vector_codes ? start + BLOCK : vector_codes;
        for (int64_t query = 0; query < num_queries; query += 2) {
            int pair = query + 1 < num_queries; /* an odd last query (or a single one) runs alone */
            __m512i first = _mm512_set1_epi64(queries[query]);
            __m512i second = pair ? _mm512_set1_epi64(queries[query + 1]) : first;
            __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
            if (pair) {
                for (int64_t row = start; row < stop; row += 16) {
                    __m512i low = _mm512_loadu_si512((const void *)(codes + row));
                    __m512i high = _mm512_loadu_si512((const void *)(codes + row + 8));
                    a = add_below(a, low, first, limit, one);
                    b = add_below(b, high, first, limit, one);
                    c = add_below(c, low, second, limit, one);
                    d = add_below(d, high, second, limit, one);
                }
            } else {
                for (int64_t row = start; row < stop; row += 16) {
                    a = add_below(a, _mm512_loadu_si512((const void *)(codes + row)), first, limit, one);
                    b = add_below(b, _mm512_loadu_si512((const void *)(codes + row + 8)), first, limit, one);
                }
            }
            hits += _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
        }
    }
    return hits + count_below_scalar(queries, num_queries, codes + vector_codes, num_codes - vector_codes, bound);
}
#endif
