"""hf_cmah.losses: CMAH's contrastive loss, the hard contrastive loss, SupCon and hard-neighbour batching."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import hf_cmah.losses
from hf_cmah import CMAHConfig
from hf_cmah.errors import ConfigError, InvalidInputError
from hf_cmah.losses import (
    HardNeighbourBatchSampler,
    cmah_contrastive_loss,
    contrastive_loss,
    hard_contrastive_loss,
    info_nce_loss,
    label_contrastive_loss,
)
from hf_cmah.modeling import modeling_cmah


def pairs(batch: int = 8, dim: int = 16, seed: int = 0, noise: float = 0.5):
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    images = shapes + noise * torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    return F.normalize(images, dim=-1), F.normalize(shapes, dim=-1)


def naive_hcl(images, shapes, scale: float, beta: float, tau_plus: float) -> torch.Tensor:
    """Robinson et al.'s formula, written out with plain exponentials, one anchor at a time."""
    logits = scale * images @ shapes.T

    def direction(matrix):
        losses = []
        batch = matrix.shape[0]
        for i in range(batch):
            negatives = torch.cat([matrix[i, :i], matrix[i, i + 1 :]])
            weights = torch.exp(beta * negatives) / torch.exp(beta * negatives).mean()
            positive = torch.exp(matrix[i, i])
            total = ((weights * torch.exp(negatives)).sum() - tau_plus * (batch - 1) * positive) / (1 - tau_plus)
            if tau_plus > 0:
                total = torch.clamp(total, min=(batch - 1) * math.exp(-scale))
            losses.append(-torch.log(positive / (positive + total)))
        return torch.stack(losses).mean()

    return 0.5 * (direction(logits) + direction(logits.T))


def test_cmah_losses_have_one_implementation_each():
    for name in ("info_nce_loss", "cmah_contrastive_loss", "chamfer_distance", "masked_patch_loss"):
        assert getattr(hf_cmah.losses, name) is getattr(modeling_cmah, name), name


def relaxed_codes(batch: int, seed: int, bits: int = 16) -> list[torch.Tensor]:
    """Image, shape, masked image and masked shape codes: tanh of random logits, as the model makes them."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.tanh(torch.randn(batch, bits, generator=generator)).requires_grad_() for _ in range(4)]


def test_cmah_contrastive_loss_is_the_weighted_sum_of_its_infonce_terms():
    config = CMAHConfig(contrastive_weight=0.6, masked_contrastive_weight=0.3, contrastive_temperature=0.2)
    image, shape, masked_image, masked_shape = relaxed_codes(6, seed=0)
    expected = 0.6 * info_nce_loss(image, shape, 0.2) + 0.3 * 0.5 * (
        info_nce_loss(masked_image, shape, 0.2) + info_nce_loss(masked_shape, image, 0.2)
    )
    torch.testing.assert_close(cmah_contrastive_loss(config, image, shape, masked_image, masked_shape), expected)
    full_only = cmah_contrastive_loss(config, image, shape)  # the ablation without a masked pass
    torch.testing.assert_close(full_only, 0.6 * info_nce_loss(image, shape, 0.2))


def test_a_pair_loss_replaces_infonce_in_every_term_of_cmahs_contrastive_loss():
    config = CMAHConfig(contrastive_weight=0.6, masked_contrastive_weight=0.3, contrastive_temperature=0.2)
    codes = relaxed_codes(6, seed=2)
    image, shape, masked_image, masked_shape = codes

    def hcl(beta: float):
        return functools.partial(hard_contrastive_loss, logit_scale=math.log(1 / 0.2), beta=beta)

    expected = 0.6 * hcl(1.0)(image, shape) + 0.3 * 0.5 * (
        hcl(1.0)(masked_image, shape) + hcl(1.0)(masked_shape, image)
    )
    hard = cmah_contrastive_loss(config, *codes, pair_loss=hcl(1.0))
    torch.testing.assert_close(hard, expected)
    infonce = cmah_contrastive_loss(config, *codes)
    torch.testing.assert_close(cmah_contrastive_loss(config, *codes, pair_loss=hcl(0.0)), infonce)  # β = 0 is InfoNCE
    assert not torch.allclose(hard, infonce)


def test_cmah_contrastive_loss_runs_in_float32_under_autocast():
    config = CMAHConfig()
    codes = [code.detach().bfloat16() for code in relaxed_codes(8, seed=1)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = cmah_contrastive_loss(config, *codes)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, cmah_contrastive_loss(config, *(code.float() for code in codes)), rtol=0, atol=0)


def test_a_gather_callable_gives_the_loss_and_gradients_of_the_gathered_batch():
    """Two shards of 4: with a gather that brings in the other shard's rows, each shard's loss is the
    8-row batch's, and the two shards' own-row gradients are the 8-row batch's gradients."""
    config = CMAHConfig()
    whole = relaxed_codes(8, seed=2)
    cmah_contrastive_loss(config, *whole).backward()
    for shard in (slice(0, 4), slice(4, 8)):
        local = [code.detach()[shard].clone().requires_grad_() for code in whole]

        def gather(codes: torch.Tensor, shard=shard) -> torch.Tensor:
            (full,) = [code.detach() for code in whole if torch.equal(code.detach()[shard], codes)]
            return torch.cat([full[: shard.start], codes, full[shard.stop :]])

        loss = cmah_contrastive_loss(config, *local, gather_codes=gather)
        torch.testing.assert_close(loss, cmah_contrastive_loss(config, *(code.detach() for code in whole)))
        loss.backward()
        for code, full in zip(local, whole):
            torch.testing.assert_close(code.grad, full.grad[shard])


