"""Pre-aligned image/shape dual encoder: a CLIP (or EfficientNet-Lite) image tower and a point-cloud shape tower.

Follows CLIP: towers built from sub-configs, ``visual_projection`` / ``shape_projection`` into
one embedding space, a ``logit_scale`` parameter, ``get_*_features`` methods. The shape tower
is OpenShape's PPAT or ULIP-2's Point-BERT in pure PyTorch, so the converted public weights
(``hf_cmah.convert``) run zero-shot; an optional binarisation head turns embeddings into ±1
codes so that one shape index serves both codes and floats.

Losses (InfoNCE, hard contrastive loss) live in ``hf_cmah.losses``; ``forward`` returns the
embeddings and scaled similarities that they take.

Self-contained (ARCHITECTURE.md, "Saved models"): imports torch, transformers and its
same-folder siblings only, so a saved folder loads with ``trust_remote_code=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_efficientnet_lite import EfficientNetLiteVisionConfig
from .configuration_prealigned import PreAlignedShapeConfig, PreAlignedShapeEncoderConfig
from .efficientnet_lite_layers import EfficientNetLiteVisionModel
from .hash_codes import codes_from_logits
from .input_checks import ModelInputError, check_pixel_values, check_points, deprecated_input_error
from .point_layers import CentrePositionMLP, MiniPointNet, SetAbstraction, group_points
from .vit_layers import TransformerBlock


@dataclass
class PreAlignedShapeModelOutput(ModelOutput):
    r"""
    logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, shape_batch_size)`):
        ``exp(logit_scale)`` · cosine similarity of every image to every shape.
    logits_per_shape (`torch.FloatTensor` of shape `(shape_batch_size, image_batch_size)`): the transpose.
    image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`): L2-normalised image embeddings.
    shape_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`): L2-normalised shape embeddings.
    image_code_logits (`torch.FloatTensor` of shape `(batch_size, code_bits)`): binarisation-head outputs
        of the images (``sign`` gives the codes, ``tanh`` relaxes them); `None` without a head.
    shape_code_logits (`torch.FloatTensor` of shape `(batch_size, code_bits)`): the same for the shapes.
    """

    logits_per_image: torch.FloatTensor | None = None
    logits_per_shape: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    shape_embeds: torch.FloatTensor | None = None
    image_code_logits: torch.FloatTensor | None = None
    shape_code_logits: torch.FloatTensor | None = None


class PreAlignedShapeBlocks(nn.Module):
    """The pre-norm transformer blocks both shape towers share (no final norm here)."""

    def __init__(self, config: PreAlignedShapeEncoderConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                config.layer_norm_eps,
                qkv_bias=config.qkv_bias,
            )
            for _ in range(config.num_hidden_layers)
        )

    def forward(self, hidden_states: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            # Point-BERT adds the position embedding before every block, not only the first.
            hidden_states = layer(hidden_states if positions is None else hidden_states + positions)
        return hidden_states


class PreAlignedPPATEncoder(nn.Module):
    """OpenShape's point-patch transformer (PPAT): ``[B, N, C]`` points → ``[B, hidden]`` CLS feature."""

    def __init__(self, config: PreAlignedShapeEncoderConfig):
        super().__init__()
        self.config = config
        self.set_abstraction = SetAbstraction(3 + config.in_channels, config.set_abstraction_channels)
        # "lift": concat(centre xyz, pooled feature) → width, then LayerNorm.
        self.lift = nn.Linear(3 + config.set_abstraction_channels[-1], config.hidden_size)
        self.lift_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cls_token = nn.Parameter(torch.zeros(config.hidden_size))
        self.encoder = PreAlignedShapeBlocks(config)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        config = self.config
        # Every input channel (xyz too) is a feature beside the relative xyz: 3 + C channels.
        centres, neighbourhoods = group_points(
            points[..., :3], points, config.num_groups, config.group_size, config.group_radius, config.fps_start_index
        )  # (B, G, 3), (B, G, S, 3 + C)
        pooled = self.set_abstraction(neighbourhoods)  # (B, G, sa_dim)
        tokens = self.lift_norm(self.lift(torch.cat([centres, pooled], dim=-1)))  # (B, G, hidden)
        cls = self.cls_token.expand(tokens.shape[0], 1, -1)
        hidden = self.encoder(torch.cat([cls, tokens], dim=1))  # (B, 1 + G, hidden)
        return hidden[:, 0]


class PreAlignedPointBERTEncoder(nn.Module):
    """ULIP-2's Point-BERT: ``[B, N, C]`` points → ``[B, 2·hidden]`` concat(CLS, max of group tokens)."""

    def __init__(self, config: PreAlignedShapeEncoderConfig):
        super().__init__()
        self.config = config
        first_hidden, first_out, second_hidden, out = config.group_encoder_channels
        # Colour channels travel beside the relative xyz, so the mini-PointNet reads C channels.
        self.group_encoder = MiniPointNet(config.in_channels, out, (first_hidden, first_out), second_hidden)
        self.reduce_dim = nn.Linear(out, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.cls_position = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = CentrePositionMLP(config.hidden_size, config.position_hidden_size)
        self.encoder = PreAlignedShapeBlocks(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        config = self.config
        centres, neighbourhoods = group_points(
            points[..., :3], points[..., 3:], config.num_groups, config.group_size, None, config.fps_start_index
        )  # (B, G, 3), (B, G, S, C)
        tokens = self.reduce_dim(self.group_encoder(neighbourhoods))  # (B, G, hidden)
        batch = tokens.shape[0]
        hidden = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)  # (B, 1 + G, hidden)
        positions = torch.cat(
            [self.cls_position.expand(batch, -1, -1), self.position_embeddings(centres)], dim=1
        )  # (B, 1 + G, hidden)
        hidden = self.layernorm(self.encoder(hidden, positions))
        return torch.cat([hidden[:, 0], hidden[:, 1:].max(dim=1).values], dim=-1)


SHAPE_ENCODERS = {"ppat": PreAlignedPPATEncoder, "pointbert": PreAlignedPointBERTEncoder}


def vision_tower(config) -> nn.Module:
    """The image tower its config names; both return ``pooler_output`` ``[B, config.hidden_size]``."""
    if isinstance(config, EfficientNetLiteVisionConfig):
        return EfficientNetLiteVisionModel(config)
    return CLIPVisionModel._from_config(config)


class PreAlignedShapePreTrainedModel(PreTrainedModel):
    config_class = PreAlignedShapeConfig
    base_model_prefix = "prealigned_shape"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False
    _no_split_modules = ["TransformerBlock", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Linear/conv/norm layers by the base rule (CLIP's own modules by CLIP's rule); tokens explicitly."""
        super()._init_weights(module)
        if isinstance(module, PreAlignedPPATEncoder):
            init.normal_(module.cls_token, std=1.0)  # OpenShape draws it from torch.randn
        elif isinstance(module, PreAlignedPointBERTEncoder):
            init.trunc_normal_(module.cls_token, std=self.config.initializer_range)
            init.trunc_normal_(module.cls_position, std=self.config.initializer_range)
        elif isinstance(module, PreAlignedShapeModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            if module.code_projection is not None:
                # Gaussian rows: sign(W e) is a random-hyperplane hash of the cosine geometry.
                init.normal_(module.code_projection.weight, std=1.0)


class PreAlignedShapeModel(PreAlignedShapePreTrainedModel):
    """CLIP or EfficientNet-Lite image tower + PPAT / Point-BERT shape tower, aligned in one ``projection_dim`` space.

    Retriever protocol: `get_image_embeds` / `get_shape_embeds` (L2-normalised float ``[B, D]``)
    and, with ``config.code_bits`` set, `get_image_codes` / `get_shape_codes` (±1 int8 ``[B, K]``).
    """

    def __init__(self, config: PreAlignedShapeConfig):
        super().__init__(config)
        vision_config, shape_config = config.vision_config, config.shape_config
        # Same attribute names as transformers' CLIPModel, so a CLIP state dict's vision keys load as they are.
        self.vision_model = vision_tower(vision_config)
        self.visual_projection = nn.Linear(vision_config.hidden_size, config.projection_dim, bias=False)
        self.shape_model = SHAPE_ENCODERS[shape_config.architecture](shape_config)
        if config.shape_projection == "identity":
            self.shape_projection = nn.Identity()
        else:
            self.shape_projection = nn.Linear(
                shape_config.feature_size, config.projection_dim, bias=config.shape_projection == "linear"
            )
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.code_projection = (
            nn.Linear(config.projection_dim, config.code_bits, bias=False) if config.code_bits else None
        )
        self.post_init()

    # ----------------------------------------------------------------- input checks
    def _check_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision = self.config.vision_config
        check_pixel_values(pixel_values, vision.num_channels, vision.image_size)
        return pixel_values.to(device=self.device, dtype=self.dtype)

    def _check_points(self, points: torch.Tensor) -> torch.Tensor:
        shape = self.config.shape_config
        check_points(points, shape.num_groups, shape.group_size, shape.num_points)
        points = points.to(device=self.device, dtype=self.dtype)
        if shape.in_channels == 3:
            return points[..., :3]
        if points.shape[-1] == 3:  # a colour model given bare geometry: uniform grey, as in training
            points = torch.cat([points, torch.full_like(points, shape.default_color)], dim=-1)
        return points

    def _require_code_head(self) -> nn.Linear:
        if self.code_projection is None:
            raise ModelInputError(
                "this model has no binarisation head (config.code_bits is None); use get_*_embeds for floats"
            )
        return self.code_projection

    # ----------------------------------------------------------------- towers
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected, unnormalised image features ``[B, projection_dim]`` (the tower's pooled output)."""
        pooled = self.vision_model(pixel_values=self._check_pixel_values(pixel_values)).pooler_output
        return self.visual_projection(pooled)

    def get_shape_features(self, points: torch.Tensor) -> torch.Tensor:
        """Projected, unnormalised shape features ``[B, projection_dim]`` of clouds ``[B, N, 3 | 6]``."""
        return self.shape_projection(self.shape_model(self._check_points(points)))

    def get_image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings ``[B, projection_dim]``."""
        return F.normalize(self.get_image_features(pixel_values), dim=-1)

    def get_shape_embeds(self, points: torch.Tensor) -> torch.Tensor:
        """L2-normalised shape embeddings ``[B, projection_dim]``."""
        return F.normalize(self.get_shape_features(points), dim=-1)

    def get_image_codes(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """±1 int8 codes ``[B, code_bits]`` of images (needs ``config.code_bits``)."""
        head = self._require_code_head()
        return codes_from_logits(head(self.get_image_embeds(pixel_values)))

    def get_shape_codes(self, points: torch.Tensor) -> torch.Tensor:
        """±1 int8 codes ``[B, code_bits]`` of point clouds (needs ``config.code_bits``)."""
        head = self._require_code_head()
        return codes_from_logits(head(self.get_shape_embeds(points)))

    def get_image_codes_and_embeds(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``get_image_codes`` and ``get_image_embeds`` from one pass of the image tower."""
        embeds = self.get_image_embeds(pixel_values)
        return codes_from_logits(self._require_code_head()(embeds)), embeds

    def get_shape_codes_and_embeds(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``get_shape_codes`` and ``get_shape_embeds`` from one pass of the shape tower."""
        embeds = self.get_shape_embeds(points)
        return codes_from_logits(self._require_code_head()(embeds)), embeds

    def forward(self, pixel_values: torch.Tensor, points: torch.Tensor) -> PreAlignedShapeModelOutput:
        """Embeddings of both towers and their scaled similarities (the input of ``hf_cmah.losses``)."""
        image_embeds = self.get_image_embeds(pixel_values)
        shape_embeds = self.get_shape_embeds(points)
        logits_per_image = self.logit_scale.exp() * image_embeds @ shape_embeds.T
        output = PreAlignedShapeModelOutput(
            logits_per_image=logits_per_image,
            logits_per_shape=logits_per_image.T,
            image_embeds=image_embeds,
            shape_embeds=shape_embeds,
        )
        if self.code_projection is not None:
            output.image_code_logits = self.code_projection(image_embeds)
            output.shape_code_logits = self.code_projection(shape_embeds)
        return output


def __getattr__(name: str):
    if name == "PreAlignedInputError":  # one release: the input checks' error is shared by every model now
        return deprecated_input_error(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PreAlignedPPATEncoder",
    "PreAlignedPointBERTEncoder",
    "PreAlignedShapeModel",
    "PreAlignedShapeModelOutput",
    "PreAlignedShapePreTrainedModel",
]
