"""A rendered dataset feeds the CMAH model: processor → forward → backward (the issue's "done when")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_cmah.data import BuildSettings, build_to_folder, collect_source, load_built_dataset, select_views
from hf_cmah.render.launcher import RenderSettings

BLENDER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-blender" / "bin" / "python"


@pytest.mark.blender
@pytest.mark.skipif(not BLENDER_PYTHON.is_file(), reason="no .venv-blender: run `make blender-env`")
def test_cmah_tiny_trains_on_a_rendered_procedural_dataset(tmp_path):
    from hf_cmah import CMAHConfig, CMAHForPreTraining, CMAHProcessor

    source = collect_source("procedural", None, per_category=1)
    render = RenderSettings(engine="workbench", resolution=64, num_views=2)
    settings = BuildSettings(num_points=512, render=render, blender=str(BLENDER_PYTHON), progress=False)
    folder, result = build_to_folder(source, settings, out=tmp_path / "built")
    assert not result.failures and result.rendered_views == 20
    train = load_built_dataset(folder)["train"]
    assert len(train) == 20 and train[0]["view"]["kind"] == "render"

    batch = select_views(train, epoch=0, seed=0).select(range(4))
    config = CMAHConfig.from_preset("cmah-tiny")
    processor = CMAHProcessor.from_model_config(config)
    points = [np.asarray(cloud, dtype=np.float32) for cloud in batch["points"]]
    inputs = processor(images=list(batch["image"]), points=points)
    assert inputs["pixel_values"].shape == (4, 3, config.image_size, config.image_size)
    torch.manual_seed(0)
    model = CMAHForPreTraining(config)  # the class with the pre-training loss
    output = model(pixel_values=inputs["pixel_values"], points=inputs["points"])
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert any(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.parameters())
