"""The C scan that benchmarks/bench_ceiling.py compares the kernel with counts what NumPy counts."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import bench_ceiling

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")


@pytest.mark.parametrize("num_queries", [1, 2, 5])
def test_every_probe_variant_counts_what_numpy_counts(tmp_path, num_queries):
    probe = bench_ceiling.build_probe(tmp_path)
    rng = np.random.default_rng(num_queries)
    codes = rng.integers(0, 256, (2 * 4096 + 13, 8), dtype=np.uint8)  # two blocks and a ragged tail
    queries = rng.integers(0, 256, (num_queries, 8), dtype=np.uint8)
    distances = np.bitwise_count(codes.view(np.uint64).ravel() ^ queries.view(np.uint64)).astype(np.int64)
    variants = [bit for bit in bench_ceiling.VARIANTS if probe.probe_variants() & bit]
    assert 1 in variants  # the scalar scan is always built
    for bound in (20, 32, 40):
        for bit in variants:
            function = getattr(probe, bench_ceiling.FUNCTIONS[bit])
            assert bench_ceiling.probe_count(function, queries, codes, bound) == int((distances < bound).sum())
