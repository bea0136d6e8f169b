"""Shared fixtures: tiny deterministic models and synthetic image/point pairs made here, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def synthetic_pairs(count: int, num_points: int, image_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random 3D shapes (blobs of anisotropic Gaussian parts) and their silhouette images.

    Each image is an orthographic projection of its own cloud on the x-y plane, so image and
    shape carry the same geometry: a model can only pair them by learning that relation.
    """
    rng = np.random.default_rng(seed)
    clouds, images = [], []
    for _ in range(count):
        parts = rng.integers(2, 5)
        centres = rng.uniform(-0.6, 0.6, size=(parts, 3))
        scales = rng.uniform(0.05, 0.35, size=(parts, 3))
        owner = rng.integers(0, parts, size=num_points)
        cloud = centres[owner] + rng.normal(size=(num_points, 3)) * scales[owner]
        cloud = (cloud - cloud.mean(0)) / np.linalg.norm(cloud - cloud.mean(0), axis=1).max()
        pixels = np.clip(((cloud[:, :2] + 1) / 2 * (image_size - 1)).round().astype(int), 0, image_size - 1)
        image = np.zeros((3, image_size, image_size), dtype=np.float32)
        image[:, image_size - 1 - pixels[:, 1], pixels[:, 0]] = 1.0
        clouds.append(cloud.astype(np.float32))
        images.append(image)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(clouds))


def mini_config(code_bits: int = 32, **overrides):
    """A smaller-than-tiny CMAH config (32-px images, 256 points, 2 layers): fast enough to train in a test."""
    from hf_cmah import CMAHConfig

    sizes = dict(
        image_size=32,
        num_points=256,
        num_groups=16,
        hidden_size=64,
        intermediate_size=128,
        image_num_hidden_layers=2,
        point_num_hidden_layers=2,
    )
    return CMAHConfig.from_preset("cmah-tiny", code_bits=code_bits, **{**sizes, **overrides})


@pytest.fixture
def tiny_config():
    from hf_cmah import CMAHConfig

    return CMAHConfig.from_preset("cmah-tiny", code_bits=32)


@pytest.fixture
def tiny_model(tiny_config):
    from hf_cmah import CMAHModel

    torch.manual_seed(0)
    return CMAHModel(tiny_config).eval()


@pytest.fixture(scope="session")
def fitted_retriever():
    """A CMAH model fitted to its own twelve synthetic shapes and their silhouettes (seconds; tests/fitted.py)."""
    from tests.fitted import fitted_retriever

    return fitted_retriever()


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory):
    """One sample library (model + index with assets, ~1 min) per session, for tests/service and tests/benchmarks."""
    from tests.service.fixtures import build_sample_library

    return build_sample_library(tmp_path_factory.mktemp("sample-library"))
