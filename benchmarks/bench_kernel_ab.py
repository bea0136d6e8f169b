"""The exact kernel at another git revision against the working tree's, in one process: is a change faster?

Runs of this shared VM drift by 10–20 % between processes, more than most kernel changes
gain, so a change is judged here by an A/B in one process: the revision's
``hf_cmah/index/{simd,popcount,kernels}.py`` are loaded from ``git show`` as a second package
beside the working tree's, both search the same arrays, in interleaved rounds, and their
distances must agree. The last column is the working tree's speed over the revision's. Any
revision since the kernel took ``kernel=`` (issue 21, 2026-12-01) can be compared.

    python benchmarks/bench_kernel_ab.py --against HEAD~1
    python benchmarks/bench_kernel_ab.py --against 6057f42 --kernel avx2 --threads 2

To see what an AVX2-only CPU would run, on an AVX-512 one (it builds the AVX2 code, which
still runs on this CPU's cores, so it is a guide, not that CPU's speed):

    NUMBA_CPU_NAME=znver3 NUMBA_CPU_FEATURES=$(python benchmarks/bench_kernel_ab.py --avx2-features) \
        NUMBA_CACHE_DIR=/tmp/avx2-cache python benchmarks/bench_kernel_ab.py --against HEAD~1 --kernel avx2
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine_line

from hf_cmah.index import kernels, simd

REPOSITORY = Path(__file__).resolve().parents[1]
KERNEL_FILES = ("simd.py", "popcount.py", "kernels.py")
_LOADED = itertools.count()
# (codes, bits, batch, k): the issue 21 cells, a small index, and each code width's harder case.
CELLS = (
    (1_000_000, 64, 1000, 10),
    (1_000_000, 64, 1, 10),
    (10_000, 64, 1, 10),
    (10_000, 64, 1000, 10),
    (100_000, 128, 1, 10),
    (100_000, 128, 1000, 100),
    (1_000_000, 32, 1, 10),
    (100_000, 16, 1000, 10),
)


def kernel_at(revision: str, directory: Path):
    """The revision's `hf_cmah.index.kernels`, imported as a package of its own under ``directory``."""
    package_name = f"kernel_at_revision_{next(_LOADED)}"  # a new name each time: `sys.modules` keeps the last one
    package = directory / package_name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for file_name in KERNEL_FILES:
        source = subprocess.run(
            ["git", "show", f"{revision}:hf_cmah/index/{file_name}"],
            cwd=REPOSITORY, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        (package / file_name).write_text(source)
    sys.path.insert(0, str(directory))
    return importlib.import_module(f"{package_name}.kernels")


def avx2_features() -> str:
    """The host's LLVM CPU features with every AVX-512 one off, as ``NUMBA_CPU_FEATURES`` takes them."""
    from llvmlite import binding

    def off(name: str) -> bool:
        return name.startswith(("avx512", "avx10")) or name == "evex512"

    features = binding.get_host_cpu_features()
    return ",".join(f"{'+' if on and not off(name) else '-'}{name}" for name, on in features.items())


def search_all(module, queries: np.ndarray, codes: np.ndarray, batch: int, k: int, bits: int, threads, kernel):
    """Distances of every query: one call for a batch, one call per query for ``batch`` 1."""
    if batch > 1:
        return module.topk_search(queries, codes, k, bits, threads, kernel=kernel)[1]
    return np.concatenate([module.topk_search(query[None], codes, k, bits, threads, kernel=kernel)[1]
                           for query in queries])  # fmt: skip


def compare(modules: dict, cells, rounds: int, threads: int, kernel: str | None, single_queries: int, rng):
    """Median q/s of every module in every cell, timed in interleaved rounds; distances checked equal first."""
    rows = []
    for size, bits, batch, k in cells:
        codes = rng.integers(0, 256, (size, bits // 8), dtype=np.uint8)
        queries = rng.integers(0, 256, (batch if batch > 1 else single_queries, bits // 8), dtype=np.uint8)
        results = [search_all(module, queries, codes, batch, k, bits, threads, kernel) for module in modules.values()]
        assert all(np.array_equal(results[0], other) for other in results[1:]), f"distances differ at {size} × {bits}"
        speeds: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(rounds):
            for name, module in modules.items():
                start = time.perf_counter()
                search_all(module, queries, codes, batch, k, bits, threads, kernel)
                speeds[name].append(len(queries) / (time.perf_counter() - start))
        rows.append(((size, bits, batch, k), {name: statistics.median(values) for name, values in speeds.items()}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="the git revision to compare with (HEAD~1, a hash, a tag)")
    parser.add_argument("--kernel", choices=list(simd.REGISTER_BITS), default=None, help="variant (default: chosen)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median)")
    parser.add_argument("--single", type=int, default=100, help="queries of the single-query cells, one call each")
    parser.add_argument("--cells", nargs="+", default=None, metavar="N,BITS,BATCH,K", help="cells (default: 8)")
    parser.add_argument("--avx2-features", action="store_true", help="print this host's features minus AVX-512")
    args = parser.parse_args()
    if args.avx2_features:
        print(avx2_features())
        return
    if not args.against:
        parser.error("--against is required")
    cells = [tuple(int(part) for part in cell.split(",")) for cell in args.cells] if args.cells else CELLS

    with tempfile.TemporaryDirectory() as directory:
        modules = {args.against: kernel_at(args.against, Path(directory)), "working tree": kernels}
        print(f"{machine_line()}; {args.threads} thread(s)")
        print(simd.describe(args.kernel or simd.KERNEL))
        rows = compare(modules, cells, args.rounds, args.threads, args.kernel, args.single, np.random.default_rng(0))
    print(f"| codes | bits | batch | k | {args.against} q/s | working tree q/s | working tree / {args.against} |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for (size, bits, batch, k), speed in rows:
        old, new = speed[args.against], speed["working tree"]
        print(f"| {size:,} | {bits} | {batch} | {k} | {old:,.0f} | {new:,.0f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
