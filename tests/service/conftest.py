"""One sample library (model + index with assets) per test session, and a read-only server on it."""

from __future__ import annotations

import pytest

from tests.service.fixtures import SampleLibrary, ServiceProcess, build_sample_library


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory) -> SampleLibrary:
    return build_sample_library(tmp_path_factory.mktemp("sample-library"))


@pytest.fixture(scope="module")
def server(sample_library):
    with ServiceProcess("--model", str(sample_library.model_dir), "--index", str(sample_library.index_dir)) as process:
        yield process
