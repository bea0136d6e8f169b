"""CMAHModel: forward/backward, codes, bad input, and a real learning check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_cmah import CMAHConfig, CMAHModel, hamming_distance, pack_codes
from hf_cmah.modeling import CMAHInputError
from hf_cmah.modeling.hash_codes import codes_and_embeds
from tests.conftest import mini_config, synthetic_pairs


def test_forward_backward_every_loss_part_finite_and_positive(tiny_config):
    torch.manual_seed(0)
    model = CMAHModel(tiny_config).train()
    pixel_values, points = synthetic_pairs(4, tiny_config.num_points, tiny_config.image_size)
    output = model(pixel_values, points)
    for name in ("loss", "contrastive_loss", "image_reconstruction_loss", "point_reconstruction_loss"):
        value = getattr(output, name)
        assert value.ndim == 0 and torch.isfinite(value) and value > 0, name
    output.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert output.image_codes.shape == (4, tiny_config.code_bits)
    assert output.point_reconstruction.shape == (4, tiny_config.num_groups, tiny_config.group_size, 3)
    assert (
        output.image_mask.sum(1).tolist()
        == [tiny_config.num_patches - round(tiny_config.num_patches * (1 - tiny_config.image_mask_ratio))] * 4
    )


def test_masked_pass_equals_encoding_the_masked_inputs_afresh(tiny_config):
    """The training forward embeds patches and groups once for both passes; the masked codes must be
    what the embeddings' own forward (which embeds again, then masks) gives for the same noise."""
    torch.manual_seed(0)
    model = CMAHModel(tiny_config).train()
    pixel_values, points = synthetic_pairs(4, tiny_config.num_points, tiny_config.image_size)
    image_noise = torch.rand(4, tiny_config.num_patches)
    point_noise = torch.rand(4, tiny_config.num_groups)
    output = model(pixel_values, points, image_noise=image_noise, point_noise=point_noise)

    tokens, image_mask, _ = model.image_embeddings(pixel_values, tiny_config.image_mask_ratio, image_noise)
    neighbourhoods, centres = model.point_embeddings.grouper(points)
    groups, point_mask, _ = model.point_embeddings(neighbourhoods, centres, tiny_config.point_mask_ratio, point_noise)
    image_codes = torch.tanh(model.image_hash_head(model.image_encoder(tokens)))
    shape_codes = torch.tanh(model.point_hash_head(model.point_encoder(groups)))
    torch.testing.assert_close(output.masked_image_codes, image_codes)
    torch.testing.assert_close(output.masked_shape_codes, shape_codes)
    assert torch.equal(output.image_mask, image_mask) and torch.equal(output.point_mask, point_mask)
    torch.testing.assert_close(output.shape_codes, torch.tanh(model.get_shape_logits(points)))


def test_contrastive_only_ablation_skips_masked_pass(tiny_config):
    config = CMAHConfig.from_preset(
        "cmah-tiny", masked_contrastive_weight=0.0, image_reconstruction_weight=0.0, point_reconstruction_weight=0.0
    )
    model = CMAHModel(config)
    output = model(*synthetic_pairs(2, config.num_points, config.image_size))
    assert output.masked_image_codes is None and output.image_reconstruction_loss == 0
    assert torch.allclose(output.loss, output.contrastive_loss)


def test_masking_follows_the_torch_seed(tiny_config):
    model = CMAHModel(tiny_config)
    inputs = synthetic_pairs(2, tiny_config.num_points, tiny_config.image_size)
    torch.manual_seed(3)
    first = model(*inputs)
    torch.manual_seed(3)
    second = model(*inputs)
    assert torch.equal(first.image_mask, second.image_mask) and torch.equal(first.point_mask, second.point_mask)
    assert torch.equal(first.loss, second.loss)


