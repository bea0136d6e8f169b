"""CMAHModel and CMAHForPreTraining: forward/backward, the loss, codes, bad input, and a real learning check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_cmah import CMAHConfig, CMAHForPreTraining, CMAHModel, hamming_distance, pack_codes
from hf_cmah.evaluation.encoding import codes_and_embeds
from hf_cmah.modeling import ModelInputError
from tests.conftest import mini_config, synthetic_pairs


def test_forward_backward_every_loss_part_finite_and_positive(tiny_config):
    torch.manual_seed(0)
    model = CMAHForPreTraining(tiny_config).train()
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


def _written_out_loss(output, config: CMAHConfig) -> torch.Tensor:
    """``L = L_c + L_r`` of docs/MODEL.md with cross-entropy spelled out (what training_loss computed before)."""

    def info_nce(queries, keys):
        logits = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T / config.contrastive_temperature
        targets = torch.arange(len(logits))
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    contrastive = config.contrastive_weight * info_nce(output.image_codes, output.shape_codes)
    contrastive = (
        contrastive
        + config.masked_contrastive_weight
        * (
            info_nce(output.masked_image_codes, output.shape_codes)
            + info_nce(output.masked_shape_codes, output.image_codes)
        )
        / 2
    )
    return (
        contrastive
        + config.image_reconstruction_weight * output.image_reconstruction_loss
        + config.point_reconstruction_weight * output.point_reconstruction_loss
    )


def test_loss_is_the_documented_formula_on_a_fixed_seed():
    config = CMAHConfig.from_preset("cmah-tiny", code_bits=32, contrastive_weight=0.7, masked_contrastive_weight=0.4)
    torch.manual_seed(0)
    model = CMAHForPreTraining(config).train()
    pixel_values, points = synthetic_pairs(6, config.num_points, config.image_size, seed=5)
    generator = torch.Generator().manual_seed(1)
    noise = (
        torch.rand(6, config.num_patches, generator=generator),
        torch.rand(6, config.num_groups, generator=generator),
    )
    output = model(pixel_values, points, image_noise=noise[0], point_noise=noise[1])
    torch.testing.assert_close(output.loss, _written_out_loss(output, config), rtol=1e-6, atol=1e-6)
    reconstruction = (
        config.image_reconstruction_weight * output.image_reconstruction_loss
        + config.point_reconstruction_weight * output.point_reconstruction_loss
    )
    torch.testing.assert_close(output.contrastive_loss, output.loss - reconstruction, rtol=1e-6, atol=1e-6)


def _gather_from(full: dict[str, torch.Tensor], shard: slice):
    """A stand-in for an all-gather from this shard's process: the other shards' rows, as the other
    processes computed them (no gradient here), around this process's own rows (with gradient)."""

    def gather(codes: torch.Tensor) -> torch.Tensor:
        (other,) = [tensor for tensor in full.values() if torch.equal(tensor[shard], codes)]
        return torch.cat([other[: shard.start].detach(), codes, other[shard.stop :].detach()])

    return gather


