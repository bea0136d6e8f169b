"""PreAlignedShapeModel: configs and presets, both shape towers, retriever protocol, save/load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_cmah.evaluation.encoding import codes_and_embeds
from hf_cmah.modeling import PREALIGNED_PRESETS, ModelInputError, PreAlignedShapeConfig, PreAlignedShapeModel


def tiny_config(architecture: str = "ppat", **overrides) -> PreAlignedShapeConfig:
    shape = {
        "architecture": architecture,
        "in_channels": 6,
        "num_points": 128,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_groups": 16,
        "group_size": 16,
        "group_radius": 0.4 if architecture == "ppat" else None,
        "set_abstraction_channels": [16, 24],
        "group_encoder_channels": [16, 16, 32, 24],
        "position_hidden_size": 16,
    }
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}  # fmt: skip
    return PreAlignedShapeConfig(vision_config=vision, shape_config=shape, projection_dim=24, **overrides)


def inputs(seed: int = 0, batch: int = 3):
    generator = torch.Generator().manual_seed(seed)
    points = torch.cat([torch.rand(batch, 128, 3, generator=generator) * 2 - 1, torch.rand(batch, 128, 3)], dim=-1)
    return torch.randn(batch, 3, 32, 32, generator=generator), points


@pytest.mark.parametrize("name", sorted(PREALIGNED_PRESETS))
def test_presets_are_valid_configs(name):
    config = PreAlignedShapeConfig.from_preset(name)
    assert config.shape_config.feature_size in (config.projection_dim, config.shape_config.hidden_size,
                                                2 * config.shape_config.hidden_size)  # fmt: skip
    restored = PreAlignedShapeConfig.from_dict(config.to_dict())
    assert restored.shape_config.to_dict() == config.shape_config.to_dict()
    assert restored.vision_config.hidden_size == config.vision_config.hidden_size


def test_preset_sizes_follow_the_originals():
    g14 = PreAlignedShapeConfig.from_preset("openshape-pointbert-vitg14")
    assert (g14.shape_config.hidden_size, g14.shape_config.intermediate_size, g14.shape_config.num_groups) == (
        512,
        1536,
        384,
    )
    assert (g14.shape_config.group_radius, g14.shape_config.group_size, g14.shape_config.up_axis) == (0.2, 64, "z")
    assert g14.projection_dim == 1280 and g14.vision_config.hidden_size == 1664
    b32 = PreAlignedShapeConfig.from_preset("openshape-pointbert-vitb32")
    assert b32.shape_projection == "identity" and b32.projection_dim == 512
    ulip = PreAlignedShapeConfig.from_preset("ulip2-pointbert-vitg14")
    assert ulip.shape_config.feature_size == 768 and ulip.shape_config.num_hidden_layers == 18
    assert ulip.shape_projection == "linear_no_bias"


def test_invalid_configs_are_rejected():
    with pytest.raises(ValueError, match="architecture"):
        tiny_config(architecture="pointnet")
    with pytest.raises(ValueError, match="code_bits"):
        tiny_config(code_bits=12)
    with pytest.raises(ValueError, match="identity"):
        tiny_config(shape_projection="identity")


@pytest.mark.parametrize("architecture", ["ppat", "pointbert"])
def test_retriever_protocol_and_round_trip(tmp_path, architecture):
    torch.manual_seed(0)
    model = PreAlignedShapeModel(tiny_config(architecture, code_bits=16)).eval()
    pixels, points = inputs()
    with torch.no_grad():
        image_embeds = model.get_image_embeds(pixels)
        shape_embeds = model.get_shape_embeds(points)
        output = model(pixels, points)
        codes = model.get_shape_codes(points)
    assert image_embeds.shape == shape_embeds.shape == (3, 24)
    torch.testing.assert_close(shape_embeds.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(output.logits_per_image, model.logit_scale.exp() * image_embeds @ shape_embeds.T)
    assert codes.dtype == torch.int8 and codes.shape == (3, 16) and set(codes.unique().tolist()) <= {-1, 1}
    torch.testing.assert_close(codes, torch.where(output.shape_code_logits >= 0, 1, -1).to(torch.int8))
    with torch.no_grad():  # one pass of each tower gives what the two protocol calls give
        for modality, tensor, embeds in (("image", pixels, image_embeds), ("shape", points, shape_embeds)):
            combined_codes, combined_embeds = codes_and_embeds(model, modality, tensor)
            torch.testing.assert_close(combined_embeds, embeds)
            torch.testing.assert_close(combined_codes, getattr(model, f"get_{modality}_codes")(tensor))

    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    AutoConfig.register(PreAlignedShapeConfig.model_type, PreAlignedShapeConfig, exist_ok=True)
    AutoModel.register(PreAlignedShapeConfig, PreAlignedShapeModel, exist_ok=True)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_shape_embeds(points), shape_embeds)
        torch.testing.assert_close(loaded.get_image_embeds(pixels), image_embeds)
        torch.testing.assert_close(loaded.get_shape_codes(points), codes)


def test_shape_encoding_is_deterministic_and_batch_independent():
    torch.manual_seed(1)
    model = PreAlignedShapeModel(tiny_config()).eval()
    _, points = inputs(seed=2, batch=1)
    with torch.no_grad():
        first = model.get_shape_embeds(points)
        assert torch.equal(first, model.get_shape_embeds(points))
        torch.testing.assert_close(model.get_shape_embeds(points.repeat(2, 1, 1))[:1], first)


def test_colourless_clouds_get_the_default_grey():
    torch.manual_seed(2)
    model = PreAlignedShapeModel(tiny_config()).eval()
    _, points = inputs(seed=3)
    grey = torch.cat([points[..., :3], torch.full_like(points[..., :3], 0.4)], dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(model.get_shape_embeds(points[..., :3]), model.get_shape_embeds(grey))


def test_bad_inputs_raise_plain_errors():
    model = PreAlignedShapeModel(tiny_config()).eval()
    pixels, points = inputs()
    with pytest.raises(ModelInputError, match="no binarisation head"):
        model.get_shape_codes(points)
    with pytest.raises(ModelInputError, match=r"\[batch, num_points, 3\]"):
        model.get_shape_embeds(points[..., :4])
    with pytest.raises(ModelInputError, match="fewer than"):
        model.get_shape_embeds(points[:, :8])
    with pytest.raises(ModelInputError, match="NaN"):
        model.get_shape_embeds(points.clone().fill_(float("nan")))
    with pytest.raises(ModelInputError, match="pixel_values must have shape"):
        model.get_image_embeds(pixels[:, :, :16])


def test_binarisation_head_preserves_neighbourhoods_before_training():
    # Gaussian rows make sign(W e) a random-hyperplane hash: close embeddings share more bits.
    torch.manual_seed(3)
    model = PreAlignedShapeModel(tiny_config(code_bits=256)).eval()
    anchor = torch.nn.functional.normalize(torch.randn(24), dim=0)
    near = torch.nn.functional.normalize(anchor + 0.1 * torch.randn(24), dim=0)
    far = torch.nn.functional.normalize(torch.randn(24), dim=0)
    bits = torch.sign(model.code_projection(torch.stack([anchor, near, far])))
    assert (bits[0] == bits[1]).float().mean() > (bits[0] == bits[2]).float().mean()


def test_trust_remote_code_round_trip_without_the_package(tmp_path):
    """A saved folder names its classes in ``auto_map``; a subprocess where `import hf_cmah` fails loads it from
    the copied code files and gives the same embeddings and codes."""
    torch.manual_seed(4)
    model = PreAlignedShapeModel(tiny_config("pointbert", code_bits=16)).eval()
    model.save_pretrained(tmp_path / "model")
    auto_map = json.loads((tmp_path / "model" / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_prealigned.PreAlignedShapeConfig",
        "AutoModel": "modeling_prealigned.PreAlignedShapeModel",
    }
    pixels, points = inputs(seed=5)
    torch.save({"pixels": pixels, "points": points}, tmp_path / "inputs.pt")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["hf_cmah"] = None  # the package is not importable here
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained("{tmp_path / "model"}", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        tensors = torch.load("{tmp_path / "inputs.pt"}")
        with torch.no_grad():
            torch.save({{"image": model.get_image_embeds(tensors["pixels"]),
                        "shape": model.get_shape_embeds(tensors["points"]),
                        "codes": model.get_shape_codes(tensors["points"])}}, "{tmp_path / "remote.pt"}")
    """)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "remote.pt")
    with torch.no_grad():
        torch.testing.assert_close(remote["image"], model.get_image_embeds(pixels), rtol=0, atol=0)
        torch.testing.assert_close(remote["shape"], model.get_shape_embeds(points), rtol=0, atol=0)
        assert torch.equal(remote["codes"], model.get_shape_codes(points))
