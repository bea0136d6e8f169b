"""How close the exact kernel is to this CPU's ceiling: hf-cmah vs faiss vs a hand-written C scan → docs/BENCHMARKS.md.

Issue 9 set its 1M × 64-bit targets (≥ 10× faiss batched, ≥ 8× single) from a C feasibility
probe on an AVX-512 VPOPCNTDQ machine. This benchmark repeats that probe on the machine it
runs on, in the same process and on the same arrays as faiss ``IndexBinaryFlat`` (k = 10)
and ``hf_cmah.index.kernels.topk_search`` (k = 10), one thread unless ``--threads``:

- ``benchmarks/ceiling/popcount_scan.c``, built here with ``cc -O3 -march=native``, counts the
  codes below the settled top-10 bound for every query: the count-only pass with no top-k
  bookkeeping, so no exact scan of this design can beat it. It has a scalar ``popcnt``
  variant, an AVX2 nibble-table variant and, where the CPU has it, an AVX-512 ``vpopcntq`` one.
- Its counts are checked against NumPy before anything is timed.

Our kernel is timed in the variant `hf_cmah.index.simd` chose and in every other variant the
CPU runs natively; the last column is each row's speed over the fastest probe variant's.

    python benchmarks/bench_ceiling.py                       # 1M × 64 bits, batch 1000 and single queries
    python benchmarks/bench_ceiling.py --threads 2           # both cores, the probe split over two threads
    python benchmarks/bench_ceiling.py --size 10000000 --rounds 3
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
from machine import let_openmp_idle, machine_line

from hf_cmah.index import simd
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


def per_query_seconds(methods: dict, queries: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    """Median seconds per query of every method, timed in interleaved rounds (each round calls each method once).

    Interleaving makes a drift of this shared machine's speed hit every method alike, so the
    ratios of one run hold even when the absolute figures move. ``batch`` 1 calls each query
    separately; otherwise one call takes the whole batch. Each timing starts once faiss's
    OpenMP workers have stopped spinning.
    """
    times: dict[str, list[float]] = {name: [] for name in methods}
    for method in methods.values():  # warm-up: JIT, page faults, caches
        method(queries[:batch])
    for _ in range(rounds):
        for name, method in methods.items():
            let_openmp_idle()
            start = time.perf_counter()
            if batch == 1:
                for query in queries:
                    method(query[None])
            else:
                method(queries)
            times[name].append((time.perf_counter() - start) / len(queries))
    return {name: statistics.median(values) for name, values in times.items()}


def threaded_probe(function, codes: np.ndarray, bound: int, threads: int):
    """The probe on ``threads`` threads (ctypes releases the GIL): a batch split by queries, one query by codes."""
    pool = ThreadPoolExecutor(threads)

    def run(queries: np.ndarray) -> int:
        if threads == 1:
            return probe_count(function, queries, codes, bound)
        if len(queries) >= threads:
            parts = [(part, codes) for part in np.array_split(queries, threads)]
        else:
            parts = [(queries, part) for part in np.array_split(codes, threads)]
        return sum(pool.map(lambda args: probe_count(function, args[0], args[1], bound), parts))

    return run


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
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds (median)")
    parser.add_argument("--threads", type=int, default=1, help="threads for every method, the probe included")
    args = parser.parse_args()

    import faiss

    numba.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (args.size, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.batch, 8), dtype=np.uint8)
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    faiss_distances = index.search(queries, 10)[0]
    kernels = list(dict.fromkeys([simd.KERNEL, *reversed(simd.native_variants())]))  # the chosen one first
    for kernel in kernels:
        assert np.array_equal(topk_search(queries, codes, 10, 64, args.threads, kernel=kernel)[1], faiss_distances)
    bound = int(np.median(faiss_distances[:, -1]))  # the settled bound of a typical query: closer than its 10th
    with tempfile.TemporaryDirectory() as directory:
        probe = build_probe(Path(directory))
        variants = [bit for bit in VARIANTS if probe.probe_variants() & bit]
        check_probe(probe, variants, queries[:20], codes, bound)
        print(f"{machine_line()}; faiss {faiss.__version__}; numba {numba.__version__}; {args.threads} thread(s)")
        print(simd.describe(simd.KERNEL))
        print(f"{args.size:,} × 64-bit codes, k = 10, probe bound {bound} (median 10th distance), "
              f"median of {args.rounds} interleaved rounds")  # fmt: skip
        print("| method | batch | q/s | × faiss | × best C probe |")
        print("|---|---:|---:|---:|---:|")
        methods = {"faiss IndexBinaryFlat (top-10)": lambda q: index.search(q, 10)}
        for kernel in kernels:
            methods[f"hf-cmah topk_search, {kernel} (top-10)"] = lambda q, kernel=kernel: topk_search(
                q, codes, 10, 64, args.threads, kernel=kernel
            )
        for bit in variants:
            function = getattr(probe, FUNCTIONS[bit])
            methods[f"C probe, {VARIANTS[bit]} (count only)"] = threaded_probe(function, codes, bound, args.threads)
        for batch, batch_queries in ((args.batch, queries), (1, queries[: args.single])):
            seconds = per_query_seconds(methods, batch_queries, batch, args.rounds)
            faiss_seconds = seconds["faiss IndexBinaryFlat (top-10)"]
            best_probe = min(value for name, value in seconds.items() if name.startswith("C probe"))
            for name, value in seconds.items():
                print(
                    f"| {name} | {batch} | {1 / value:,.0f} | {faiss_seconds / value:.1f} | {best_probe / value:.2f} |"
                )


if __name__ == "__main__":
    main()
