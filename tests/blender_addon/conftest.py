"""Fixtures of the add-on tests: the add-on's bpy-free modules importable here, the stand-in service,
the built zip, and a runner for the scenarios that need Blender (``blender_driver.py`` in .venv-blender)."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from .standin import StandIn, png_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON_DIR = REPO_ROOT / "blender_addon"
BLENDER_PYTHON = REPO_ROOT / ".venv-blender" / "bin" / "python"
DRIVER = Path(__file__).with_name("blender_driver.py")
PACKAGE = "hf_cmah_shape_search_under_test"


def load_addon_module(name: str) -> types.ModuleType:
    """Imports ``blender_addon/<name>.py`` as a submodule of a package whose ``__init__`` (which needs bpy)
    never runs: the modules without bpy are tested in this Python, as the worker threads run them."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(ADDON_DIR)]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def query_png(tmp_path) -> Path:
    path = tmp_path / "query.png"
    path.write_bytes(png_bytes(24))
    return path


@pytest.fixture
def dead_urls():
    """Two services that fail: a closed port (connection refused) and one that accepts but never answers."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = closed.getsockname()[1]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        yield f"http://127.0.0.1:{refused}", f"http://127.0.0.1:{silent.getsockname()[1]}"


def failure(name: str, action: str, url: str, *, image: Path | None = None, model: str = "", **prefs) -> dict:
    """One case of the driver's ``errors`` scenario."""
    return {"name": name, "action": action, "image": str(image), "model": model, "prefs": {"service_url": url, **prefs}}


def assert_failures_reported(seen: dict, expected: dict[str, str]) -> None:
    """Each case: the expected words in the status line, an ERROR report printed, the scene's counts unchanged."""
    for name, text in expected.items():
        outcome = seen[name]
        assert text in outcome["status"] and outcome["level"] == "ERROR", (name, outcome)
        assert outcome["counts_after"] == outcome["counts_before"], (name, outcome)
        assert f"Error: {outcome['status']}" in seen["output"], (name, seen["output"][-4000:])  # Blender's reports


@pytest.fixture
def standin():
    with StandIn() as server:
        yield server


def make_addon(dist: Path, source: Path = ADDON_DIR) -> subprocess.CompletedProcess:
    """``make blender-addon`` with the zip going to ``dist`` (and the sources taken from ``source``)."""
    if not BLENDER_PYTHON.is_file():
        pytest.skip("no .venv-blender: run `make blender-env`")
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "blender-addon", f"DIST={dist}", f"ADDON_SRC={source}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory) -> Path:
    """The extension built and validated by ``make blender-addon`` (into a temporary DIST)."""
    dist = tmp_path_factory.mktemp("dist")
    completed = make_addon(dist)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (zip_path,) = dist.glob("hf_cmah_shape_search-*.zip")
    return zip_path


@pytest.fixture
def run_blender(addon_zip, tmp_path):
    """Runs one scenario of ``blender_driver.py`` with the zip installed into a fresh HOME; returns its report."""

    def run(scenario: str, timeout: float = 120, env: dict[str, str] | None = None, **arguments) -> dict:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        report = tmp_path / f"{scenario}.json"
        job = tmp_path / f"{scenario}-job.json"
        job.write_text(json.dumps({"zip": str(addon_zip), "report": str(report), **arguments}))
        environment = {**os.environ, **(env or {}), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
        environment.pop("BLENDER_USER_RESOURCES", None)
        completed = subprocess.run(
            [str(BLENDER_PYTHON), str(DRIVER), scenario, str(job)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )
        output = completed.stdout + completed.stderr
        assert completed.returncode == 0, f"{scenario} failed:\n{output[-12000:]}"
        result = json.loads(report.read_text())
        result["output"] = output
        return result

    return run
