"""CMAH configuration: every hyper-parameter of the model and its loss, plus named presets."""

from __future__ import annotations

import math

from transformers import PretrainedConfig


class CMAHConfig(PretrainedConfig):
    r"""Configuration of a [`CMAHModel`] (contrastive masked auto-encoder hashing).

    Args:
        code_bits (`int`, defaults to 64): K, the length of the hash codes; a positive multiple of 8
            (codes are packed to K/8 bytes).
        image_size (`int`, defaults to 224): side of the square input image in pixels.
        patch_size (`int`, defaults to 16): side of an image patch; must divide `image_size`.
        num_channels (`int`, defaults to 3): image channels.
        num_points (`int`, defaults to 1024): points per cloud after the processor's resampling.
        num_groups (`int`, defaults to 64): G, point groups (FPS centres) per cloud.
        group_size (`int`, defaults to 32): S, points per group (kNN of each centre).
        hidden_size (`int`, defaults to 384): width of both encoders.
        image_num_hidden_layers (`int`, defaults to 12): image encoder depth.
        point_num_hidden_layers (`int`, defaults to 12): point encoder depth.
        num_attention_heads (`int`, defaults to 6): heads of both encoders.
        intermediate_size (`int`, defaults to 1536): MLP width of both encoders.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
        dropout (`float`, defaults to 0.0): attention and MLP dropout.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation.
        image_mask_ratio (`float`, defaults to 0.75): share of image patches masked in training.
        point_mask_ratio (`float`, defaults to 0.6): share of point groups masked in training.
        decoder_hidden_size (`int`, defaults to 256): width of the fusion block and both decoders.
        decoder_num_hidden_layers (`int`, defaults to 2): depth of each modality's decoder.
        decoder_num_attention_heads (`int`, defaults to 8): heads of fusion and decoders.
        decoder_intermediate_size (`int`, defaults to 1024): MLP width of fusion and decoders.
        fusion_num_layers (`int`, defaults to 1): multi-modal fusion layers (self- + cross-attention).
        norm_pix_loss (`bool`, defaults to True): normalise each target patch (mean 0, var 1) before the MSE.
        contrastive_temperature (`float`, defaults to 0.1): InfoNCE temperature on relaxed codes.
        contrastive_weight (`float`, defaults to 1.0): weight of the full–full image/point InfoNCE.
        masked_contrastive_weight (`float`, defaults to 1.0): weight of the masked–full InfoNCE terms.
        image_reconstruction_weight (`float`, defaults to 1.0): weight of the masked-patch MSE (L_2D).
        point_reconstruction_weight (`float`, defaults to 1.0): weight of the masked-group Chamfer (L_3D).
        image_code_thresholds (`list[float]`, *optional*): one threshold per bit for image queries: a bit
            is +1 where the image's hash logit reaches it (`None`: 0, i.e. ``sign``). Set by
            ``hf-cmah model calibrate`` from unlabeled images of the query domain (photos,
            thumbnails), so that each bit splits that domain in half; shape codes are unaffected.
    """

    model_type = "cmah"

    def __init__(
        self,
        code_bits: int = 64,
        image_size: int = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        num_points: int = 1024,
        num_groups: int = 64,
        group_size: int = 32,
        hidden_size: int = 384,
        image_num_hidden_layers: int = 12,
        point_num_hidden_layers: int = 12,
        num_attention_heads: int = 6,
        intermediate_size: int = 1536,
        layer_norm_eps: float = 1e-6,
        dropout: float = 0.0,
        initializer_range: float = 0.02,
        image_mask_ratio: float = 0.75,
        point_mask_ratio: float = 0.6,
        decoder_hidden_size: int = 256,
        decoder_num_hidden_layers: int = 2,
        decoder_num_attention_heads: int = 8,
        decoder_intermediate_size: int = 1024,
        fusion_num_layers: int = 1,
        norm_pix_loss: bool = True,
        contrastive_temperature: float = 0.1,
        contrastive_weight: float = 1.0,
        masked_contrastive_weight: float = 1.0,
        image_reconstruction_weight: float = 1.0,
        point_reconstruction_weight: float = 1.0,
        image_code_thresholds: list[float] | None = None,
        **kwargs,
    ):
        self.code_bits = code_bits
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.num_points = num_points
        self.num_groups = num_groups
        self.group_size = group_size
        self.hidden_size = hidden_size
        self.image_num_hidden_layers = image_num_hidden_layers
        self.point_num_hidden_layers = point_num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.layer_norm_eps = layer_norm_eps
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.image_mask_ratio = image_mask_ratio
        self.point_mask_ratio = point_mask_ratio
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_intermediate_size = decoder_intermediate_size
        self.fusion_num_layers = fusion_num_layers
        self.norm_pix_loss = norm_pix_loss
        self.contrastive_temperature = contrastive_temperature
        self.contrastive_weight = contrastive_weight
        self.masked_contrastive_weight = masked_contrastive_weight
        self.image_reconstruction_weight = image_reconstruction_weight
        self.point_reconstruction_weight = point_reconstruction_weight
        self.image_code_thresholds = (
            None if image_code_thresholds is None else [float(value) for value in image_code_thresholds]
        )
        super().__init__(**kwargs)
        self._check()

    def _check(self) -> None:
        """Reject settings that would only fail later, deep inside a forward pass."""
        if not isinstance(self.code_bits, int) or self.code_bits <= 0 or self.code_bits % 8:
            raise ValueError(
                f"code_bits must be a positive multiple of 8 (codes pack to K/8 bytes), got {self.code_bits!r}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")
        if self.group_size > self.num_points or self.num_groups > self.num_points:
            raise ValueError(
                f"num_groups ({self.num_groups}) and group_size ({self.group_size}) must not exceed "
                f"num_points ({self.num_points})"
            )
        for name in ("hidden_size", "decoder_hidden_size"):
            heads = self.num_attention_heads if name == "hidden_size" else self.decoder_num_attention_heads
            if getattr(self, name) % heads:
                raise ValueError(f"{name} {getattr(self, name)} must be a multiple of its attention heads {heads}")
        for name in ("image_mask_ratio", "point_mask_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")
        thresholds = self.image_code_thresholds
        if thresholds is not None and (len(thresholds) != self.code_bits or not all(map(math.isfinite, thresholds))):
            raise ValueError(
                f"image_code_thresholds must be {self.code_bits} finite numbers (one per bit), got "
                f"{len(thresholds)} values, {sum(not math.isfinite(value) for value in thresholds)} not finite"
            )

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_preset(cls, name: str, **overrides) -> CMAHConfig:
        """A named preset (`cmah-tiny`, `cmah-base`), with keyword overrides (e.g. ``code_bits=32``)."""
        if name not in CMAH_PRESETS:
            raise ValueError(f"unknown CMAH preset {name!r}; choose one of {sorted(CMAH_PRESETS)}")
        return cls(**{**CMAH_PRESETS[name], **overrides})


# Presets are configs, not code paths (see docs/MODEL.md for parameter counts).
CMAH_PRESETS: dict[str, dict] = {
    # Trains on a 2-core CPU in minutes: 64-px images in 8-px patches, 512 points in 32 groups of 16.
    "cmah-tiny": {
        "image_size": 64,
        "patch_size": 8,
        "num_points": 512,
        "num_groups": 32,
        "group_size": 16,
        "hidden_size": 128,
        "image_num_hidden_layers": 3,
        "point_num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "decoder_hidden_size": 64,
        "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 4,
        "decoder_intermediate_size": 128,
        "fusion_num_layers": 1,
    },
    # ViT-S/16 size class at 224 px; Point-MAE's 1024 points in 64 groups of 32.
    "cmah-base": {},
}

__all__ = ["CMAH_PRESETS", "CMAHConfig"]
