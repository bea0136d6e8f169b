"""Fixtures of tests/data: an isolated cache per test, and the shared real data sets unpacked once."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets an empty hf-cmah cache, so no test sees another's samples or renders."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HF_CMAH_CACHE", str(cache))
    return cache


def _unpacked(tmp_path_factory, name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"../shared/data/{name} is absent")
    from hf_cmah.data.cache import unpack_archive

    return unpack_archive(folder / f"{name}.tar.xz", tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def psb_root(tmp_path_factory) -> Path:
    """``psb_v1_mini`` unpacked once per session (the folder holding ``benchmark/``)."""
    return _unpacked(tmp_path_factory, "psb_v1_mini")


@pytest.fixture(scope="session")
def pix3d_root(tmp_path_factory) -> Path:
    """``pix3d_mini`` unpacked once per session."""
    return _unpacked(tmp_path_factory, "pix3d_mini")
