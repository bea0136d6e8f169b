"""How close the exact kernel is to this CPU's ceiling: hf-cmah vs faiss vs a hand-written C scan → docs/BENCHMARKS.md.

Issue 9 set its 1M × 64-bit targets (≥ 10× faiss batched, ≥ 8× single) from a C feasibility
probe on an AVX-512 VPOPCNTDQ machine. This benchmark repeats that probe on the machine it
runs on, in the same process and on the same arrays as faiss ``IndexBinaryFlat`` (k = 10)
and ``hf_cmah.index.kernels.topk_search`` (k = 10), one thread:

- ``benchmarks/ceiling/popcount_scan.c``, built here with ``cc -O3 -march=native``, counts the
  codes below the settled top-10 bound for every query: the count-only pass with no top-k
  bookkeeping, so no exact scan of this design can beat it. It has a scalar ``popcnt``
  variant, an AVX2 nibble-table variant and, where the CPU has it, an AVX-512 ``vpopcntq`` one.
- Its counts are checked against NumPy before anything is timed.

    python benchmarks/bench_ceiling.py                       # 1M × 64 bits, batch 1000 and single queries
    python benchmarks/bench_ceiling.py --size 10000000 --repeats 3
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numba
import numpy as np
from bench_search import timed
from machine import simd_flags

from hf_cmah.index.kernels import topk_search

SOURCE = Path(__file__).parent / "ceiling" / "popcount_scan.c"
VARIANTS = {1: "scalar popcnt", 2: "AVX2 vpshufb", 4: "AVX-512 vpopcntq"}
FUNCTIONS = {1: "count_below_scalar", 2: "count_below_avx2", 4: "count_below_avx512"}


def build_probe(directory: Path) -> ctypes.CDLL:
    """Compile the probe for this CPU; a clear error if there is no C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("bench_ceiling.py needs a C compiler (cc or gcc) to build benchmarks/ceiling/popcount_scan.c")
    library = directory / "popcount_scan.so"
    subprocess.run([compiler, "-O3", "-march=native", "-shared", "-fPIC", str(SOURCE), "-o", str(library)], check=True)
    probe = ctypes.CDLL(str(library))
    probe.probe_variants.restype = ctypes.c_int
    for name in FUNCTIONS.values():
        if hasattr(probe, name):
            function = getattr(probe, name)
            function.restype = ctypes.c_int64
            function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    return probe


def probe_count(function, queries: np.ndarray, codes: np.ndarray, bound: int) -> int:
    """Run one probe variant over packed ``uint8 [Q, 8]`` queries and ``[N, 8]`` codes."""
    query_words, code_words = queries.view(np.uint64).ravel(), codes.view(np.uint64).ravel()
    return function(query_words.ctypes.data, len(query_words), code_words.ctypes.data, len(code_words), bound)


def per_query_seconds(function, queries: np.ndarray, batch: int, repeats: int) -> float:
    """Median seconds per query: one call for the whole batch, or one call per query when ``batch`` is 1."""
    if batch == 1:
        seconds, _ = timed(lambda: [function(query[None]) for query in queries], repeats)
    else:
        seconds, _ = timed(lambda: function(queries), repeats)
    return seconds / len(queries)


def check_probe(probe: ctypes.CDLL, variants: list[int], queries: np.ndarray, codes: np.ndarray, bound: int) -> None:
    """Every probe variant must count what NumPy counts before it is timed."""
    distances = np.bitwise_count(codes.view(np.uint64) ^ queries.view(np.uint64).T).astype(np.int64)
    expected = int((distances < bound).sum())
    for bit in variants:
        got = probe_count(getattr(probe, FUNCTIONS[bit]), queries, codes, bound)
        assert got == expected, f"probe {VARIANTS[bit]} counted {got}, NumPy {expected}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="64-bit codes in the library")
    parser.add_argument("--batch", type=int, default=1000, help="queries of the batched rows")
    parser.add_argument("--single", type=int, default=200, help="queries timed one call each for the single rows")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import faiss

    numba.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (args.size, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.batch, 8), dtype=np.uint8)
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    faiss_distances = index.search(queries, 10)[0]
    assert np.array_equal(topk_search(queries, codes, 10, 64, 1)[1], faiss_distances)
    bound = int(np.median(faiss_distances[:, -1]))  # the settled bound of a typical query: closer than its 10th
    with tempfile.TemporaryDirectory() as directory:
        probe = build_probe(Path(directory))
        variants = [bit for bit in VARIANTS if probe.probe_variants() & bit]
        check_probe(probe, variants, queries[:20], codes, bound)
        print(f"CPU SIMD: {simd_flags()}; faiss {faiss.__version__}; numba {numba.__version__}; 1 thread")
        print(f"{args.size:,} × 64-bit codes, k = 10, probe bound {bound} (median 10th distance)")
        print("| method | batch | q/s | × faiss |")
        print("|---|---:|---:|---:|")
        methods = {
            "faiss IndexBinaryFlat (top-10)": lambda q: index.search(q, 10),
            "hf-cmah topk_search (top-10)": lambda q: topk_search(q, codes, 10, 64, 1),
        }
        for bit in variants:
            function = getattr(probe, FUNCTIONS[bit])
            methods[f"C probe, {VARIANTS[bit]} (count only)"] = lambda q, f=function: probe_count(f, q, codes, bound)
        for batch, batch_queries in ((args.batch, queries), (1, queries[: args.single])):
            faiss_seconds = None
            for name, method in methods.items():
                seconds = per_query_seconds(method, batch_queries, batch, args.repeats)
                faiss_seconds = faiss_seconds or seconds  # faiss is the first row
                print(f"| {name} | {batch} | {1 / seconds:,.0f} | {faiss_seconds / seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
