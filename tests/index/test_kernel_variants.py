"""Every inner loop of the exact kernel (scalar popcnt, AVX2, AVX-512) against the NumPy reference, and how one is chosen.

A variant the CPU lacks still runs here, lowered by LLVM to the instructions the CPU has, so
each one's logic is tested on every machine; that the AVX-512 variant really becomes
``vpopcntq`` on 512-bit registers is checked by compiling it for an AVX-512 CPU model.
"""

import re
import subprocess
import sys

import numba
import numpy as np
import pytest
from llvmlite import binding

from hf_cmah.index import simd
from hf_cmah.index.kernels import CHECK_GROUP, CODE_BLOCK, VARIANT_CODES, topk_search
from hf_cmah.index.popcount import LAYOUTS, PAIRS, PLANES, WORDS, first_hit, mask_below
from tests.index.test_kernels import reference_topk

VARIANTS = list(simd.REGISTER_BITS)


def assert_exact(queries, codes, k, code_bits, kernel, threads=1):
    rows, distances = topk_search(queries, codes, k, code_bits, threads=threads, kernel=kernel)
    expected_rows, expected_distances = reference_topk(queries, codes, k)
    np.testing.assert_array_equal(distances, expected_distances, err_msg=f"{kernel}, {code_bits} bits")
    np.testing.assert_array_equal(rows, expected_rows, err_msg=f"{kernel}, {code_bits} bits")


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("code_bits", range(8, 257, 8))
def test_every_code_length_equals_brute_force(kernel, code_bits):
    """8..256 bits: one-word layouts (8/16/32/64), 128-bit planes, and the generic wider and odd-byte ones."""
    rng = np.random.default_rng(code_bits)
    codes = rng.integers(0, 256, (2 * CODE_BLOCK + 2 * CHECK_GROUP + 37, code_bits // 8), dtype=np.uint8)
    for batch in (1, 2, 5):
        queries = rng.integers(0, 256, (batch, code_bits // 8), dtype=np.uint8)
        for k in (1, 10):
            assert_exact(queries, codes, k, code_bits, kernel)


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("code_bits", [8, 16, 32, 64, 128])
def test_all_codes_equal_ties_go_by_row(kernel, code_bits):
    """Every distance equal: the first k rows, in order, whatever group or block the scan is in."""
    codes = np.full((CODE_BLOCK + CHECK_GROUP + 3, code_bits // 8), 0x5A, np.uint8)
    queries = np.full((3, code_bits // 8), 0x0F, np.uint8)
    assert_exact(queries, codes, 25, code_bits, kernel)


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("code_bits", [16, 64, 128])
def test_ties_at_the_kth_distance(kernel, code_bits):
    """Many codes share the k-th distance, spread over groups and blocks: the lowest rows among them win."""
    rng = np.random.default_rng(7)
    width = code_bits // 8
    codes = rng.integers(0, 256, (3 * CODE_BLOCK, width), dtype=np.uint8)
    queries = np.zeros((2, width), np.uint8)
    one_bit = np.zeros(width, np.uint8)
    one_bit[0] = 1
    rows = rng.choice(len(codes), 300, replace=False)
    codes[rows[:4]] = 0  # four exact matches, then 296 codes at distance 1 where k = 10 cuts
    codes[rows[4:]] = one_bit
    assert_exact(queries, codes, 10, code_bits, kernel)


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("num_codes", [1, 2, 3, 7, CHECK_GROUP - 1, CHECK_GROUP + 1])
@pytest.mark.parametrize("code_bits", [32, 64, 128])
def test_fewer_codes_than_k_and_odd_counts(kernel, num_codes, code_bits):
    """N < k returns all N rows; odd N and part groups need no whole step or group."""
    rng = np.random.default_rng(num_codes)
    codes = rng.integers(0, 256, (num_codes, code_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (3, code_bits // 8), dtype=np.uint8)
    assert_exact(queries, codes, 10, code_bits, kernel)


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("batch", [2, 40])
def test_thread_pool_tasks_equal_brute_force(monkeypatch, kernel, batch):
    """Split by codes (small batch) or by queries (large batch) on 3 threads, for every variant."""
    from hf_cmah.index import kernels

    monkeypatch.setattr(kernels, "PARALLEL_MIN_PAIRS", 0)
    rng = np.random.default_rng(batch)
    codes = rng.integers(0, 256, (5 * CODE_BLOCK + 1, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (batch, 8), dtype=np.uint8)
    assert_exact(queries, codes, 10, 64, kernel, threads=3)


MASK_BELOW = mask_below(CHECK_GROUP, tuple(simd.REGISTER_BITS.values()))


@numba.njit
def marks(variant, layout, first, second, start, query_a, query_b, bound, out):
    return MASK_BELOW(variant, layout, first.ctypes.data, second.ctypes.data, start, query_a, query_b, bound,
                      out.ctypes.data)  # fmt: skip


def expected_marks(distances: np.ndarray, bound: int) -> np.ndarray:
    """The mask words NumPy gives: bit i of word w for code 64 w + i of the group."""
    bits = (distances < bound).astype(np.uint64).reshape(-1, 64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("code_bits", [8, 16, 32, 64, 128])
def test_hit_mask_marks_exactly_the_codes_below_the_bound(variant, code_bits):
    """`mask_below`, every variant and layout, against NumPy: a group away from the start, bounds none/some/all."""
    rng = np.random.default_rng(code_bits)
    word = np.dtype(f"uint{min(code_bits, 64)}")
    codes = rng.integers(0, 256, (3 * CHECK_GROUP, code_bits // 8), dtype=np.uint8)
    query = rng.integers(0, 256, (1, code_bits // 8), dtype=np.uint8)
    start = CHECK_GROUP + 64  # not the first code, not a whole group's offset
    distances = np.bitwise_count(codes ^ query).sum(axis=1)[start : start + CHECK_GROUP]
    words, query_words = codes.view(word).ravel(), query.view(word).ravel()
    if code_bits <= 64:
        layouts = {WORDS: (words, words)}
    else:
        planes = np.ascontiguousarray(words.reshape(-1, 2).T)
        layouts = {PAIRS: (words, words), PLANES: (planes[0], planes[1])}
    query_a, query_b = query_words[0], query_words[-1]
    for layout, (first, second) in layouts.items():
        assert LAYOUTS[layout][0] == (1 if code_bits <= 64 else 2)
        for bound in (0, int(np.median(distances)), code_bits + 1):
            out = np.zeros(CHECK_GROUP // 64, np.uint64)
            found = marks(VARIANT_CODES[variant], layout, first, second, start, query_a, query_b, np.int32(bound), out)
            np.testing.assert_array_equal(
                out, expected_marks(distances, bound), err_msg=f"layout {layout}, bound {bound}"
            )
            assert (found != 0) == bool((distances < bound).any())


def test_the_best_native_variant_is_chosen_from_the_flags():
    assert simd.choose_variant("auto", frozenset({"popcnt", "avx2", "avx512f", "avx512vpopcntdq"})) == "avx512"
    assert simd.choose_variant("auto", frozenset({"popcnt", "avx2", "avx512f"})) == "avx2"  # Skylake-X: no VPOPCNTDQ
    assert simd.choose_variant("auto", frozenset({"popcnt"})) == "scalar"
    assert simd.choose_variant("scalar", frozenset({"popcnt", "avx2"})) == "scalar"
    with pytest.raises(ValueError, match="HF_CMAH_SEARCH_KERNEL='sse9'"):
        simd.choose_variant("sse9")


def test_environment_variable_forces_the_variant_at_import():
    script = "from hf_cmah.index import simd; print(simd.KERNEL); print(simd.describe(simd.KERNEL))"
    environment = {"HF_CMAH_SEARCH_KERNEL": "scalar", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True)
    kernel, description = result.stdout.splitlines()
    assert kernel == "scalar"
    assert "forced by HF_CMAH_SEARCH_KERNEL" in description


def this_cpu_runs(variant: str) -> bool:
    return variant in simd.native_variants()


def assembly_for(cpu: str, register_bits: int) -> str:
    """The x86 assembly of a one-query, one-plane 64-bit count loop compiled for ``cpu`` (any host can do that)."""
    find = first_hit(register_bits, 1, 1, CHECK_GROUP)

    def scan(codes, query, bound):
        return find(codes.ctypes.data, codes.ctypes.data, 0, codes.shape[0], query, query, query, query, bound, bound)

    compiled = numba.njit(scan)  # not cached: the IR is inspected
    compiled(np.zeros(CHECK_GROUP, np.uint64), np.uint64(0), 3)
    ir = compiled.inspect_llvm(compiled.signatures[0])
    ir = re.sub(r'"target-(cpu|features)"="[^"]*"', "", ir)  # compile for `cpu`, not for this host
    module = binding.parse_assembly(ir)
    target = binding.Target.from_triple(binding.get_process_triple())
    return target.create_target_machine(cpu=cpu, opt=3).emit_assembly(module)


def test_avx512_variant_is_vpopcntq_on_zmm_registers():
    """On Sapphire Rapids (tuned to prefer 256-bit vectors) the 512-bit loop still uses zmm and vpopcntq."""
    assembly = assembly_for("sapphirerapids", simd.REGISTER_BITS["avx512"])
    assert re.search(r"vpopcntq\s+%zmm", assembly), "the AVX-512 variant does not use vpopcntq on zmm registers"


def test_avx2_variant_is_the_nibble_table_on_avx2_cpus():
    assembly = assembly_for("haswell", simd.REGISTER_BITS["avx2"])
    assert "vpshufb" in assembly and "%ymm" in assembly


def test_scalar_variant_is_the_popcnt_instruction():
    assembly = assembly_for("sapphirerapids", simd.REGISTER_BITS["scalar"])
    assert re.search(r"\bpopcntq\b", assembly)
    assert "vpopcnt" not in assembly and "vpshufb" not in assembly, "the scalar loop was vectorised"