def test_two_shards_with_gathered_codes_give_the_loss_of_the_whole_batch(tiny_config):
    """Each process of a 2-process run sees the whole batch's contrastive loss, and the mean of the two
    shards' reconstruction losses is the whole batch's (eval mode: batch norm uses its running statistics)."""
    torch.manual_seed(0)
    model = CMAHForPreTraining(tiny_config).eval()
    pixel_values, points = synthetic_pairs(8, tiny_config.num_points, tiny_config.image_size)
    image_noise, point_noise = torch.rand(8, tiny_config.num_patches), torch.rand(8, tiny_config.num_groups)
    whole = model(pixel_values, points, image_noise=image_noise, point_noise=point_noise)
    codes = ("image_codes", "shape_codes", "masked_image_codes", "masked_shape_codes")
    full = {name: getattr(whole, name).detach() for name in codes}
    shards = [slice(0, 4), slice(4, 8)]
    outputs = [
        model(
            pixel_values[rows], points[rows], image_noise=image_noise[rows], point_noise=point_noise[rows],
            gather_codes=_gather_from(full, rows),
        )
        for rows in shards
    ]  # fmt: skip
    for output in outputs:
        torch.testing.assert_close(output.contrastive_loss, whole.contrastive_loss, rtol=1e-6, atol=1e-6)
    for name in ("image_reconstruction_loss", "point_reconstruction_loss"):
        mean = (getattr(outputs[0], name) + getattr(outputs[1], name)) / 2
        torch.testing.assert_close(mean, getattr(whole, name), rtol=1e-5, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients_on_cmah_base():
    """The encoder, fusion and decoder blocks are recomputed in the backward pass: fewer saved activations,
    the same numbers."""
    config = CMAHConfig.from_preset("cmah-base", code_bits=32)
    torch.manual_seed(0)
    model = CMAHForPreTraining(config).train()
    pixel_values, points = synthetic_pairs(2, config.num_points, config.image_size)
    noise = torch.rand(2, config.num_patches), torch.rand(2, config.num_groups)

    def step() -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        saved = []

        def pack(tensor):
            saved.append(tensor.numel())
            return tensor

        model.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = model(pixel_values, points, image_noise=noise[0], point_noise=noise[1]).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}, sum(saved)

    plain_loss, plain_grads, plain_saved = step()
    with warnings.catch_warnings():  # transformers 5.24 renames it activation_checkpointing_enable
        warnings.filterwarnings("ignore", "`gradient_checkpointing_enable` is deprecated", FutureWarning)
        model.gradient_checkpointing_enable()
    checkpointed_loss, checkpointed_grads, checkpointed_saved = step()
    assert checkpointed_saved < plain_saved / 5  # about a tenth on cmah-base at batch 2
    torch.testing.assert_close(checkpointed_loss, plain_loss, rtol=0, atol=0)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_masked_pass_equals_encoding_the_masked_inputs_afresh(tiny_config):
    """The training forward embeds patches and groups once for both passes; the masked codes must be
    what the embeddings' own forward (which embeds again, then masks) gives for the same noise."""
    torch.manual_seed(0)
    model = CMAHForPreTraining(tiny_config).train()
    cmah = model.cmah
    pixel_values, points = synthetic_pairs(4, tiny_config.num_points, tiny_config.image_size)
    image_noise = torch.rand(4, tiny_config.num_patches)
    point_noise = torch.rand(4, tiny_config.num_groups)
    output = model(pixel_values, points, image_noise=image_noise, point_noise=point_noise)

    tokens, image_mask, _ = cmah.image_embeddings(pixel_values, tiny_config.image_mask_ratio, image_noise)
    neighbourhoods, centres = cmah.point_embeddings.grouper(points)
    groups, point_mask, _ = cmah.point_embeddings(neighbourhoods, centres, tiny_config.point_mask_ratio, point_noise)
    image_codes = torch.tanh(cmah.image_hash_head(cmah.image_encoder(tokens)))
    shape_codes = torch.tanh(cmah.point_hash_head(cmah.point_encoder(groups)))
    torch.testing.assert_close(output.masked_image_codes, image_codes)
    torch.testing.assert_close(output.masked_shape_codes, shape_codes)
    assert torch.equal(output.image_mask, image_mask) and torch.equal(output.point_mask, point_mask)
    torch.testing.assert_close(output.shape_codes, torch.tanh(cmah.get_shape_logits(points)))


def test_contrastive_only_ablation_skips_masked_pass(tiny_config):
    config = CMAHConfig.from_preset(
        "cmah-tiny", masked_contrastive_weight=0.0, image_reconstruction_weight=0.0, point_reconstruction_weight=0.0
    )
    model = CMAHForPreTraining(config)
    output = model(*synthetic_pairs(2, config.num_points, config.image_size))
    assert output.masked_image_codes is None and output.image_reconstruction_loss == 0
    assert torch.allclose(output.loss, output.contrastive_loss)


def test_masking_follows_the_torch_seed(tiny_config):
    model = CMAHForPreTraining(tiny_config)
    inputs = synthetic_pairs(2, tiny_config.num_points, tiny_config.image_size)
    torch.manual_seed(3)
    first = model(*inputs)
    torch.manual_seed(3)
    second = model(*inputs)
    assert torch.equal(first.image_mask, second.image_mask) and torch.equal(first.point_mask, second.point_mask)
    assert torch.equal(first.loss, second.loss)


