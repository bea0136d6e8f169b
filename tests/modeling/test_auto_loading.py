"""Saved CMAH folders load through the Auto classes: locally, from a Hub-style offline cache,
and with trust_remote_code where hf_cmah is not importable; pre-training checkpoints load for
retrieval, and folders of the single class before the split still load into both classes."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from safetensors.torch import load_file, load_model, save_file
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoProcessor

from hf_cmah import CMAHConfig, CMAHForPreTraining, CMAHModel, CMAHProcessor, pack_codes
from tests.conftest import REPO_ROOT
from tests.loopback_hub import cached_snapshot

CMAH_HEAD = re.compile(r"^(image|point)_(decoder|mask_token)|^fusion_layers\.")  # CMAHForPreTraining's own weights
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


@pytest.fixture(scope="module")
def pretraining_folder(tmp_path_factory) -> Path:
    """What training saves (final/, best/): CMAHForPreTraining with its head, and the processor."""
    torch.manual_seed(1)
    config = CMAHConfig.from_preset("cmah-tiny", code_bits=32)
    folder = tmp_path_factory.mktemp("cmah-tiny-pretraining")
    CMAHForPreTraining(config).save_pretrained(folder)
    CMAHProcessor.from_model_config(config).save_pretrained(folder)
    return folder


def _codes(model, inputs) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        return pack_codes(model.get_image_codes(inputs["pixel_values"])), pack_codes(
            model.get_shape_codes(inputs["points"])
        )


@pytest.mark.parametrize("kind", ["retrieval", "pretraining"])
def test_saved_folder_is_safetensors_with_auto_map(saved_folder, pretraining_folder, kind):
    folder = saved_folder if kind == "retrieval" else pretraining_folder
    files = set(os.listdir(folder))
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert {
        "modeling_cmah.py",
        "configuration_cmah.py",
        "input_checks.py",
        "point_layers.py",
        "vit_layers.py",
        "processing_cmah.py",
    } <= files
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {  # both classes, whichever was saved, so trust_remote_code loads either
        "AutoConfig": "configuration_cmah.CMAHConfig",
        "AutoModel": "modeling_cmah.CMAHModel",
        "AutoModelForPreTraining": "modeling_cmah.CMAHForPreTraining",
    }


def test_auto_classes_give_identical_codes(saved_folder):
    original = CMAHModel.from_pretrained(saved_folder).eval()
    loaded = AutoModel.from_pretrained(saved_folder).eval()
    processor = AutoProcessor.from_pretrained(saved_folder)
    assert isinstance(loaded, CMAHModel) and isinstance(processor, CMAHProcessor)
    assert isinstance(AutoConfig.from_pretrained(saved_folder), CMAHConfig)
    inputs = _sample_inputs(processor)
    for a, b in zip(_codes(original, inputs), _codes(loaded, inputs)):
        assert np.array_equal(a, b)


def test_pretraining_checkpoint_loads_for_retrieval_with_identical_codes(pretraining_folder, caplog):
    """AutoModel on what training saved: the encoders and hash heads, the head dropped with one log line."""
    trained = CMAHForPreTraining.from_pretrained(pretraining_folder).eval()
    with caplog.at_level(logging.WARNING):
        loaded, info = AutoModel.from_pretrained(pretraining_folder, output_loading_info=True)
    assert type(loaded) is CMAHModel and not hasattr(loaded, "fusion_layers")
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    head_keys = len(trained.state_dict()) - len(trained.cmah.state_dict())
    (line,) = [record.getMessage() for record in caplog.records if "pre-training weights" in record.getMessage()]
    assert f"not loading the {head_keys} pre-training weights" in line and "CMAHForPreTraining" in line
    inputs = _sample_inputs(AutoProcessor.from_pretrained(pretraining_folder))
    for a, b in zip(_codes(trained.cmah, inputs), _codes(loaded.eval(), inputs)):
        assert np.array_equal(a, b)
    for name, tensor in trained.cmah.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_retrieval_folder_loads_into_the_pretraining_class(saved_folder):
    """The encoders come from the folder (under ``cmah.``); only the head is new, initialised afresh."""
    retrieval = CMAHModel.from_pretrained(saved_folder)
    pretraining, info = AutoModelForPreTraining.from_pretrained(saved_folder, output_loading_info=True)
    assert type(pretraining) is CMAHForPreTraining
    assert info["missing_keys"] and all(CMAH_HEAD.match(key) for key in info["missing_keys"])
    for name, tensor in retrieval.state_dict().items():
        assert torch.equal(pretraining.cmah.state_dict()[name], tensor), name


def _single_class_folder(pretraining_folder: Path, folder: Path) -> Path:
    """The layout of the one CMAHModel class before the split (checked key for key against a folder saved at
    commit 4c6459d): encoders and head side by side at the top level, architectures ["CMAHModel"]."""
    shutil.copytree(pretraining_folder, folder)
    weights = load_file(folder / "model.safetensors")
    save_file({key.removeprefix("cmah."): tensor for key, tensor in weights.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["CMAHModel"]
    config["auto_map"] = {"AutoConfig": "configuration_cmah.CMAHConfig", "AutoModel": "modeling_cmah.CMAHModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_single_class_layout_loads_into_both_classes(pretraining_folder, tmp_path):
    old = _single_class_folder(pretraining_folder, tmp_path / "old")
    assert not any(key.startswith("cmah.") for key in load_file(old / "model.safetensors"))
    trained = CMAHForPreTraining.from_pretrained(pretraining_folder)
    pretraining, info = CMAHForPreTraining.from_pretrained(old, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    for name, tensor in trained.state_dict().items():
        assert torch.equal(pretraining.state_dict()[name], tensor), name
    inputs = _sample_inputs(CMAHProcessor.from_pretrained(old))
    retrieval = AutoModel.from_pretrained(old).eval()
    for a, b in zip(_codes(trained.cmah.eval(), inputs), _codes(retrieval, inputs)):
        assert np.array_equal(a, b)


def test_single_class_training_checkpoint_resumes_into_the_pretraining_class(pretraining_folder, tmp_path):
    """``step_N/model.safetensors`` of a run before the split: accelerate's load_state calls torch's
    strict load (safetensors.torch.load_model), which takes the old keys too."""
    trained = CMAHForPreTraining.from_pretrained(pretraining_folder)
    old = _single_class_folder(pretraining_folder, tmp_path / "old") / "model.safetensors"
    resumed = CMAHForPreTraining(trained.config)
    load_model(resumed, old)  # strict: raises on any missing or unexpected key
    for name, tensor in trained.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


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


@pytest.mark.parametrize("kind", ["retrieval", "pretraining"])
def test_trust_remote_code_without_the_package(saved_folder, pretraining_folder, tmp_path, kind):
    """A subprocess where `import hf_cmah` fails loads the folder from its own copied code files, as the
    retrieval model (AutoModel) and as the pre-training model (AutoModelForPreTraining, a finite loss)."""
    folder = saved_folder if kind == "retrieval" else pretraining_folder
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    code = textwrap.dedent(f"""
        import sys
        sys.modules["hf_cmah"] = None  # the package is not importable here
        import torch
        from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor
        model = AutoModel.from_pretrained("{folder}", trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained("{folder}", trust_remote_code=True)
        pretraining = AutoModelForPreTraining.from_pretrained("{folder}", trust_remote_code=True)
        for loaded, name in ((model, "CMAHModel"), (processor, "CMAHProcessor"), (pretraining, "CMAHForPreTraining")):
            assert type(loaded).__module__.startswith("transformers_modules"), type(loaded).__module__
            assert type(loaded).__name__ == name, type(loaded).__name__
        size = model.config.image_size
        loss = pretraining(torch.zeros(2, 3, size, size), torch.rand(2, model.config.num_points, 3)).loss
        assert torch.isfinite(loss), loss
    """) + textwrap.dedent(_PRINT_CODES)
    assert _run_python(code, env, cwd=tmp_path) == _expected_line(folder)
