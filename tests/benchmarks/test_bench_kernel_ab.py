"""benchmarks/bench_kernel_ab.py: the kernel at a git revision loads beside the working tree's and both are timed."""

import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import bench_kernel_ab

from hf_cmah.index import kernels

REPOSITORY = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("git") is None
    or subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True).returncode != 0,
    reason="needs git and a checkout with a commit",
)


def test_a_revision_loads_as_its_own_package_and_gives_the_same_distances(tmp_path):
    revision = bench_kernel_ab.kernel_at("HEAD", tmp_path)
    assert revision is not kernels and Path(revision.__file__).is_relative_to(tmp_path)
    rows = bench_kernel_ab.compare(
        {"HEAD": revision, "working tree": kernels}, [(3000, 64, 1, 10), (3000, 128, 7, 5)], rounds=2,
        threads=1, kernel=None, single_queries=3, rng=np.random.default_rng(0),
    )  # fmt: skip
    assert [cell for cell, _ in rows] == [(3000, 64, 1, 10), (3000, 128, 7, 5)]
    for _, speeds in rows:
        assert set(speeds) == {"HEAD", "working tree"} and all(np.isfinite(v) and v > 0 for v in speeds.values())


def test_kernels_that_disagree_are_not_timed():
    def wrong_topk(queries, codes, k, bits, threads, kernel=None):
        rows, distances = kernels.topk_search(queries, codes, k, bits, threads, kernel=kernel)
        return rows, distances + 1

    wrong = types.SimpleNamespace(topk_search=wrong_topk)
    with pytest.raises(AssertionError, match="distances differ"):
        bench_kernel_ab.compare({"wrong": wrong, "working tree": kernels}, [(500, 64, 2, 3)], 1, 1, None, 2,
                                np.random.default_rng(0))  # fmt: skip


def test_avx2_features_turn_every_avx512_feature_off():
    features = bench_kernel_ab.avx2_features().split(",")
    assert features and all(feature[0] in "+-" for feature in features)
    assert not [feature for feature in features if feature.startswith(("+avx512", "+evex512", "+avx10"))]
    from hf_cmah.index import simd

    assert ("+avx2" in features) == ("avx2" in simd.cpu_features())  # what the host has stays on
