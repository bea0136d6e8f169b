"""training/train_prealigned.py on a tiny PSB-layout fixture written here: HCL training runs,
`--resume` continues from the last epoch, and `epochs: 0` (zero-shot) re-scores the saved model."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.conftest import REPO_ROOT

SHAPES = {
    "box": trimesh.creation.box,
    "sphere": lambda: trimesh.creation.icosphere(2),
    "cone": lambda: trimesh.creation.cone(0.5, 1.0),
}


@pytest.fixture(scope="module")
def train_prealigned():
    spec = importlib.util.spec_from_file_location("train_prealigned", REPO_ROOT / "training" / "train_prealigned.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def psb_fixture(tmp_path) -> Path:
    """12 meshes of 3 classes in the PSB `db/` layout with thumbnails and a labels.csv (2 train + 2 test each)."""
    root = tmp_path / "psb"
    rows = []
    for model_id in range(12):
        name = list(SHAPES)[model_id % 3]
        mesh = SHAPES[name]()
        mesh.apply_scale(1.0 + 0.1 * model_id)
        folder = root / "benchmark" / "db" / "0" / f"m{model_id}"
        folder.mkdir(parents=True)
        mesh.export(folder / f"m{model_id}.off")
        shade = 40 + 60 * (model_id % 3)
        Image.new("RGB", (160, 120), (shade, 255 - shade, 128)).save(folder / f"m{model_id}_thumb.jpg")
        split = "train" if model_id < 6 else "test"
        rows.append([model_id, split, name, name, f"benchmark/db/0/m{model_id}/m{model_id}.off"])
    with (root / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["model_id", "split", "psb_class", "class_path", "off_path"], *rows])
    return root


def _run(module, tmp_path, psb, *overrides, resume=False) -> dict:
    args = [
        str(REPO_ROOT / "hf_cmah" / "training" / "configs" / "prealigned-psb-hcl.yaml"),
        f"data.psb={psb}",
        f"data.cache={tmp_path / 'cache'}",
        "data.sampled_points=256",
        "training.batch_size=3",
        "training.seeds_per_batch=1",
        "training.warmup_steps=1",
        f"output.dir={tmp_path / 'run'}",
        *overrides,
    ]
    assert module.main([*args, "--resume"] if resume else args) == 0
    return json.loads((tmp_path / "run" / "result.json").read_text())["result"]


def test_hcl_training_resume_and_zero_shot(train_prealigned, psb_fixture, tmp_path):
    first = _run(train_prealigned, tmp_path, psb_fixture, "training.epochs=2")
    assert [record["epoch"] for record in first["history"]] == [0, 1]
    assert all(np.isfinite(record["loss"]) for record in first["history"])
    assert first["num_queries"] == 6 and 0.0 <= first["map@all"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "epoch_1").is_dir()

    resumed = _run(train_prealigned, tmp_path, psb_fixture, "training.epochs=3", resume=True)
    assert [record["epoch"] for record in resumed["history"]] == [2]  # continued, did not restart

    zero_shot = _run(
        train_prealigned, tmp_path, psb_fixture, "training.epochs=0", f"model.pretrained={tmp_path / 'run' / 'model'}"
    )
    assert zero_shot["epochs"] == 0
    for key in ("acc@1", "acc@10", "map@all"):
        assert zero_shot[key] == pytest.approx(resumed[key])  # the saved model scores exactly as when trained
