"""A read-only server on the session's sample library (the ``sample_library`` fixture is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.service.fixtures import ServiceProcess


@pytest.fixture(scope="module")
def server(sample_library):
    with ServiceProcess("--model", str(sample_library.model_dir), "--index", str(sample_library.index_dir)) as process:
        yield process