@pytest.mark.parametrize("scale", [1 / 0.07, 100.0, 5.0])
def test_beta_zero_is_plain_infonce(scale):
    images, shapes = pairs()
    logit_scale = math.log(scale)
    hcl = hard_contrastive_loss(images, shapes, logit_scale, beta=0.0, tau_plus=0.0)
    logits = scale * images @ shapes.T
    targets = torch.arange(len(images))
    plain = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    torch.testing.assert_close(hcl, plain, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hcl, info_nce_loss(images, shapes, 1 / scale), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(contrastive_loss(images, shapes, logit_scale, kind="infonce"), plain)


@pytest.mark.parametrize(("beta", "tau_plus"), [(0.5, 0.0), (1.0, 0.1), (0.2, 0.05)])
def test_matches_the_naive_formula(beta, tau_plus):
    images, shapes = pairs(seed=1)
    ours = hard_contrastive_loss(images, shapes, math.log(10.0), beta=beta, tau_plus=tau_plus)
    torch.testing.assert_close(ours, naive_hcl(images, shapes, 10.0, beta, tau_plus), rtol=1e-9, atol=1e-9)


def test_debiasing_floor_holds_when_the_correction_would_go_negative():
    images, shapes = pairs(seed=2, noise=0.0)  # positives dominate: τ⁺·M·e^{l_ii} exceeds the negatives
    loss = hard_contrastive_loss(images, shapes, math.log(20.0), beta=1.0, tau_plus=0.5)
    expected = naive_hcl(images, shapes, 20.0, 1.0, 0.5)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


def test_harder_weighting_never_lowers_the_loss_and_stays_finite_at_large_scales():
    images, shapes = pairs(seed=3)
    losses = [float(hard_contrastive_loss(images, shapes, math.log(100.0), beta=b)) for b in (0.0, 0.5, 1.0, 2.0)]
    assert all(later >= earlier - 1e-12 for earlier, later in itertools.pairwise(losses))
    images32, shapes32 = images.float().requires_grad_(), shapes.float()
    loss = hard_contrastive_loss(images32, shapes32, torch.tensor(math.log(1000.0)), beta=3.0, tau_plus=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(images32.grad).all()


def test_hard_negatives_get_more_gradient():
    # Images are basis vectors, so image i's logit with shape j grows with shapes[j, i] (rows are
    # normalised inside the loss): shape 1 is image 0's hardest negative, shape 2 an easy one.
    batch = 6
    images = torch.eye(batch, dtype=torch.float64)
    shapes = torch.full((batch, batch), 0.1, dtype=torch.float64)
    shapes.fill_diagonal_(1.0)
    shapes[1, 0] = 0.8  # image 0's hardest negative is shape 1; its easiest ones sit at 0.1
    ratios = []
    for beta in (0.0, 2.0):
        variable = shapes.clone().requires_grad_()
        hard_contrastive_loss(images, variable, math.log(10.0), beta=beta).backward()
        ratios.append(float(variable.grad[1, 0].abs() / variable.grad[2, 0].abs()))
    assert ratios[1] > ratios[0]


def test_invalid_arguments_are_rejected():
    images, shapes = pairs()
    with pytest.raises(InvalidInputError, match="beta"):
        hard_contrastive_loss(images, shapes, 1.0, beta=-1.0)
    with pytest.raises(InvalidInputError, match="tau_plus"):
        hard_contrastive_loss(images, shapes, 1.0, tau_plus=1.0)
    with pytest.raises(InvalidInputError, match="at least 2"):
        hard_contrastive_loss(images[:1], shapes[:1], 1.0)
    with pytest.raises(ConfigError, match="unknown loss"):
        contrastive_loss(images, shapes, 1.0, kind="triplet")


def naive_supcon(images, shapes, labels, scale: float) -> torch.Tensor:
    """Khosla et al.'s formula across modalities, one anchor and one positive at a time."""
    logits = scale * images @ shapes.T

    def direction(matrix):
        losses = []
        for i in range(len(labels)):
            positives = [p for p in range(len(labels)) if labels[p] == labels[i]]
            log_probabilities = [matrix[i, p] - torch.log(torch.exp(matrix[i]).sum()) for p in positives]
            losses.append(-torch.stack(log_probabilities).mean())
        return torch.stack(losses).mean()

    return 0.5 * (direction(logits) + direction(logits.T))


def test_supcon_with_distinct_labels_is_infonce_and_matches_the_naive_formula():
    images, shapes = pairs(seed=4)
    distinct = label_contrastive_loss(images, shapes, torch.arange(8), math.log(10.0))
    torch.testing.assert_close(distinct, info_nce_loss(images, shapes, 0.1), rtol=1e-10, atol=1e-10)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 0])
    ours = contrastive_loss(images, shapes, math.log(10.0), kind="supcon", labels=labels)
    torch.testing.assert_close(ours, naive_supcon(images, shapes, labels.tolist(), 10.0), rtol=1e-10, atol=1e-10)


