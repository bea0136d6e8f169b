"""CMAH: contrastive masked auto-encoder hashing for image ⇄ point-cloud retrieval.

Image and point encoders emit K-bit codes in one Hamming space. Training loss
``L = L_c + L_r``: InfoNCE on full–full and masked–full image/point pairs of relaxed
(tanh) codes, plus masked reconstruction of image patches (MSE) and point groups
(Chamfer) through a multi-modal fusion block. At inference, ``sign`` gives ±1 codes.

As ViTMAE: `CMAHModel` (what `AutoModel` gives) holds the encoders and hash heads that
retrieval needs; `CMAHForPreTraining` holds a `CMAHModel` under ``cmah`` and adds the fusion
block, the decoders and the loss.

Self-contained (ARCHITECTURE.md, "Saved models"): imports torch, transformers and its
same-folder siblings only, so a saved folder loads with ``trust_remote_code=True``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_cmah import CMAHConfig
from .hash_codes import codes_from_logits
from .input_checks import ModelInputError, check_pixel_values, check_points, deprecated_input_error
from .point_layers import CentrePositionMLP, MiniPointNet, farthest_point_sample, gather_points, knn_indices
from .vit_layers import (
    CrossAttentionBlock,
    PatchEmbedding,
    TransformerBlock,
    patchify,
    random_masking,
    unshuffle_with_mask_tokens,
)

logger = logging.get_logger(__name__)

# Weights of CMAHForPreTraining's own modules (fusion block, decoders, mask tokens), as they are
# named in its checkpoints and in those of the single class that held everything before the split.
PRETRAINING_HEAD_KEYS = re.compile(r"^(image|point)_(decoder|mask_token)|^fusion_layers\.")


@dataclass
class CMAHModelOutput(ModelOutput):
    r"""
    image_code_logits (`torch.FloatTensor` of shape `(batch_size, code_bits)`): hash logits of the images
        (``sign`` gives the codes, ``tanh`` relaxes them); `None` without ``pixel_values``.
    shape_code_logits (`torch.FloatTensor` of shape `(batch_size, code_bits)`): hash logits of the clouds;
        `None` without ``points``.
    image_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 1 + num_patches, hidden_size)`):
        image encoder output, CLS token first.
    shape_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 1 + num_groups, hidden_size)`):
        point encoder output, CLS token first.
    """

    image_code_logits: torch.FloatTensor | None = None
    shape_code_logits: torch.FloatTensor | None = None
    image_last_hidden_state: torch.FloatTensor | None = None
    shape_last_hidden_state: torch.FloatTensor | None = None


@dataclass
class CMAHForPreTrainingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`): ``L = L_c + L_r`` with the config's weights.
    contrastive_loss (`torch.FloatTensor` of shape `()`): L_c, full–full plus masked–full InfoNCE (over the
        codes of every process when ``gather_codes`` is given).
    image_reconstruction_loss (`torch.FloatTensor` of shape `()`): L_2D, MSE on masked patches.
    point_reconstruction_loss (`torch.FloatTensor` of shape `()`): L_3D, Chamfer on masked groups.
    image_codes (`torch.FloatTensor` of shape `(batch_size, code_bits)`): tanh-relaxed codes of the full images.
    shape_codes (`torch.FloatTensor` of shape `(batch_size, code_bits)`): tanh-relaxed codes of the full clouds.
    masked_image_codes (`torch.FloatTensor` of shape `(batch_size, code_bits)`): codes of the masked images.
    masked_shape_codes (`torch.FloatTensor` of shape `(batch_size, code_bits)`): codes of the masked clouds.
    image_reconstruction (`torch.FloatTensor` of shape `(batch_size, num_patches, patch_size**2 * num_channels)`):
        predicted pixels of every patch (the loss reads the masked ones).
    point_reconstruction (`torch.FloatTensor` of shape `(batch_size, num_groups, group_size, 3)`):
        predicted group coordinates relative to their centres.
    image_mask (`torch.FloatTensor` of shape `(batch_size, num_patches)`): 1 where a patch was masked.
    point_mask (`torch.FloatTensor` of shape `(batch_size, num_groups)`): 1 where a group was masked.
    """

    loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    image_reconstruction_loss: torch.FloatTensor | None = None
    point_reconstruction_loss: torch.FloatTensor | None = None
    image_codes: torch.FloatTensor | None = None
    shape_codes: torch.FloatTensor | None = None
    masked_image_codes: torch.FloatTensor | None = None
    masked_shape_codes: torch.FloatTensor | None = None
    image_reconstruction: torch.FloatTensor | None = None
    point_reconstruction: torch.FloatTensor | None = None
    image_mask: torch.FloatTensor | None = None
    point_mask: torch.FloatTensor | None = None