def test_codes_are_plus_minus_one_int8_and_match_embeds(tiny_model, tiny_config):
    _, points = synthetic_pairs(3, tiny_config.num_points, tiny_config.image_size)
    with torch.no_grad():
        codes = tiny_model.get_shape_codes(points)
        embeds = tiny_model.get_shape_embeds(points)
    assert codes.dtype == torch.int8 and set(codes.unique().tolist()) <= {-1, 1}
    assert torch.equal(codes, torch.where(embeds >= 0, 1, -1).to(torch.int8))
    assert torch.allclose(embeds.norm(dim=-1), torch.ones(3))
    assert pack_codes(codes).shape == (3, tiny_config.code_bits // 8)
    with torch.no_grad():  # the one-pass form that index builds and evaluation use gives the same tensors
        combined_codes, combined_embeds = codes_and_embeds(tiny_model, "shape", points)
    assert torch.equal(combined_codes, codes) and torch.equal(combined_embeds, embeds)


def test_shape_codes_do_not_depend_on_point_order(tiny_model, tiny_config):
    """FPS starts at index 0, so permuting points may change groups; codes must still be a function of input."""
    _, points = synthetic_pairs(2, tiny_config.num_points, tiny_config.image_size)
    with torch.no_grad():
        assert torch.equal(tiny_model.get_shape_codes(points), tiny_model.get_shape_codes(points.clone()))


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (torch.zeros(1, 0, 3), "empty"),
        (torch.full((1, 512, 3), float("nan")), "NaN"),
        (torch.zeros(1, 8, 3), "fewer than"),
        (torch.zeros(512, 3), "shape"),
        (torch.zeros(1, 512, 4), "shape"),
        (np.zeros((1, 512, 3), dtype=np.float32), "torch.Tensor"),
    ],
)
def test_bad_point_clouds_get_clear_errors(tiny_model, points, message):
    with pytest.raises(CMAHInputError, match=message):
        tiny_model.get_shape_codes(points)


@pytest.mark.parametrize(
    ("pixel_values", "message"),
    [
        (torch.zeros(1, 3, 32, 32), r"\[batch, 3, 64, 64\]"),
        (torch.zeros(3, 64, 64), r"\[batch, 3, 64, 64\]"),
        (torch.zeros(1, 4, 64, 64), r"\[batch, 3, 64, 64\]"),
        (torch.full((1, 3, 64, 64), float("inf")), "NaN or infinite"),
    ],
)
def test_bad_images_get_clear_errors(tiny_model, pixel_values, message):
    with pytest.raises(CMAHInputError, match=message):
        tiny_model.get_image_codes(pixel_values)


def test_forward_rejects_unpaired_batches(tiny_model, tiny_config):
    pixel_values, points = synthetic_pairs(2, tiny_config.num_points, tiny_config.image_size)
    with pytest.raises(CMAHInputError, match="pair row by row"):
        tiny_model(pixel_values, points[:1])


@pytest.mark.parametrize("bits", [12, 0, -8, 63])
def test_config_rejects_code_bits_not_a_multiple_of_8(bits):
    with pytest.raises(ValueError, match="multiple of 8"):
        CMAHConfig(code_bits=bits)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"patch_size": 15}, "must divide"),
        ({"group_size": 2048}, "must not exceed"),
        ({"image_mask_ratio": 1.0}, r"\[0, 1\)"),
        ({"hidden_size": 100}, "multiple of its attention heads"),
    ],
)
def test_config_rejects_inconsistent_sizes(overrides, message):
    with pytest.raises(ValueError, match=message):
        CMAHConfig(**overrides)


def test_presets_and_parameter_counts():
    counts = {
        name: sum(p.numel() for p in CMAHModel(CMAHConfig.from_preset(name)).parameters())
        for name in ("cmah-tiny", "cmah-base")
    }
    assert 1e6 < counts["cmah-tiny"] < 3e6
    assert 40e6 < counts["cmah-base"] < 60e6  # ViT-S/16 size class for each encoder
    with pytest.raises(ValueError, match="unknown CMAH preset"):
        CMAHConfig.from_preset("cmah-huge")


@pytest.mark.slow
def test_training_pairs_each_image_with_its_own_point_cloud():
    """A few hundred steps on 8 synthetic pairs: every image's nearest shape code (Hamming) is its own.

    A smaller-than-tiny model (32-px images, 256 points) keeps this under a minute on 2 cores;
    the pairing must hold at two checks in a row, so one lucky draw of the masks cannot pass it.
    """
    torch.manual_seed(0)
    config = mini_config()
    model = CMAHModel(config)
    pixel_values, points = synthetic_pairs(8, config.num_points, config.image_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)

    def own_shape_is_nearest() -> bool:
        model.eval()
        with torch.no_grad():
            distances = hamming_distance(
                pack_codes(model.get_image_codes(pixel_values)), pack_codes(model.get_shape_codes(points))
            )
        model.train()
        others = distances + np.eye(len(distances), dtype=np.int32) * (config.code_bits + 1)
        return bool((distances.diagonal() < others.min(axis=1)).all())

    assert not own_shape_is_nearest()  # an untrained model does not already pair them
    passed_in_a_row = 0
    for step in range(1, 401):
        loss = model(pixel_values, points).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            passed_in_a_row = passed_in_a_row + 1 if own_shape_is_nearest() else 0
            if passed_in_a_row == 2:
                return
    pytest.fail("after 400 steps the images' nearest shape codes are not their own point clouds")
