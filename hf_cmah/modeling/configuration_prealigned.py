"""Pre-aligned dual encoder configuration: a CLIP (or EfficientNet-Lite) image tower and a point-cloud shape tower.

Like `CLIPConfig`, the towers come from sub-configs: `vision_config` is a transformers
`CLIPVisionConfig` (so public CLIP checkpoints plug in unchanged) or an
`EfficientNetLiteVisionConfig` (an ImageNet-pretrained CNN, chosen by its ``model_type``), and `shape_config` a
`PreAlignedShapeEncoderConfig` selecting OpenShape's PPAT or ULIP-2's PointBERT. Presets
(`openshape-pointbert-vitg14`, `ulip2-pointbert-vitg14`, …) are configs, not code paths.
"""

from __future__ import annotations

import math

from transformers import CLIPVisionConfig, PretrainedConfig

from .configuration_efficientnet_lite import EfficientNetLiteVisionConfig

SHAPE_ARCHITECTURES = ("ppat", "pointbert")
# The image towers, by the ``model_type`` their config dict carries (CLIP when it names none).
VISION_CONFIGS = {
    CLIPVisionConfig.model_type: CLIPVisionConfig,
    EfficientNetLiteVisionConfig.model_type: EfficientNetLiteVisionConfig,
}


class PreAlignedShapeEncoderConfig(PretrainedConfig):
    r"""Configuration of the shape tower of a [`PreAlignedShapeModel`].

    Two layer arrangements (``architecture``):

    - ``"ppat"`` — OpenShape's point-patch transformer: set abstraction (FPS centres, ball query of
      ``group_radius``, 1×1 conv MLP ``set_abstraction_channels`` with BatchNorm + ReLU, max-pool),
      lift (concat centre xyz, linear to ``hidden_size``, LayerNorm), CLS token, pre-norm blocks
      (qkv without bias), CLS output without final norm. Feature size = ``hidden_size``.
    - ``"pointbert"`` — ULIP-2's Point-BERT: FPS + kNN groups, mini-PointNet
      (``group_encoder_channels``), linear to ``hidden_size``, CLS token + CLS position, a centre
      position MLP added before every block, final LayerNorm, concat(CLS, max of tokens).
      Feature size = 2 · ``hidden_size``.

    Args:
        architecture (`str`, defaults to `"ppat"`): `"ppat"` or `"pointbert"`.
        in_channels (`int`, defaults to 6): per-point input channels, 3 (xyz) or 6 (xyz + rgb in 0..1).
        num_points (`int`, defaults to 10000): points per cloud the processor resamples to.
        up_axis (`str`, defaults to `"z"`): the gravity axis the weights were trained with (`"y"` or `"z"`);
            the processor rotates y-up clouds (contract 1 of ARCHITECTURE.md) to it.
        default_color (`float`, defaults to 0.4): grey level given to clouds without colour when
            `in_channels` is 6.
        hidden_size (`int`, defaults to 512): transformer width.
        num_hidden_layers (`int`, defaults to 12): transformer depth.
        num_attention_heads (`int`, defaults to 8): attention heads (head size = hidden / heads).
        intermediate_size (`int`, defaults to 1536): MLP width of a block.
        qkv_bias (`bool`, defaults to False): bias on the query/key/value projections.
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon (PyTorch's default, as both originals).
        num_groups (`int`, defaults to 384): FPS centres (patches / groups) per cloud.
        group_size (`int`, defaults to 64): points gathered per centre.
        group_radius (`float`, *optional*, defaults to 0.2): ball-query radius (PPAT); `None` selects kNN
            grouping (PointBERT).
        set_abstraction_channels (`list[int]`, defaults to `[64, 64, 256]`): PPAT's conv MLP widths; the
            last one is ``sa_dim``.
        group_encoder_channels (`list[int]`, defaults to `[128, 256, 512, 256]`): PointBERT's
            mini-PointNet: first conv hidden, first conv output, second conv hidden, output.
        position_hidden_size (`int`, defaults to 128): hidden width of PointBERT's centre position MLP.
        fps_start_index (`int`, defaults to 0): the point farthest point sampling starts from (the
            pointnet2 CUDA kernel starts at 0), so encodings are a pure function of the input.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation.
    """

    model_type = "prealigned_shape_encoder"
    base_config_key = "shape_config"

    def __init__(
        self,
        architecture: str = "ppat",
        in_channels: int = 6,
        num_points: int = 10000,
        up_axis: str = "z",
        default_color: float = 0.4,
        hidden_size: int = 512,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 8,
        intermediate_size: int = 1536,
        qkv_bias: bool = False,
        layer_norm_eps: float = 1e-5,
        num_groups: int = 384,
        group_size: int = 64,
        group_radius: float | None = 0.2,
        set_abstraction_channels: list[int] | tuple[int, ...] = (64, 64, 256),
        group_encoder_channels: list[int] | tuple[int, ...] = (128, 256, 512, 256),
        position_hidden_size: int = 128,
        fps_start_index: int = 0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.architecture = architecture
        self.in_channels = in_channels
        self.num_points = num_points
        self.up_axis = up_axis
        self.default_color = default_color
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.qkv_bias = qkv_bias
        self.layer_norm_eps = layer_norm_eps
        self.num_groups = num_groups
        self.group_size = group_size
        self.group_radius = group_radius
        self.set_abstraction_channels = list(set_abstraction_channels)
        self.group_encoder_channels = list(group_encoder_channels)
        self.position_hidden_size = position_hidden_size
        self.fps_start_index = fps_start_index
        self.initializer_range = initializer_range
        super().__init__(**kwargs)
        self._check()

    def _check(self) -> None:
        """Reject settings that would only fail later, deep inside a forward pass."""
        if self.architecture not in SHAPE_ARCHITECTURES:
            raise ValueError(f"architecture must be one of {SHAPE_ARCHITECTURES}, got {self.architecture!r}")
        if self.in_channels not in (3, 6):
            raise ValueError(f"in_channels must be 3 (xyz) or 6 (xyz + rgb), got {self.in_channels!r}")
        if self.up_axis not in ("y", "z"):
            raise ValueError(f"up_axis must be 'y' or 'z', got {self.up_axis!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.num_groups > self.num_points or self.group_size > self.num_points:
            raise ValueError(
                f"num_groups ({self.num_groups}) and group_size ({self.group_size}) must not exceed "
                f"num_points ({self.num_points})"
            )
        if self.architecture == "ppat" and (self.group_radius is None or self.group_radius <= 0):
            raise ValueError(f"the PPAT tower groups by ball query: group_radius must be > 0, got {self.group_radius}")
        if self.architecture == "pointbert" and self.group_radius is not None:
            raise ValueError("the PointBERT tower groups by kNN: set group_radius to None")
        if self.architecture == "ppat" and len(self.set_abstraction_channels) < 1:
            raise ValueError("set_abstraction_channels needs at least one width")
        if self.architecture == "pointbert" and len(self.group_encoder_channels) != 4:
            raise ValueError(
                "group_encoder_channels must list 4 widths (first hidden, first out, second hidden, out), "
                f"got {self.group_encoder_channels}"
            )

    @property
    def feature_size(self) -> int:
        """Width of the pooled shape feature before the projection."""
        return self.hidden_size if self.architecture == "ppat" else 2 * self.hidden_size


class PreAlignedShapeConfig(PretrainedConfig):
    r"""Configuration of a [`PreAlignedShapeModel`]: CLIP image tower + shape tower in one space.

    Args:
        vision_config (`dict`, `CLIPVisionConfig` or `EfficientNetLiteVisionConfig`, *optional*): the image
            tower; a dict's ``model_type`` picks the tower (CLIP when absent).
        shape_config (`dict` or `PreAlignedShapeEncoderConfig`, *optional*): the shape tower.
        projection_dim (`int`, defaults to 1280): width of the shared embedding space.
        shape_projection (`str`, defaults to `"linear"`): `"linear"` (with bias, OpenShape),
            `"linear_no_bias"` (ULIP-2's ``pc_projection``) or `"identity"` (OpenShape B/32, whose
            512-d CLS feature is already in CLIP B/32's space; needs feature size = projection_dim).
        logit_scale_init_value (`float`, defaults to ln(1/0.07)): initial log inverse temperature.
        code_bits (`int`, *optional*): when set, a shared binarisation head (a linear map from the
            embedding space to K bits, initialised Gaussian: sign random projections, which preserve
            cosine similarity before any training) gives ±1 codes; a positive multiple of 8.
        image_tower_checkpoint (`str`, *optional*): the checkpoint whose weights the image tower holds
            (e.g. ``"laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"``).
        shape_tower_source (`str`, *optional*): where the shape tower's weights came from (converter).
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation.
    """

    model_type = "prealigned_shape"
    sub_configs_defaults = {"vision_config": CLIPVisionConfig, "shape_config": PreAlignedShapeEncoderConfig}

    def __init__(
        self,
        vision_config: dict | CLIPVisionConfig | None = None,
        shape_config: dict | PreAlignedShapeEncoderConfig | None = None,
        projection_dim: int = 1280,
        shape_projection: str = "linear",
        logit_scale_init_value: float = math.log(1 / 0.07),
        code_bits: int | None = None,
        image_tower_checkpoint: str | None = None,
        shape_tower_source: str | None = None,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if vision_config is None:
            vision_config = CLIPVisionConfig()
        elif isinstance(vision_config, dict):
            kind = vision_config.get("model_type", CLIPVisionConfig.model_type)
            if kind not in VISION_CONFIGS:
                raise ValueError(f"vision_config model_type must be one of {sorted(VISION_CONFIGS)}, got {kind!r}")
            vision_config = VISION_CONFIGS[kind](**{k: v for k, v in vision_config.items() if k != "model_type"})
        if shape_config is None:
            shape_config = PreAlignedShapeEncoderConfig()
        elif isinstance(shape_config, dict):
            shape_config = PreAlignedShapeEncoderConfig(**{k: v for k, v in shape_config.items() if k != "model_type"})
        self.vision_config = vision_config
        self.shape_config = shape_config
        self.projection_dim = projection_dim
        self.shape_projection = shape_projection
        self.logit_scale_init_value = logit_scale_init_value
        self.code_bits = code_bits
        self.image_tower_checkpoint = image_tower_checkpoint
        self.shape_tower_source = shape_tower_source
        self.initializer_range = initializer_range
        super().__init__(**kwargs)
        self._check()

    def _check(self) -> None:
        if self.shape_projection not in ("linear", "linear_no_bias", "identity"):
            raise ValueError(
                f"shape_projection must be 'linear', 'linear_no_bias' or 'identity', got {self.shape_projection!r}"
            )
        if self.shape_projection == "identity" and self.shape_config.feature_size != self.projection_dim:
            raise ValueError(
                f"shape_projection 'identity' needs the shape feature size ({self.shape_config.feature_size}) "
                f"to equal projection_dim ({self.projection_dim})"
            )
        if self.code_bits is not None and (
            not isinstance(self.code_bits, int) or self.code_bits <= 0 or self.code_bits % 8
        ):
            raise ValueError(f"code_bits must be None or a positive multiple of 8, got {self.code_bits!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> PreAlignedShapeConfig:
        """A named preset (see `PREALIGNED_PRESETS`), with keyword overrides of the top-level fields."""
        if name not in PREALIGNED_PRESETS:
            raise ValueError(f"unknown pre-aligned preset {name!r}; choose one of {sorted(PREALIGNED_PRESETS)}")
        preset = PREALIGNED_PRESETS[name]
        return cls(
            vision_config=dict(preset["vision_config"]),
            shape_config=dict(preset["shape_config"]),
            **{**{k: v for k, v in preset.items() if k not in ("vision_config", "shape_config")}, **overrides},
        )


# CLIP vision towers of the public checkpoints the shape towers were aligned to.
_CLIP_VIT_BIGG_14 = {
    "hidden_size": 1664,
    "intermediate_size": 8192,
    "num_hidden_layers": 48,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
_CLIP_VIT_L_14 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
_CLIP_VIT_B_32 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "patch_size": 32,
    "image_size": 224,
    "hidden_act": "quick_gelu",
    "projection_dim": 512,
}
# OpenShape PPAT sizes (OpenShape `ppat.py`, scaling 4 for G/14; the demo's L/14 and B/32 models).
_PPAT_G14 = {
    "architecture": "ppat",
    "hidden_size": 512,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "intermediate_size": 1536,
    "set_abstraction_channels": [64, 64, 256],
    "num_groups": 384,
    "group_radius": 0.2,
    "group_size": 64,
    "up_axis": "z",
}
_PPAT_L14 = {**_PPAT_G14, "intermediate_size": 1024, "set_abstraction_channels": [64, 64, 128],
             "num_groups": 64, "group_radius": 0.4, "group_size": 256, "up_axis": "y"}  # fmt: skip

PREALIGNED_PRESETS: dict[str, dict] = {
    "openshape-pointbert-vitg14": {
        "vision_config": _CLIP_VIT_BIGG_14,
        "shape_config": _PPAT_G14,
        "projection_dim": 1280,
        "shape_projection": "linear",
        "image_tower_checkpoint": "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    },
    "openshape-pointbert-vitl14": {
        "vision_config": _CLIP_VIT_L_14,
        "shape_config": _PPAT_L14,
        "projection_dim": 768,
        "shape_projection": "linear",
        "image_tower_checkpoint": "openai/clip-vit-large-patch14",
    },
    "openshape-pointbert-vitb32": {
        "vision_config": _CLIP_VIT_B_32,
        "shape_config": _PPAT_L14,
        "projection_dim": 512,
        "shape_projection": "identity",
        "image_tower_checkpoint": "openai/clip-vit-base-patch32",
    },
    "ulip2-pointbert-vitg14": {
        "vision_config": _CLIP_VIT_BIGG_14,
        "shape_config": {
            "architecture": "pointbert",
            "hidden_size": 384,
            "num_hidden_layers": 18,
            "num_attention_heads": 6,
            "intermediate_size": 1536,
            "num_groups": 512,
            "group_size": 32,
            "group_radius": None,
            "group_encoder_channels": [128, 256, 512, 256],
            "position_hidden_size": 128,
            "up_axis": "y",
        },
        "projection_dim": 1280,
        "shape_projection": "linear_no_bias",
        "image_tower_checkpoint": "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    },
    # An ImageNet-pretrained image tower (frozen; `hf-cmah convert efficientnet-lite`) and a small PPAT
    # trained onto it on a CPU: the image side generalises to images nobody here made (issue 20).
    "efficientnet-lite0-ppat": {
        "vision_config": {"model_type": "efficientnet_lite_vision"},
        "shape_config": {
            "architecture": "ppat",
            "in_channels": 3,
            "num_points": 1024,
            "hidden_size": 192,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "intermediate_size": 384,
            "set_abstraction_channels": [64, 96, 192],
            "num_groups": 64,
            "group_radius": 0.25,
            "group_size": 32,
            "up_axis": "y",
        },
        "projection_dim": 512,
        "shape_projection": "linear",
    },
    # Trains from scratch on a 2-core CPU in minutes (docs/PREALIGNED.md, "Results").
    "prealigned-tiny": {
        "vision_config": {
            "hidden_size": 96,
            "intermediate_size": 192,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "patch_size": 8,
            "image_size": 64,
            "hidden_act": "gelu",
            "projection_dim": 96,
        },
        "shape_config": {
            "architecture": "ppat",
            "in_channels": 3,
            "num_points": 512,
            "hidden_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 192,
            "set_abstraction_channels": [32, 64, 96],
            "num_groups": 32,
            "group_radius": 0.3,
            "group_size": 16,
            "up_axis": "y",
        },
        "projection_dim": 96,
        "shape_projection": "linear",
    },
}

__all__ = [
    "PREALIGNED_PRESETS",
    "SHAPE_ARCHITECTURES",
    "VISION_CONFIGS",
    "PreAlignedShapeConfig",
    "PreAlignedShapeEncoderConfig",
]