def info_nce_loss(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``queries`` and row i of ``keys`` are the positive pair.

    Both ``[B, D]``; cosine similarity over ``temperature``; mean of the two directions.
    """
    logits = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def cmah_contrastive_loss(
    config: CMAHConfig,
    image_codes: torch.Tensor,
    shape_codes: torch.Tensor,
    masked_image_codes: torch.Tensor | None = None,
    masked_shape_codes: torch.Tensor | None = None,
    gather_codes: Callable[[torch.Tensor], torch.Tensor] | None = None,
    pair_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """L_c, the one implementation: ``contrastive_weight`` · InfoNCE(image, shape) + ``masked_contrastive_weight``
    · ½ [InfoNCE(masked image, shape) + InfoNCE(masked shape, image)] over relaxed codes ``[B, K]``.

    ``gather_codes`` maps this process's rows to every process's rows (a differentiable
    all-gather), so that the negatives span the global batch; the codes may also arrive gathered
    already (then leave it `None`). ``pair_loss(a, b)`` replaces InfoNCE in every term (a
    trainer's choice, e.g. the hard contrastive loss of ``hf_cmah.losses``; the model's files do
    not need it). In float32 with autocast off: under mixed precision, bf16 or fp16 codes are too
    coarse for a softmax over the batch.
    """
    gather = gather_codes or (lambda codes: codes)
    temperature = config.contrastive_temperature
    pair_loss = pair_loss or (lambda queries, keys: info_nce_loss(queries, keys, temperature))
    with torch.autocast(image_codes.device.type, enabled=False):
        image_codes, shape_codes = gather(image_codes.float()), gather(shape_codes.float())
        loss = config.contrastive_weight * pair_loss(image_codes, shape_codes)
        if masked_image_codes is not None and masked_shape_codes is not None:
            loss = loss + config.masked_contrastive_weight * 0.5 * (
                pair_loss(gather(masked_image_codes.float()), shape_codes)
                + pair_loss(gather(masked_shape_codes.float()), image_codes)
            )
    return loss


def chamfer_distance(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Symmetric L2 Chamfer distance (Point-MAE's ``ChamferDistanceL2``) between point sets.

    ``[M, S, 3]`` each; the mean squared distance to the nearest point, both ways, averaged over M.
    """
    distances = torch.cdist(predicted, target) ** 2  # (M, S, S)
    return distances.min(dim=2).values.mean() + distances.min(dim=1).values.mean()


def masked_patch_loss(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, normalize_target: bool
) -> torch.Tensor:
    """ViTMAE's pixel loss: per-patch MSE averaged over masked patches only (mask 1 = masked)."""
    if normalize_target:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    per_patch = ((predicted - target) ** 2).mean(dim=-1)  # (B, P)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


class CMAHImageEmbeddings(nn.Module):
    """Patch tokens + learned position embeddings, optional random masking, CLS token first."""

    def __init__(self, config: CMAHConfig):
        super().__init__()
        self.patch_embeddings = PatchEmbedding(
            config.image_size, config.patch_size, config.num_channels, config.hidden_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))

    def embed_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch tokens with their positions ``[B, P, C]``, before masking (shared by the full and masked pass)."""
        return self.patch_embeddings(pixel_values) + self.position_embeddings[:, 1:]

    def mask_and_prepend_cls(
        self, patches: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns tokens ``[B, 1 + P_kept, C]``, and the mask and restore ids when masking."""
        mask = ids_restore = None
        if mask_ratio > 0:
            patches, mask, ids_restore = random_masking(patches, mask_ratio, noise)
        cls = (self.cls_token + self.position_embeddings[:, :1]).expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1), mask, ids_restore

    def forward(
        self, pixel_values: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns tokens ``[B, 1 + P_kept, C]``, and the mask and restore ids when masking."""
        return self.mask_and_prepend_cls(self.embed_patches(pixel_values), mask_ratio, noise)


class CMAHPointGrouper(nn.Module):
    """Point-MAE grouping: FPS picks G centres, each takes its S nearest points, relative to it."""

    def __init__(self, config: CMAHConfig):
        super().__init__()
        self.num_groups = config.num_groups
        self.group_size = config.group_size

    def forward(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, N, 3]`` → neighbourhoods ``[B, G, S, 3]`` (centred) and centres ``[B, G, 3]``."""
        centres = gather_points(xyz, farthest_point_sample(xyz, self.num_groups))  # (B, G, 3)
        neighbourhoods = gather_points(xyz, knn_indices(xyz, centres, self.group_size))  # (B, G, S, 3)
        return neighbourhoods - centres.unsqueeze(2), centres


class CMAHPointEmbeddings(nn.Module):
    """Group tokens from a mini-PointNet + centre position MLP, optional masking, CLS token first."""

    def __init__(self, config: CMAHConfig):
        super().__init__()
        self.grouper = CMAHPointGrouper(config)
        self.group_encoder = MiniPointNet(3, config.hidden_size)
        self.position_embeddings = CentrePositionMLP(config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.cls_position = nn.Parameter(torch.zeros(1, 1, config.hidden_size))

    def embed_groups(self, neighbourhoods: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Group tokens with their centre positions ``[B, G, C]``, before masking (shared by both passes)."""
        return self.group_encoder(neighbourhoods) + self.position_embeddings(centres)

    def mask_and_prepend_cls(
        self, groups: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns tokens ``[B, 1 + G_kept, C]``, and the mask and restore ids when masking."""
        mask = ids_restore = None
        if mask_ratio > 0:
            groups, mask, ids_restore = random_masking(groups, mask_ratio, noise)
        cls = (self.cls_token + self.cls_position).expand(groups.shape[0], -1, -1)
        return torch.cat([cls, groups], dim=1), mask, ids_restore

    def forward(
        self, neighbourhoods: torch.Tensor, centres: torch.Tensor, mask_ratio: float = 0.0, noise=None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns tokens ``[B, 1 + G_kept, C]``, and the mask and restore ids when masking."""
        return self.mask_and_prepend_cls(self.embed_groups(neighbourhoods, centres), mask_ratio, noise)


class CMAHEncoder(nn.Module):
    """A stack of pre-norm transformer blocks and a final LayerNorm (image or point encoder)."""

    def __init__(self, config: CMAHConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                config.layer_norm_eps,
                dropout=config.dropout,
            )
            for _ in range(num_layers)
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.layernorm(hidden_states)


class CMAHHashHead(nn.Module):
    """Encoder tokens → K hash logits; ``tanh`` relaxes them in training, ``sign`` binarises at inference.

    Reads the CLS token concatenated with the mean of the other tokens (Point-BERT's pooling):
    at initialisation the CLS output barely differs between inputs, the mean does, so the
    contrastive loss gets a usable gradient from the first step.
    """

    def __init__(self, config: CMAHConfig):
        super().__init__()
        self.dense = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.act = nn.GELU()
        self.hash = nn.Linear(config.hidden_size, config.code_bits)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([hidden_states[:, 0], hidden_states[:, 1:].mean(dim=1)], dim=-1)  # (B, 2C)
        return self.hash(self.act(self.dense(pooled)))


class CMAHFusionLayer(nn.Module):
    """Self-attention within each modality, then cross-attention from each modality to the other."""

    def __init__(self, config: CMAHConfig):
        super().__init__()
        sizes = (config.decoder_hidden_size, config.decoder_num_attention_heads, config.decoder_intermediate_size)
        self.image_self_attention = TransformerBlock(*sizes, config.layer_norm_eps)
        self.point_self_attention = TransformerBlock(*sizes, config.layer_norm_eps)
        self.image_cross_attention = CrossAttentionBlock(*sizes, config.layer_norm_eps)
        self.point_cross_attention = CrossAttentionBlock(*sizes, config.layer_norm_eps)

    def forward(self, image_states: torch.Tensor, point_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_states = self.image_self_attention(image_states)
        point_states = self.point_self_attention(point_states)
        # Both directions read the other modality before either is updated.
        fused_image = self.image_cross_attention(image_states, point_states)
        fused_point = self.point_cross_attention(point_states, image_states)
        return fused_image, fused_point


class CMAHDecoder(nn.Module):
    """Decoder blocks at the decoder width and a linear prediction head (pixels or group xyz)."""

    def __init__(self, config: CMAHConfig, output_size: int):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.decoder_hidden_size,
                config.decoder_num_attention_heads,
                config.decoder_intermediate_size,
                config.layer_norm_eps,
            )
            for _ in range(config.decoder_num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, output_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.decoder_pred(self.layernorm(hidden_states))


def _move_base_keys_under_prefix(module: CMAHForPreTraining, state_dict: dict, prefix: str, *args) -> None:
    """`load_state_dict` pre-hook: encoder weights saved at the top level (the single class before the split,
    e.g. an earlier run's ``step_N`` checkpoint that `accelerate` resumes) move under ``cmah.``.

    `from_pretrained` needs no hook (transformers adds or strips ``base_model_prefix`` per key); torch's
    `load_state_dict`, which `accelerate.load_state` calls, does not do that itself.
    """
    base_modules = {name for name, _ in module.cmah.named_children()}
    for key in [key for key in state_dict if key.startswith(prefix)]:
        name = key[len(prefix) :]
        if name.split(".", 1)[0] in base_modules:
            state_dict[f"{prefix}{module.base_model_prefix}.{name}"] = state_dict.pop(key)


class CMAHPreTrainedModel(PreTrainedModel):
    config_class = CMAHConfig
    base_model_prefix = "cmah"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock", "CMAHFusionLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Linear/conv/norm layers by the base rule; tokens and position tables by truncated normals."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, CMAHImageEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, CMAHPointEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.cls_position, std=std)
        elif isinstance(module, CMAHForPreTraining):
            init.trunc_normal_(module.image_mask_token, std=std)
            init.trunc_normal_(module.point_mask_token, std=std)
            init.trunc_normal_(module.image_decoder_position_embeddings, std=std)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save, with both CMAH classes in ``auto_map`` when they are registered for remote code.

        transformers names only the saved class there; naming both lets a folder of either load with
        ``trust_remote_code=True`` as `AutoModel` (retrieval) and as `AutoModelForPreTraining`.
        """
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.{CMAHModel.__name__}",
                "AutoModelForPreTraining": f"{module}.{CMAHForPreTraining.__name__}",
            }
        return super().save_pretrained(save_directory, *args, **kwargs)


class CMAHModel(CMAHPreTrainedModel):
    """Both encoders with their hash heads: everything retrieval needs (the pre-training head is not here).

    Retriever protocol: `get_image_codes` / `get_shape_codes` (±1 int8 ``[B, K]``) and
    `get_image_embeds` / `get_shape_embeds` (L2-normalised tanh codes, float ``[B, K]``).
    """

    def __init__(self, config: CMAHConfig, defer_init: bool = False):
        """``defer_init``: leave the weights to the enclosing model's initialisation (`CMAHForPreTraining`)."""
        super().__init__(config)
        self.image_embeddings = CMAHImageEmbeddings(config)
        self.image_encoder = CMAHEncoder(config, config.image_num_hidden_layers)
        self.image_hash_head = CMAHHashHead(config)
        self.point_embeddings = CMAHPointEmbeddings(config)
        self.point_encoder = CMAHEncoder(config, config.point_num_hidden_layers)
        self.point_hash_head = CMAHHashHead(config)
        self._defer_init = defer_init
        self.post_init()

    def init_weights(self) -> None:
        """transformers' initialisation, unless the enclosing `CMAHForPreTraining` does it.

        That model initialises every weight once, after all its modules exist and in module order: the
        order of the single class before the split, so a seed gives the same weights as it did then.
        """
        if self._defer_init:
            self._defer_init = False  # once: a later call initialises as usual
            return
        super().init_weights()

    def _adjust_missing_and_unexpected_keys(self, loading_info) -> None:
        """A checkpoint of `CMAHForPreTraining` also holds its fusion block and decoders: dropped with one line
        saying how many and why, instead of transformers' key-by-key report of unexpected weights."""
        dropped = {key for key in loading_info.unexpected_keys if PRETRAINING_HEAD_KEYS.match(key)}
        if dropped:
            loading_info.unexpected_keys = set(loading_info.unexpected_keys) - dropped
            logger.warning(
                f"{type(self).__name__}: not loading the {len(dropped)} pre-training weights of the checkpoint "
                "(fusion block, decoders, mask tokens): retrieval needs only the encoders and hash heads; "
                "CMAHForPreTraining loads them"
            )
        super()._adjust_missing_and_unexpected_keys(loading_info)

    # ----------------------------------------------------------------- input checks
    def _check_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        config = self.config
        check_pixel_values(pixel_values, config.num_channels, config.image_size)
        return pixel_values.to(device=self.device, dtype=self.dtype)

    def _check_points(self, points: torch.Tensor) -> torch.Tensor:
        config = self.config
        check_points(points, config.num_groups, config.group_size, config.num_points)
        return points[..., :3].to(device=self.device, dtype=self.dtype)  # CMAH reads geometry only; colour is ignored

    # ----------------------------------------------------------------- encoders
    def _encode_image(self, patches: torch.Tensor, mask_ratio: float = 0.0, noise=None):
        """Hash logits, encoder states, mask and restore ids of embedded patches (`embed_patches`)."""
        tokens, mask, ids_restore = self.image_embeddings.mask_and_prepend_cls(patches, mask_ratio, noise)
        hidden = self.image_encoder(tokens)
        return self.image_hash_head(hidden), hidden, mask, ids_restore

    def _encode_points(self, groups: torch.Tensor, mask_ratio: float = 0.0, noise=None):
        """Hash logits, encoder states, mask and restore ids of embedded groups (`embed_groups`)."""
        tokens, mask, ids_restore = self.point_embeddings.mask_and_prepend_cls(groups, mask_ratio, noise)
        hidden = self.point_encoder(tokens)
        return self.point_hash_head(hidden), hidden, mask, ids_restore

    def _image_logits_and_states(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encode_image(self.image_embeddings.embed_patches(self._check_pixel_values(pixel_values)))[:2]

    def _shape_logits_and_states(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        neighbourhoods, centres = self.point_embeddings.grouper(self._check_points(points))
        return self._encode_points(self.point_embeddings.embed_groups(neighbourhoods, centres))[:2]

    def get_image_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Hash logits ``[B, K]`` of full (unmasked) images, less ``config.image_code_thresholds`` when
        calibrated, so that codes and embeddings of queries share the calibrated zero."""
        logits = self._image_logits_and_states(pixel_values)[0]
        if self.config.image_code_thresholds is None:
            return logits
        return logits - logits.new_tensor(self.config.image_code_thresholds)

    def get_shape_logits(self, points: torch.Tensor) -> torch.Tensor:
        """Hash logits ``[B, K]`` of full point clouds."""
        return self._shape_logits_and_states(points)[0]

    def get_image_codes(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """±1 int8 codes ``[B, K]`` of images (``pixel_values`` from `CMAHProcessor`)."""
        return codes_from_logits(self.get_image_logits(pixel_values))

    def get_shape_codes(self, points: torch.Tensor) -> torch.Tensor:
        """±1 int8 codes ``[B, K]`` of point clouds ``[B, N, 3]`` (``points`` from `CMAHProcessor`)."""
        return codes_from_logits(self.get_shape_logits(points))

    def get_image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised relaxed codes ``tanh(logits)`` ``[B, K]``, for float re-ranking."""
        return F.normalize(torch.tanh(self.get_image_logits(pixel_values)), dim=-1)

    def get_shape_embeds(self, points: torch.Tensor) -> torch.Tensor:
        """L2-normalised relaxed codes ``tanh(logits)`` ``[B, K]`` of point clouds."""
        return F.normalize(torch.tanh(self.get_shape_logits(points)), dim=-1)

    def get_image_codes_and_embeds(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``get_image_codes`` and ``get_image_embeds`` from one encoder pass (what index builds and evaluation use)."""
        logits = self.get_image_logits(pixel_values)
        return codes_from_logits(logits), F.normalize(torch.tanh(logits), dim=-1)

    def get_shape_codes_and_embeds(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``get_shape_codes`` and ``get_shape_embeds`` from one encoder pass."""
        logits = self.get_shape_logits(points)
        return codes_from_logits(logits), F.normalize(torch.tanh(logits), dim=-1)

    def forward(self, pixel_values: torch.Tensor | None = None, points: torch.Tensor | None = None) -> CMAHModelOutput:
        """Hash logits and encoder states of the images, the clouds, or both (unpaired: each side on its own)."""
        if pixel_values is None and points is None:
            raise ModelInputError("CMAHModel needs pixel_values, points or both")
        output = CMAHModelOutput()
        if pixel_values is not None:
            output.image_code_logits, output.image_last_hidden_state = self._image_logits_and_states(pixel_values)
        if points is not None:
            output.shape_code_logits, output.shape_last_hidden_state = self._shape_logits_and_states(points)
        return output


class CMAHForPreTraining(CMAHPreTrainedModel):
    """`CMAHModel` (under ``cmah``) plus the fusion block, the decoders and the training loss ``L = L_c + L_r``.

    Its checkpoints load into `CMAHModel` for retrieval (the head's weights are dropped with a log line);
    folders and ``step_N`` checkpoints of the single class before the split load here unchanged.
    """

    def __init__(self, config: CMAHConfig):
        super().__init__(config)
        self.cmah = CMAHModel(config, defer_init=True)  # initialised below by post_init, with the head
        decoder_width = config.decoder_hidden_size
        self.image_decoder_embed = nn.Linear(config.hidden_size, decoder_width)
        self.point_decoder_embed = nn.Linear(config.hidden_size, decoder_width)
        self.image_mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.point_mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.image_decoder_position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, decoder_width))
        self.point_decoder_position_embeddings = CentrePositionMLP(decoder_width)
        self.fusion_layers = nn.ModuleList(CMAHFusionLayer(config) for _ in range(config.fusion_num_layers))
        self.image_decoder = CMAHDecoder(config, config.patch_size**2 * config.num_channels)
        self.point_decoder = CMAHDecoder(config, config.group_size * 3)
        self.post_init()
        self.register_load_state_dict_pre_hook(_move_base_keys_under_prefix)

    def _reconstruct(self, image_hidden, image_restore, point_hidden, point_restore, centres):
        """Fusion block + decoders over the masked encodings → patch pixels and group xyz for every token."""
        image_tokens = self.image_decoder_embed(image_hidden)
        point_tokens = self.point_decoder_embed(point_hidden)
        image_tokens = (
            torch.cat(
                [
                    image_tokens[:, :1],
                    unshuffle_with_mask_tokens(image_tokens[:, 1:], self.image_mask_token, image_restore),
                ],
                dim=1,
            )
            + self.image_decoder_position_embeddings
        )  # (B, 1 + P, D)
        point_positions = self.point_decoder_position_embeddings(centres)  # (B, G, D)
        point_tokens = torch.cat(
            [
                point_tokens[:, :1],
                unshuffle_with_mask_tokens(point_tokens[:, 1:], self.point_mask_token, point_restore) + point_positions,
            ],
            dim=1,
        )  # (B, 1 + G, D)
        for layer in self.fusion_layers:
            image_tokens, point_tokens = layer(image_tokens, point_tokens)
        image_prediction = self.image_decoder(image_tokens)[:, 1:]  # (B, P, p·p·C)
        point_prediction = self.point_decoder(point_tokens)[:, 1:]  # (B, G, S·3)
        batch, groups, _ = point_prediction.shape
        return image_prediction, point_prediction.reshape(batch, groups, self.config.group_size, 3)

    def _uses_masked_inputs(self) -> bool:
        """Whether any loss term reads the masked pass (the contrastive-only ablation skips it)."""
        config = self.config
        weights = (
            config.masked_contrastive_weight,
            config.image_reconstruction_weight,
            config.point_reconstruction_weight,
        )
        return any(weight > 0 for weight in weights) and config.image_mask_ratio > 0 and config.point_mask_ratio > 0

    def forward(
        self,
        pixel_values: torch.Tensor,
        points: torch.Tensor,
        image_noise: torch.Tensor | None = None,
        point_noise: torch.Tensor | None = None,
        gather_codes: Callable[[torch.Tensor], torch.Tensor] | None = None,
        pair_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> CMAHForPreTrainingOutput:
        r"""The CMAH training objective on paired images and point clouds (row i of each is one shape).

        image_noise (`torch.Tensor` of shape `(batch_size, num_patches)`, *optional*):
            uniform noise that decides which patches are masked (default: ``torch.rand``).
        point_noise (`torch.Tensor` of shape `(batch_size, num_groups)`, *optional*):
            uniform noise that decides which point groups are masked.
        gather_codes (`Callable`, *optional*): a differentiable all-gather of ``[B, K]`` codes across
            processes, so that L_c's negatives span the global batch (`cmah_contrastive_loss`).
        pair_loss (`Callable`, *optional*): the contrastive loss of two ``[B, K]`` code batches, row i a
            pair, in place of InfoNCE at ``contrastive_temperature`` (e.g. the hard contrastive loss).
        """
        config, cmah = self.config, self.cmah
        pixel_values = cmah._check_pixel_values(pixel_values)
        xyz = cmah._check_points(points)
        if pixel_values.shape[0] != xyz.shape[0]:
            raise ModelInputError(
                f"pixel_values and points must pair row by row: got {pixel_values.shape[0]} images "
                f"and {xyz.shape[0]} point clouds"
            )
        neighbourhoods, centres = cmah.point_embeddings.grouper(xyz)
        # Patch and group tokens are embedded once; the masked pass drops tokens from these
        # (the group encoder is most of a step's FLOPs, so running it twice would nearly double it).
        patches = cmah.image_embeddings.embed_patches(pixel_values)
        groups = cmah.point_embeddings.embed_groups(neighbourhoods, centres)
        image_codes = torch.tanh(cmah._encode_image(patches)[0])
        shape_codes = torch.tanh(cmah._encode_points(groups)[0])
        output = CMAHForPreTrainingOutput(image_codes=image_codes, shape_codes=shape_codes)
        image_loss = point_loss = image_codes.new_zeros(())
        if self._uses_masked_inputs():
            masked_image_logits, image_hidden, image_mask, image_restore = cmah._encode_image(
                patches, config.image_mask_ratio, image_noise
            )
            masked_shape_logits, point_hidden, point_mask, point_restore = cmah._encode_points(
                groups, config.point_mask_ratio, point_noise
            )
            image_prediction, point_prediction = self._reconstruct(
                image_hidden, image_restore, point_hidden, point_restore, centres
            )
            image_loss = masked_patch_loss(
                image_prediction, patchify(pixel_values, config.patch_size), image_mask, config.norm_pix_loss
            )
            masked_groups = point_mask.bool()
            point_loss = chamfer_distance(point_prediction[masked_groups], neighbourhoods[masked_groups])
            output.masked_image_codes = torch.tanh(masked_image_logits)
            output.masked_shape_codes = torch.tanh(masked_shape_logits)
            output.image_reconstruction, output.point_reconstruction = image_prediction, point_prediction
            output.image_mask, output.point_mask = image_mask, point_mask

        output.contrastive_loss = cmah_contrastive_loss(
            config, image_codes, shape_codes, output.masked_image_codes, output.masked_shape_codes, gather_codes,
            pair_loss,
        )  # fmt: skip
        output.image_reconstruction_loss = image_loss
        output.point_reconstruction_loss = point_loss
        output.loss = (
            output.contrastive_loss
            + config.image_reconstruction_weight * image_loss
            + config.point_reconstruction_weight * point_loss
        )
        return output


def __getattr__(name: str):
    if name == "CMAHInputError":  # one release: the input checks' error is shared by every model now
        return deprecated_input_error(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CMAHForPreTraining",
    "CMAHForPreTrainingOutput",
    "CMAHModel",
    "CMAHModelOutput",
    "CMAHPreTrainedModel",
    "chamfer_distance",
    "cmah_contrastive_loss",
    "info_nce_loss",
    "masked_patch_loss",
]
