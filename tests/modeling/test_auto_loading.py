"""Saved CMAH folders load through the Auto classes: locally, from a Hub-style offline cache,
and with trust_remote_code where hf_cmah is not importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoProcessor

from hf_cmah import CMAHConfig, CMAHModel, CMAHProcessor, pack_codes
from tests.conftest import REPO_ROOT
from tests.loopback_hub import cached_snapshot

HUB_ID = "hf-cmah-tests/cmah-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _sample_inputs(processor: CMAHProcessor):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    return processor(images=image, points=trimesh.creation.annulus(0.3, 0.6, 0.4))


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = CMAHConfig.from_preset("cmah-tiny", code_bits=32)
    folder = tmp_path_factory.mktemp("cmah-tiny")
    CMAHModel(config).save_pretrained(folder)
    CMAHProcessor.from_model_config(config).save_pretrained(folder)
    return folder


def _codes(model, inputs) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        return pack_codes(model.get_image_codes(inputs["pixel_values"])), pack_codes(
            model.get_shape_codes(inputs["points"])
        )


def test_saved_folder_is_safetensors_with_auto_map(saved_folder):
    files = set(os.listdir(saved_folder))
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert {
        "modeling_cmah.py",
        "configuration_cmah.py",
        "point_layers.py",
        "vit_layers.py",
        "processing_cmah.py",
    } <= files
    auto_map = json.loads((saved_folder / "config.json").read_text())["auto_map"]
    assert auto_map == {"AutoConfig": "configuration_cmah.CMAHConfig", "AutoModel": "modeling_cmah.CMAHModel"}


def test_auto_classes_give_identical_codes(saved_folder):
    original = CMAHModel.from_pretrained(saved_folder).eval()
    loaded = AutoModel.from_pretrained(saved_folder).eval()
    processor = AutoProcessor.from_pretrained(saved_folder)
    assert isinstance(loaded, CMAHModel) and isinstance(processor, CMAHProcessor)
    assert isinstance(AutoConfig.from_pretrained(saved_folder), CMAHConfig)
    inputs = _sample_inputs(processor)
    for a, b in zip(_codes(original, inputs), _codes(loaded, inputs)):
        assert np.array_equal(a, b)


def test_buffers_survive_meta_device_loading(saved_folder):
    """transformers 5 builds on the meta device: BatchNorm statistics must come back from the file."""
    loaded = AutoModel.from_pretrained(saved_folder)
    for name, buffer in loaded.named_buffers():
        assert buffer.device.type == "cpu" and torch.isfinite(buffer.float()).all(), name


def _run_python(code: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


_PRINT_CODES = """
    import numpy as np, torch, trimesh
    from PIL import Image
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    inputs = processor(images=image, points=trimesh.creation.annulus(0.3, 0.6, 0.4))
    with torch.no_grad():
        a = np.packbits(model.get_image_codes(inputs["pixel_values"]).numpy() > 0, axis=-1)
        b = np.packbits(model.get_shape_codes(inputs["points"]).numpy() > 0, axis=-1)
    print(a.tolist(), b.tolist())
"""


def _expected_line(saved_folder) -> str:
    model = CMAHModel.from_pretrained(saved_folder).eval()
    a, b = _codes(model, _sample_inputs(CMAHProcessor.from_pretrained(saved_folder)))
    return f"{a.tolist()} {b.tolist()}"


def test_hub_style_id_from_offline_cache(saved_folder, tmp_path):
    """A pre-populated HF_HOME cache serves `org/name` with HF_HUB_OFFLINE=1 (no network)."""
    cached_snapshot(tmp_path / "hub", "model", HUB_ID, saved_folder, COMMIT)
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    code = textwrap.dedent(f"""
        import hf_cmah
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained("{HUB_ID}").eval()
        processor = AutoProcessor.from_pretrained("{HUB_ID}")
    """) + textwrap.dedent(_PRINT_CODES)
    assert _run_python(code, env, cwd=REPO_ROOT) == _expected_line(saved_folder)


def test_trust_remote_code_without_the_package(saved_folder, tmp_path):
    """A subprocess where `import hf_cmah` fails loads the folder from its own copied code files."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    code = textwrap.dedent(f"""
        import sys
        sys.modules["hf_cmah"] = None  # the package is not importable here
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained("{saved_folder}", trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained("{saved_folder}", trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
    """) + textwrap.dedent(_PRINT_CODES)
    assert _run_python(code, env, cwd=tmp_path) == _expected_line(saved_folder)