def test_supcon_pulls_same_class_shapes_in_where_infonce_pushes_them_away():
    images, shapes = pairs(seed=5)
    same_class = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])  # shapes 0 and 1 share a class
    for kind, sign in (("supcon", -1), ("infonce", 1)):
        variable = images.clone().requires_grad_()
        contrastive_loss(variable, shapes, math.log(10.0), kind=kind, labels=same_class).backward()
        # a gradient step moves image 0 along -grad: towards shape 1 (supcon) or away from it (infonce)
        assert sign * float(-variable.grad[0] @ shapes[1]) < 0


def test_supcon_needs_labels_of_the_batch():
    images, shapes = pairs()
    with pytest.raises(InvalidInputError, match="labels"):
        contrastive_loss(images, shapes, 1.0, kind="supcon")
    with pytest.raises(InvalidInputError, match="labels"):
        label_contrastive_loss(images, shapes, torch.arange(7), 1.0)


def test_hard_neighbour_batches_cover_every_item_once_and_group_neighbours():
    # 4 tight clusters of 8 items; a batch of 8 built from 2 seeds holds 2 clusters' worth of neighbours.
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 5
    labels = torch.arange(32) % 4
    embeds = centres[labels] + 0.01 * torch.randn(32, 8, generator=generator)
    sampler = HardNeighbourBatchSampler(32, batch_size=8, seeds_per_batch=2, seed=1)

    random_batches = list(sampler)
    assert sorted(i for batch in random_batches for i in batch) == list(range(32))

    sampler.set_embeddings(embeds)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    assert sorted(i for batch in batches for i in batch) == list(range(32))
    # Each seed is followed by neighbours of its own cluster.
    for batch in batches:
        for group in (batch[:4], batch[4:]):
            assert len(set(labels[group].tolist())) == 1
    assert batches == list(sampler)  # deterministic for (seed, epoch)
    sampler.set_epoch(1)
    assert batches != list(sampler)


def test_sampler_rejects_bad_sizes():
    with pytest.raises(ConfigError):
        HardNeighbourBatchSampler(4, batch_size=8)
    sampler = HardNeighbourBatchSampler(10, batch_size=4)
    with pytest.raises(InvalidInputError):
        sampler.set_embeddings(torch.zeros(9, 3))
