r"""Training losses: symmetric InfoNCE, the hard contrastive loss (HCL), the label-supervised
contrastive loss (SupCon), and hard-neighbour batching.

CMAH's own losses (InfoNCE, CMAH's contrastive loss ``cmah_contrastive_loss`` that
`CMAHForPreTraining.forward` computes, Chamfer, masked-patch MSE) live beside the model in
``hf_cmah.modeling.modeling_cmah`` (saved models are self-contained) and are re-exported here,
so that training code imports every loss from one place; each has that one implementation.

Hard contrastive loss
---------------------
Image embeddings ``u_i`` and shape embeddings ``v_j`` (L2-normalised), row i of each is a pair.
With logits ``l_ij = s · u_i·v_j`` (``s`` = ``exp(logit_scale)`` = 1/τ) and ``M = B − 1``
negatives per anchor, the image→shape term of anchor i is (Robinson et al., ICLR 2021,
"Contrastive Learning with Hard Negative Samples", adapted to two modalities)::

    w_ij  = exp(β · l_ij) / ( (1/M) Σ_{k≠i} exp(β · l_ik) )          hardness weights, mean 1
    N_i   = ( Σ_{j≠i} w_ij · exp(l_ij)  −  τ⁺ · M · exp(l_ii) ) / (1 − τ⁺)
    N_i   ← max(N_i, M · exp(−s))                                    (only when τ⁺ > 0)
    L_i   = −log( exp(l_ii) / (exp(l_ii) + N_i) )

and the loss is the mean of the image→shape and shape→image terms (the latter with ``l``
transposed). β ≥ 0 sets how strongly negatives close to the anchor count (β = 0: every weight
is 1 and HCL *is* InfoNCE); τ⁺ ∈ [0, 1) is the assumed share of false negatives — same-class
shapes in the batch — whose expected contribution is subtracted (debiasing, Chuang et al.
2020); the clamp keeps ``N_i`` at or above its smallest possible value. All of it is computed
in log space (``logsumexp``), so large logit scales do not overflow. As in the original, the
weights are not detached: the gradient also flows through the hardness weighting.

Label-supervised contrastive loss (SupCon)
------------------------------------------
InfoNCE counts a same-class shape in the batch as a negative, so a self-supervised model is
pushed to tell two chairs apart as hard as a chair from a plane. Where the training data has
class labels (every built dataset does), ``supcon`` makes every same-label pair a positive
(Khosla et al., NeurIPS 2020, "Supervised Contrastive Learning", across the two modalities)::

    P(i)  = { j : y_j = y_i }                                        (i itself included)
    L_i   = −(1/|P(i)|) Σ_{p ∈ P(i)} log( exp(l_ip) / Σ_j exp(l_ij) )

again the mean of both directions. With all labels distinct, P(i) = {i} and it *is* InfoNCE.
It trades instance discrimination for class structure: retrieval by class gains, retrieval of
the one paired shape may not.

Hard-neighbour batching
-----------------------
`HardNeighbourBatchSampler` builds each batch from seed shapes and their nearest neighbours
under the current shape embeddings (refreshed once per epoch with ``set_embeddings``), so that
in-batch negatives are hard even before any re-weighting. Every item appears once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .errors import ConfigError, InvalidInputError
from .modeling.modeling_cmah import chamfer_distance, cmah_contrastive_loss, info_nce_loss, masked_patch_loss


def _one_direction(logits: torch.Tensor, beta: float, tau_plus: float, scale: torch.Tensor) -> torch.Tensor:
    """HCL of the rows of a ``[B, B]`` logit matrix whose diagonal holds the positives (log space)."""
    batch = logits.shape[0]
    negatives = batch - 1
    positive = logits.diagonal()  # (B,)
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=logits.device)
    negative_logits = logits[off_diagonal].reshape(batch, negatives)  # (B, M)
    # log Σ w_j e^{l_j} = logsumexp((1+β) l) − logsumexp(β l) + log M
    log_weighted = (
        torch.logsumexp((1.0 + beta) * negative_logits, dim=1)
        - torch.logsumexp(beta * negative_logits, dim=1)
        + math.log(negatives)
    )
    if tau_plus > 0:
        # N = (e^{a} − τ⁺ M e^{l_ii}) / (1 − τ⁺), floored at M e^{−s}
        # log of τ⁺ M e^{l_ii} / e^{a}; clamped below 0 inside the log so neither branch makes inf or NaN.
        log_ratio = math.log(tau_plus * negatives) + positive - log_weighted
        safe = torch.log1p(-torch.exp(log_ratio.clamp(max=math.log1p(-1e-6))))
        log_debiased = log_weighted + safe - math.log1p(-tau_plus)
        floor = (math.log(negatives) - scale).expand_as(log_debiased)
        log_negatives = torch.where(log_ratio < 0, torch.maximum(log_debiased, floor), floor)
    else:
        log_negatives = log_weighted
    return (torch.logaddexp(positive, log_negatives) - positive).mean()


def hard_contrastive_loss(
    image_embeds: torch.Tensor,
    shape_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    beta: float = 1.0,
    tau_plus: float = 0.0,
) -> torch.Tensor:
    """Symmetric image↔shape HCL (formula in the module docstring).

    ``image_embeds`` and ``shape_embeds``: ``[B, D]`` (normalised here), row i of each is a pair.
    ``logit_scale``: the log inverse temperature (the model's ``logit_scale`` parameter, or a float).
    """
    if image_embeds.ndim != 2 or image_embeds.shape != shape_embeds.shape:
        raise InvalidInputError(
            f"image_embeds and shape_embeds must both be [batch, dim], got {list(image_embeds.shape)} "
            f"and {list(shape_embeds.shape)}"
        )
    if image_embeds.shape[0] < 2:
        raise InvalidInputError("a contrastive loss needs a batch of at least 2 pairs")
    if beta < 0:
        raise InvalidInputError(f"beta must be >= 0, got {beta}")
    if not 0.0 <= tau_plus < 1.0:
        raise InvalidInputError(f"tau_plus must lie in [0, 1), got {tau_plus}")
    scale = torch.as_tensor(logit_scale, dtype=image_embeds.dtype, device=image_embeds.device).exp()
    logits = scale * F.normalize(image_embeds, dim=-1) @ F.normalize(shape_embeds, dim=-1).T  # (B, B)
    return 0.5 * (_one_direction(logits, beta, tau_plus, scale) + _one_direction(logits.T, beta, tau_plus, scale))


def label_contrastive_loss(
    image_embeds: torch.Tensor, shape_embeds: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Symmetric image↔shape SupCon (formula in the module docstring): every same-``labels`` pair is a positive.

    ``image_embeds`` and ``shape_embeds``: ``[B, D]`` (normalised here), row i of each is a pair of class
    ``labels[i]``. ``logit_scale``: the log inverse temperature.
    """
    if image_embeds.ndim != 2 or image_embeds.shape != shape_embeds.shape or labels.shape != image_embeds.shape[:1]:
        raise InvalidInputError(
            f"image_embeds and shape_embeds must both be [batch, dim] and labels [batch], got "
            f"{list(image_embeds.shape)}, {list(shape_embeds.shape)} and {list(labels.shape)}"
        )
    scale = torch.as_tensor(logit_scale, dtype=image_embeds.dtype, device=image_embeds.device).exp()
    logits = scale * F.normalize(image_embeds, dim=-1) @ F.normalize(shape_embeds, dim=-1).T  # (B, B)
    positives = (labels[:, None] == labels[None, :]).to(logits.dtype)  # symmetric, diagonal 1

    def one_direction(rows: torch.Tensor) -> torch.Tensor:
        log_probability = rows - torch.logsumexp(rows, dim=1, keepdim=True)
        return (-(log_probability * positives).sum(dim=1) / positives.sum(dim=1)).mean()

    return 0.5 * (one_direction(logits) + one_direction(logits.T))


LOSSES = ("infonce", "hcl", "supcon")


def contrastive_loss(
    image_embeds: torch.Tensor,
    shape_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    kind: str = "infonce",
    beta: float = 1.0,
    tau_plus: float = 0.0,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss by name: ``"infonce"``, ``"hcl"`` (``beta``, ``tau_plus``) or ``"supcon"`` (``labels``)."""
    if kind == "infonce":
        temperature = torch.as_tensor(logit_scale).exp().reciprocal()
        return info_nce_loss(image_embeds, shape_embeds, temperature)
    if kind == "hcl":
        return hard_contrastive_loss(image_embeds, shape_embeds, logit_scale, beta=beta, tau_plus=tau_plus)
    if kind == "supcon":
        if labels is None:
            raise InvalidInputError("the supcon loss needs the batch's class labels")
        return label_contrastive_loss(image_embeds, shape_embeds, labels, logit_scale)
    raise ConfigError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")


class HardNeighbourBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of ``seeds_per_batch`` random seeds, each followed by its nearest unused neighbours.

    Before the first ``set_embeddings`` call (or with ``neighbours`` = 0) batches are plain random
    permutations. After it, a batch is filled seed by seed: a random unused item, then up to
    ``batch_size / seeds_per_batch − 1`` of its nearest unused items under cosine similarity of
    the given embeddings. Every item appears exactly once per epoch; the order depends only on
    ``(seed, epoch)``, so a resumed run sees the same batches.
    """

    def __init__(
        self, num_items: int, batch_size: int, seeds_per_batch: int = 4, seed: int = 0, drop_last: bool = True
    ):
        if batch_size < 2 or num_items < batch_size:
            raise ConfigError(f"need 2 <= batch_size <= number of items, got batch_size {batch_size} for {num_items}")
        if not 1 <= seeds_per_batch <= batch_size:
            raise ConfigError(f"seeds_per_batch must lie in [1, batch_size], got {seeds_per_batch}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seeds_per_batch = seeds_per_batch
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.neighbours: torch.Tensor | None = None  # (N, K) item indices, nearest first

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_embeddings(self, embeds: torch.Tensor, max_neighbours: int = 64) -> None:
        """Nearest-neighbour lists from ``[N, D]`` embeddings (the current shape tower's)."""
        if embeds.ndim != 2 or embeds.shape[0] != self.num_items:
            raise InvalidInputError(f"expected [{self.num_items}, dim] embeddings, got {list(embeds.shape)}")
        normalised = F.normalize(embeds.detach().float().cpu(), dim=-1)
        similarity = normalised @ normalised.T
        similarity.fill_diagonal_(-float("inf"))
        k = min(max_neighbours, self.num_items - 1)
        self.neighbours = similarity.topk(k, dim=1).indices

    def __len__(self) -> int:
        return self.num_items // self.batch_size if self.drop_last else math.ceil(self.num_items / self.batch_size)

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        permutation = torch.randperm(self.num_items, generator=generator).tolist()
        if self.neighbours is None:
            return permutation
        used = torch.zeros(self.num_items, dtype=torch.bool)
        group = max(1, self.batch_size // self.seeds_per_batch)
        order = []
        for seed_item in permutation:
            if used[seed_item]:
                continue
            used[seed_item] = True
            order.append(seed_item)
            taken = 1
            for neighbour in self.neighbours[seed_item].tolist():
                if taken >= group:
                    break
                if not used[neighbour]:
                    used[neighbour] = True
                    order.append(neighbour)
                    taken += 1
        return order

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch


__all__ = [
    "HardNeighbourBatchSampler",
    "chamfer_distance",
    "cmah_contrastive_loss",
    "contrastive_loss",
    "hard_contrastive_loss",
    "info_nce_loss",
    "label_contrastive_loss",
    "masked_patch_loss",
]
