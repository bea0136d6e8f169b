"""OpenShape / ULIP-2 converters: checkpoints in the original key layouts (random weights, tiny
widths) are written here, converted, loaded with `AutoModel`, and compared with a reference
forward of the original layer arrangement written in this file (plain loops over one cloud,
independent of hf_cmah.modeling), for the same FPS start point (index 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoProcessor, CLIPConfig, CLIPModel

from hf_cmah.convert import CheckpointLayoutError, convert_openshape, convert_ulip2
from hf_cmah.modeling import PreAlignedShapeConfig, PreAlignedShapeModel

NUM_POINTS = 96


@pytest.fixture(scope="module", autouse=True)
def register_auto_classes():
    AutoConfig.register(PreAlignedShapeConfig.model_type, PreAlignedShapeConfig, exist_ok=True)
    AutoModel.register(PreAlignedShapeConfig, PreAlignedShapeModel, exist_ok=True)


def tiny_clip(folder, projection_dim: int):
    torch.manual_seed(1)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=projection_dim,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    return model


def random_points(seed: int, channels: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    xyz = torch.rand(2, NUM_POINTS, 3, generator=generator) * 2 - 1
    rgb = torch.rand(2, NUM_POINTS, 3, generator=generator)
    return torch.cat([xyz, rgb], dim=-1)[..., :channels]


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.double(), b.double(), dim=-1)


# ----------------------------------------------------------------------------- reference helpers
def ref_fps(xyz: torch.Tensor, count: int) -> list[int]:
    chosen = [0]
    nearest = torch.full((xyz.shape[0],), float("inf"))
    for _ in range(count - 1):
        nearest = torch.minimum(nearest, ((xyz - xyz[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(nearest.argmax()))
    return chosen


def ref_ball_query(xyz: torch.Tensor, centre: torch.Tensor, radius: float, count: int) -> list[int]:
    distances = ((xyz - centre) ** 2).sum(-1)
    inside = [i for i in range(xyz.shape[0]) if distances[i] <= radius**2][:count]
    return inside + [inside[0]] * (count - len(inside))


def ref_knn(xyz: torch.Tensor, centre: torch.Tensor, count: int) -> list[int]:
    return ((xyz - centre) ** 2).sum(-1).argsort()[:count].tolist()


def ref_batchnorm(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    """Eval-mode BatchNorm over the last axis."""
    scale = sd[f"{name}.weight"] / torch.sqrt(sd[f"{name}.running_var"] + 1e-5)
    return (x - sd[f"{name}.running_mean"]) * scale + sd[f"{name}.bias"]


def ref_layernorm(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-5)


def ref_attention(x: torch.Tensor, qkv: torch.Tensor, out_w, out_b, heads: int) -> torch.Tensor:
    tokens = x.shape[0]
    q, k, v = (x @ qkv.T).chunk(3, dim=-1)
    q, k, v = (t.reshape(tokens, heads, -1).transpose(0, 1) for t in (q, k, v))  # (h, n, d)
    weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
    return (weights @ v).transpose(0, 1).reshape(tokens, -1) @ out_w.T + out_b


# ----------------------------------------------------------------------------- OpenShape PPAT
PPAT = {"dim": 32, "depth": 2, "heads": 2, "mlp": 48, "sa": [16, 16, 24], "patches": 12, "radius": 0.5, "nsample": 16}


def ppat_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Random weights under PointPatchTransformer's own parameter names (no prefix)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, std=0.3):
        return torch.randn(*shape, generator=generator) * std

    sd = {}
    last = 3 + 6
    for i, width in enumerate(PPAT["sa"]):
        sd[f"sa.mlp_convs.{i}.weight"] = randn(width, last, 1, 1)
        sd[f"sa.mlp_convs.{i}.bias"] = randn(width, std=0.1)
        sd[f"sa.mlp_bns.{i}.weight"] = 1 + randn(width, std=0.1)
        sd[f"sa.mlp_bns.{i}.bias"] = randn(width, std=0.1)
        sd[f"sa.mlp_bns.{i}.running_mean"] = randn(width, std=0.1)
        sd[f"sa.mlp_bns.{i}.running_var"] = 0.5 + torch.rand(width, generator=generator)
        sd[f"sa.mlp_bns.{i}.num_batches_tracked"] = torch.tensor(7)
        last = width
    dim = PPAT["dim"]
    sd["lift.0.weight"] = randn(dim, last + 3, 1)
    sd["lift.0.bias"] = randn(dim, std=0.1)
    sd["lift.2.weight"] = 1 + randn(dim, std=0.1)
    sd["lift.2.bias"] = randn(dim, std=0.1)
    sd["cls_token"] = randn(dim, std=1.0)
    for i in range(PPAT["depth"]):
        p = f"transformer.layers.{i}."
        sd[p + "0.norm.weight"] = 1 + randn(dim, std=0.1)
        sd[p + "0.norm.bias"] = randn(dim, std=0.1)
        sd[p + "0.fn.to_qkv.weight"] = randn(3 * dim, dim, std=0.2)
        sd[p + "0.fn.to_out.0.weight"] = randn(dim, dim, std=0.2)
        sd[p + "0.fn.to_out.0.bias"] = randn(dim, std=0.1)
        sd[p + "1.norm.weight"] = 1 + randn(dim, std=0.1)
        sd[p + "1.norm.bias"] = randn(dim, std=0.1)
        sd[p + "1.fn.net.0.weight"] = randn(PPAT["mlp"], dim, std=0.2)
        sd[p + "1.fn.net.0.bias"] = randn(PPAT["mlp"], std=0.1)
        sd[p + "1.fn.net.3.weight"] = randn(dim, PPAT["mlp"], std=0.2)
        sd[p + "1.fn.net.3.bias"] = randn(dim, std=0.1)
    return sd


def ref_ppat(sd: dict, features: torch.Tensor) -> torch.Tensor:
    """PointPatchTransformer.forward for one cloud ``[N, 6]`` (xyz + rgb) → CLS feature ``[dim]``."""
    xyz = features[:, :3]
    centres = xyz[ref_fps(xyz, PPAT["patches"])]
    pooled = []
    for centre in centres:
        idx = ref_ball_query(xyz, centre, PPAT["radius"], PPAT["nsample"])
        h = torch.cat([xyz[idx] - centre, features[idx]], dim=-1)  # (S, 9): relative xyz, then all features
        for i in range(len(PPAT["sa"])):
            w = sd[f"sa.mlp_convs.{i}.weight"][:, :, 0, 0]
            h = torch.relu(ref_batchnorm(h @ w.T + sd[f"sa.mlp_convs.{i}.bias"], sd, f"sa.mlp_bns.{i}"))
        pooled.append(h.max(dim=0).values)
    x = torch.cat([centres, torch.stack(pooled)], dim=-1) @ sd["lift.0.weight"][:, :, 0].T + sd["lift.0.bias"]
    x = torch.cat([sd["cls_token"][None], ref_layernorm(x, sd, "lift.2")])
    for i in range(PPAT["depth"]):
        p = f"transformer.layers.{i}."
        h = ref_layernorm(x, sd, p + "0.norm")
        x = x + ref_attention(
            h, sd[p + "0.fn.to_qkv.weight"], sd[p + "0.fn.to_out.0.weight"], sd[p + "0.fn.to_out.0.bias"], PPAT["heads"]
        )
        h = ref_layernorm(x, sd, p + "1.norm")
        h = F.gelu(h @ sd[p + "1.fn.net.0.weight"].T + sd[p + "1.fn.net.0.bias"])
        x = x + h @ sd[p + "1.fn.net.3.weight"].T + sd[p + "1.fn.net.3.bias"]
    return x[0]


def ppat_config(projection_dim: int, shape_projection: str) -> PreAlignedShapeConfig:
    return PreAlignedShapeConfig(
        shape_config={
            "architecture": "ppat",
            "in_channels": 6,
            "num_points": NUM_POINTS,
            "hidden_size": PPAT["dim"],
            "num_hidden_layers": PPAT["depth"],
            "num_attention_heads": PPAT["heads"],
            "intermediate_size": PPAT["mlp"],
            "set_abstraction_channels": PPAT["sa"],
            "num_groups": PPAT["patches"],
            "group_radius": PPAT["radius"],
            "group_size": PPAT["nsample"],
        },
        projection_dim=projection_dim,
        shape_projection=shape_projection,
    )


@pytest.mark.parametrize("variant", ["g14", "l14", "b32"])
def test_openshape_layouts_convert_and_match_the_reference(tmp_path, variant):
    sd = ppat_state_dict(seed=3)
    projection_dim = PPAT["dim"] if variant == "b32" else 20
    generator = torch.Generator().manual_seed(4)
    proj = {"weight": torch.randn(projection_dim, PPAT["dim"], generator=generator) * 0.2,
            "bias": torch.randn(projection_dim, generator=generator) * 0.1}  # fmt: skip
    if variant == "g14":
        weights = {f"module.ppat.{k}": v for k, v in sd.items()}
        weights |= {f"module.proj.{k}": v for k, v in proj.items()}
        checkpoint = {
            "state_dict": weights,
            "logit_scale": {"module.logit_scale": torch.tensor(math.log(50.0))},
            "text_proj": None,
            "image_proj": None,
            "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4}]},
            "epoch": 3,
        }
    elif variant == "l14":
        checkpoint = {f"pc_encoder.ppat.{k}": v for k, v in sd.items()}
        checkpoint |= {f"pc_encoder.proj.{k}": v for k, v in proj.items()}
    else:
        checkpoint = {f"pc_encoder.{k}": v for k, v in sd.items()}
    torch.save(checkpoint, tmp_path / "model.pt")
    clip = tiny_clip(tmp_path / "clip", projection_dim)
    config = ppat_config(projection_dim, "identity" if variant == "b32" else "linear")

    out, report = convert_openshape(tmp_path / "model.pt", tmp_path / "out", clip=tmp_path / "clip", config=config)
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    card = (out / "README.md").read_text()
    assert "Apache-2.0" in card and "OpenShape" in card
    if variant == "g14":
        assert "optimizer" in report.training_state and "epoch" in report.training_state

    model = AutoModel.from_pretrained(out).eval()
    assert isinstance(model, PreAlignedShapeModel)
    processor = AutoProcessor.from_pretrained(out)
    assert processor.model_up_axis == config.shape_config.up_axis and processor.image_mean[0] == pytest.approx(
        0.4815, abs=1e-4
    )
    assert processor(points=np.zeros((5, 3)))["points"].shape[-1] == config.shape_config.in_channels
    points = random_points(seed=5)
    with torch.no_grad():
        ours = model.get_shape_features(points)
    reference = torch.stack([ref_ppat(sd, cloud) for cloud in points])
    if variant != "b32":
        reference = reference @ proj["weight"].T + proj["bias"]
    assert ours.shape == (2, projection_dim)
    assert cosine(ours, reference).min() >= 0.999
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-4)

    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = clip.get_image_features(pixel_values=pixels)
        expected = expected if isinstance(expected, torch.Tensor) else expected.pooler_output
        torch.testing.assert_close(model.get_image_features(pixels), expected, rtol=1e-4, atol=1e-5)
    if variant == "g14":
        assert float(model.logit_scale.detach()) == pytest.approx(math.log(50.0))


def test_openshape_unknown_and_missing_keys_are_listed(tmp_path):
    sd = {f"pc_encoder.{k}": v for k, v in ppat_state_dict(seed=0).items()}
    tiny_clip(tmp_path / "clip", PPAT["dim"])
    config = ppat_config(PPAT["dim"], "identity")

    extra = dict(sd)
    extra["pc_encoder.transformer.layers.0.0.fn.pe.0.weight"] = torch.zeros(64, 3, 1, 1)
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointLayoutError, match=r"pe\.0\.weight"):
        convert_openshape(tmp_path / "extra.pt", tmp_path / "o1", clip=tmp_path / "clip", config=config)

    missing = {k: v for k, v in sd.items() if "lift.2" not in k}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointLayoutError, match=r"missing .*shape_model\.lift_norm\.bias"):
        convert_openshape(tmp_path / "missing.pt", tmp_path / "o2", clip=tmp_path / "clip", config=config)

    wrong = dict(sd)
    wrong["pc_encoder.cls_token"] = torch.zeros(PPAT["dim"] + 1)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointLayoutError, match="shapes differ"):
        convert_openshape(tmp_path / "wrong.pt", tmp_path / "o3", clip=tmp_path / "clip", config=config)


# ----------------------------------------------------------------------------- ULIP-2 Point-BERT
PB = {"dim": 24, "depth": 2, "heads": 2, "groups": 10, "size": 8, "enc": [16, 20, 28, 18], "pos": 12, "out": 20}


def pointbert_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Random weights under ULIP2_WITH_OPENCLIP's parameter names (no ``module.`` prefix)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, std=0.3):
        return torch.randn(*shape, generator=generator) * std

    def batchnorm(name, width):
        sd[f"{name}.weight"] = 1 + randn(width, std=0.1)
        sd[f"{name}.bias"] = randn(width, std=0.1)
        sd[f"{name}.running_mean"] = randn(width, std=0.1)
        sd[f"{name}.running_var"] = 0.5 + torch.rand(width, generator=generator)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(11)

    sd = {}
    h1, g1, h2, out = PB["enc"]
    e = "point_encoder.encoder."
    sd[e + "first_conv.0.weight"], sd[e + "first_conv.0.bias"] = randn(h1, 6, 1), randn(h1, std=0.1)
    batchnorm(e + "first_conv.1", h1)
    sd[e + "first_conv.3.weight"], sd[e + "first_conv.3.bias"] = randn(g1, h1, 1), randn(g1, std=0.1)
    sd[e + "second_conv.0.weight"], sd[e + "second_conv.0.bias"] = randn(h2, 2 * g1, 1), randn(h2, std=0.1)
    batchnorm(e + "second_conv.1", h2)
    sd[e + "second_conv.3.weight"], sd[e + "second_conv.3.bias"] = randn(out, h2, 1), randn(out, std=0.1)
    dim = PB["dim"]
    sd["point_encoder.reduce_dim.weight"], sd["point_encoder.reduce_dim.bias"] = randn(dim, out), randn(dim, std=0.1)
    sd["point_encoder.cls_token"] = randn(1, 1, dim)
    sd["point_encoder.cls_pos"] = randn(1, 1, dim)
    sd["point_encoder.pos_embed.0.weight"], sd["point_encoder.pos_embed.0.bias"] = randn(PB["pos"], 3), randn(PB["pos"])
    sd["point_encoder.pos_embed.2.weight"], sd["point_encoder.pos_embed.2.bias"] = randn(dim, PB["pos"]), randn(dim)
    for i in range(PB["depth"]):
        p = f"point_encoder.blocks.blocks.{i}."
        sd[p + "norm1.weight"], sd[p + "norm1.bias"] = 1 + randn(dim, std=0.1), randn(dim, std=0.1)
        sd[p + "attn.qkv.weight"] = randn(3 * dim, dim, std=0.2)
        sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"] = randn(dim, dim, std=0.2), randn(dim, std=0.1)
        sd[p + "norm2.weight"], sd[p + "norm2.bias"] = 1 + randn(dim, std=0.1), randn(dim, std=0.1)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = randn(4 * dim, dim, std=0.2), randn(4 * dim, std=0.1)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = randn(dim, 4 * dim, std=0.2), randn(dim, std=0.1)
    sd["point_encoder.norm.weight"], sd["point_encoder.norm.bias"] = 1 + randn(dim, std=0.1), randn(dim, std=0.1)
    sd["pc_projection"] = randn(2 * dim, PB["out"])
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return sd


def ref_pointbert(sd: dict, cloud: torch.Tensor) -> torch.Tensor:
    """PointTransformer_Colored.forward for one cloud ``[N, 6]``, then ``@ pc_projection``."""
    xyz, rgb = cloud[:, :3], cloud[:, 3:]
    centres = xyz[ref_fps(xyz, PB["groups"])]
    e = "point_encoder.encoder."

    def conv(x, name):
        return x @ sd[f"{name}.weight"][:, :, 0].T + sd[f"{name}.bias"]

    tokens = []
    for centre in centres:
        idx = ref_knn(xyz, centre, PB["size"])
        group = torch.cat([xyz[idx] - centre, rgb[idx]], dim=-1)  # (S, 6)
        f = conv(torch.relu(ref_batchnorm(conv(group, e + "first_conv.0"), sd, e + "first_conv.1")), e + "first_conv.3")
        f = torch.cat([f.max(dim=0).values.expand_as(f), f], dim=-1)  # global feature first
        f = conv(torch.relu(ref_batchnorm(conv(f, e + "second_conv.0"), sd, e + "second_conv.1")), e + "second_conv.3")
        tokens.append(f.max(dim=0).values)
    x = torch.stack(tokens) @ sd["point_encoder.reduce_dim.weight"].T + sd["point_encoder.reduce_dim.bias"]
    pos = F.gelu(centres @ sd["point_encoder.pos_embed.0.weight"].T + sd["point_encoder.pos_embed.0.bias"])
    pos = pos @ sd["point_encoder.pos_embed.2.weight"].T + sd["point_encoder.pos_embed.2.bias"]
    x = torch.cat([sd["point_encoder.cls_token"][0], x])
    pos = torch.cat([sd["point_encoder.cls_pos"][0], pos])
    for i in range(PB["depth"]):
        p = f"point_encoder.blocks.blocks.{i}."
        x = x + pos
        x = x + ref_attention(
            ref_layernorm(x, sd, p + "norm1"), sd[p + "attn.qkv.weight"], sd[p + "attn.proj.weight"],
            sd[p + "attn.proj.bias"], PB["heads"],
        )  # fmt: skip
        h = F.gelu(ref_layernorm(x, sd, p + "norm2") @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        x = x + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    x = ref_layernorm(x, sd, "point_encoder.norm")
    return torch.cat([x[0], x[1:].max(dim=0).values]) @ sd["pc_projection"]


def pointbert_config() -> PreAlignedShapeConfig:
    return PreAlignedShapeConfig(
        shape_config={
            "architecture": "pointbert",
            "in_channels": 6,
            "num_points": NUM_POINTS,
            "hidden_size": PB["dim"],
            "num_hidden_layers": PB["depth"],
            "num_attention_heads": PB["heads"],
            "intermediate_size": 4 * PB["dim"],
            "num_groups": PB["groups"],
            "group_size": PB["size"],
            "group_radius": None,
            "group_encoder_channels": PB["enc"],
            "position_hidden_size": PB["pos"],
        },
        projection_dim=PB["out"],
        shape_projection="linear_no_bias",
        code_bits=16,
    )


def test_ulip2_layout_converts_and_matches_the_reference(tmp_path):
    sd = pointbert_state_dict(seed=8)
    weights = {f"module.{k}": v for k, v in sd.items()}
    weights["module.open_clip_model.visual.proj"] = torch.zeros(4, 4)  # frozen OpenCLIP tower: dropped
    weights["module.open_clip_model.logit_scale"] = torch.tensor(4.6)
    torch.save({"state_dict": weights, "epoch": 10, "best_acc1": 0.5}, tmp_path / "ulip2.pt")
    tiny_clip(tmp_path / "clip", PB["out"])

    out, report = convert_ulip2(
        tmp_path / "ulip2.pt", tmp_path / "out", clip=tmp_path / "clip", config=pointbert_config()
    )
    assert sum(report.dropped.values()) == 2
    assert "BSD-3-Clause" in (out / "README.md").read_text()
    model = AutoModel.from_pretrained(out).eval()
    points = random_points(seed=9)
    with torch.no_grad():
        ours = model.get_shape_features(points)
        codes = model.get_shape_codes(points)
    reference = torch.stack([ref_pointbert(sd, cloud) for cloud in points])
    assert cosine(ours, reference).min() >= 0.999
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-4)
    assert codes.dtype == torch.int8 and codes.shape == (2, 16) and set(codes.unique().tolist()) <= {-1, 1}
    assert float(model.logit_scale.detach()) == pytest.approx(math.log(1 / 0.07))


def test_ulip2_unknown_keys_are_listed(tmp_path):
    weights = {f"module.{k}": v for k, v in pointbert_state_dict(seed=0).items()}
    weights["module.point_encoder.cls_head_finetune.0.weight"] = torch.zeros(2, 2)
    torch.save({"state_dict": weights}, tmp_path / "bad.pt")
    tiny_clip(tmp_path / "clip", PB["out"])
    with pytest.raises(CheckpointLayoutError, match="cls_head_finetune"):
        convert_ulip2(tmp_path / "bad.pt", tmp_path / "out", clip=tmp_path / "clip", config=pointbert_config())


def test_cli_reports_a_bad_checkpoint(tmp_path):
    import argparse

    from hf_cmah.cli.convert import add_commands
    from hf_cmah.errors import InvalidInputError

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    args = parser.parse_args(["convert", "ulip2", str(tmp_path / "broken.pt"), "--out", str(tmp_path / "out")])
    with pytest.raises(InvalidInputError, match="cannot read the checkpoint"):
        args.handler(args)