def test_retrieval_model_forward_gives_the_protocol_logits(tiny_model, tiny_config):
    pixel_values, points = synthetic_pairs(2, tiny_config.num_points, tiny_config.image_size)
    with torch.no_grad():
        both, shapes_only = tiny_model(pixel_values, points), tiny_model(points=points)
        assert torch.equal(both.image_code_logits, tiny_model.get_image_logits(pixel_values))
        assert torch.equal(shapes_only.shape_code_logits, both.shape_code_logits)
    assert shapes_only.image_code_logits is None
    assert both.shape_last_hidden_state.shape == (2, 1 + tiny_config.num_groups, tiny_config.hidden_size)
    with pytest.raises(ModelInputError, match="needs pixel_values, points or both"):
        tiny_model()


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


def test_shape_codes_depend_on_the_points_as_a_set_given_the_first_point(tiny_model, tiny_config):
    """What the model guarantees: farthest point sampling starts at point 0 of each cloud, and from there
    the groups (FPS centres, their kNN) and the mini-PointNet (max-pooled) do not depend on the order of the
    points. So shuffling every point but the first leaves the codes and embeddings unchanged. Moving
    another point to the front changes the FPS start, hence the groups, and the codes may change
    (the processor fixes the order with its seed, so a file always gets the same codes)."""
    _, points = synthetic_pairs(2, tiny_config.num_points, tiny_config.image_size)
    order = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(points.shape[1] - 1)])
    shuffled = points[:, order]
    assert not torch.equal(shuffled, points)
    with torch.no_grad():
        codes, embeds = tiny_model.get_shape_codes_and_embeds(points)
        shuffled_codes, shuffled_embeds = tiny_model.get_shape_codes_and_embeds(shuffled)
        grouper = tiny_model.point_embeddings.grouper
        torch.testing.assert_close(grouper(shuffled)[1], grouper(points)[1], rtol=0, atol=0)  # the same centres
    assert torch.equal(shuffled_codes, codes)
    torch.testing.assert_close(shuffled_embeds, embeds, rtol=1e-5, atol=1e-6)


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
    with pytest.raises(ModelInputError, match=message):
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
    with pytest.raises(ModelInputError, match=message):
        tiny_model.get_image_codes(pixel_values)


def test_pretraining_forward_rejects_unpaired_batches(tiny_config):
    pixel_values, points = synthetic_pairs(2, tiny_config.num_points, tiny_config.image_size)
    with pytest.raises(ModelInputError, match="pair row by row"):
        CMAHForPreTraining(tiny_config)(pixel_values, points[:1])


def test_old_input_error_names_warn_and_still_catch(tiny_model):
    import hf_cmah.modeling
    import hf_cmah.modeling.modeling_cmah
    import hf_cmah.modeling.modeling_prealigned

    for module, name in (
        (hf_cmah.modeling, "CMAHInputError"),
        (hf_cmah.modeling, "PreAlignedInputError"),
        (hf_cmah.modeling.modeling_cmah, "CMAHInputError"),
        (hf_cmah.modeling.modeling_prealigned, "PreAlignedInputError"),
    ):
        with pytest.warns(FutureWarning, match=f"{name} is now ModelInputError"):
            old = getattr(module, name)
        assert old is ModelInputError and issubclass(old, ValueError)
    with pytest.raises(AttributeError):
        hf_cmah.modeling.modeling_cmah.NoSuchName  # noqa: B018


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
    def count(model) -> float:
        return sum(p.numel() for p in model.parameters()) / 1e6

    counts = {
        name: (count(CMAHModel(config)), count(CMAHForPreTraining(config)))
        for name, config in ((name, CMAHConfig.from_preset(name)) for name in ("cmah-tiny", "cmah-base"))
    }
    # docs/MODEL.md's table: retrieval model (encoders + hash heads), then with the pre-training head
    assert counts["cmah-tiny"] == pytest.approx((1.29, 1.54), abs=0.005)
    assert counts["cmah-base"] == pytest.approx((44.15, 50.97), abs=0.005)  # ViT-S/16 size class per encoder
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
    model = CMAHForPreTraining(config)
    pixel_values, points = synthetic_pairs(8, config.num_points, config.image_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)

    def own_shape_is_nearest() -> bool:
        model.eval()
        with torch.no_grad():
            distances = hamming_distance(
                pack_codes(model.cmah.get_image_codes(pixel_values)), pack_codes(model.cmah.get_shape_codes(points))
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
