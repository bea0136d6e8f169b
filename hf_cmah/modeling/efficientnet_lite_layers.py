"""EfficientNet-Lite in pure PyTorch: ``pixel_values [B, 3, H, W]`` → pooled ``[B, hidden_size]`` features.

TensorFlow's "SAME" padding (the released weights were trained with it; PyTorch's symmetric
padding would shift every strided layer by a pixel), ReLU6, no squeeze-excitation, BatchNorm
with ``eps = 1e-3``. Returns a transformers ``BaseModelOutputWithPooling`` like
``CLIPVisionModel``, so `PreAlignedShapeModel` reads either tower the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration_efficientnet_lite import EfficientNetLiteVisionConfig


class SamePaddingConv2d(nn.Conv2d):
    """A bias-free convolution padded as TensorFlow's ``padding="SAME"`` (extra pixel bottom / right)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(hidden.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]  # width first, as F.pad reads them
        return super().forward(F.pad(hidden, pads))


class ConvNormActivation(nn.Module):
    """Convolution → BatchNorm → ReLU6 (no activation on a block's projection)."""

    def __init__(self, conv: SamePaddingConv2d, eps: float, activation: bool = True):
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm2d(conv.out_channels, eps=eps)
        self.activation = nn.ReLU6() if activation else nn.Identity()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(hidden)))


class InvertedResidualBlock(nn.Module):
    """MBConv without squeeze-excitation: 1×1 expand, k×k depthwise, 1×1 project, identity skip when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int, eps: float):
        super().__init__()
        inner = in_channels * expand_ratio
        self.expand = (
            ConvNormActivation(SamePaddingConv2d(in_channels, inner, 1), eps) if expand_ratio != 1 else nn.Identity()
        )
        self.depthwise = ConvNormActivation(SamePaddingConv2d(inner, inner, kernel, stride, groups=inner), eps)
        self.project = ConvNormActivation(SamePaddingConv2d(inner, out_channels, 1), eps, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        output = self.project(self.depthwise(self.expand(hidden)))
        return output + hidden if self.residual else output


class EfficientNetLiteVisionModel(nn.Module):
    """Stem, the MBConv stages, 1×1 head, global average pool (the classifier is not part of the tower)."""

    def __init__(self, config: EfficientNetLiteVisionConfig):
        super().__init__()
        self.config = config
        eps = config.batch_norm_eps
        self.stem = ConvNormActivation(SamePaddingConv2d(config.num_channels, config.stem_channels, 3, 2), eps)
        blocks = []
        for repeats, kernel, stride, expand_ratio, in_channels, out_channels in config.block_stages:
            for repeat in range(repeats):
                first = repeat == 0
                blocks.append(
                    InvertedResidualBlock(
                        in_channels if first else out_channels, out_channels, kernel, stride if first else 1,
                        expand_ratio, eps,
                    )  # fmt: skip
                )
        self.blocks = nn.Sequential(*blocks)
        last_width = config.block_stages[-1][5] if config.block_stages else config.stem_channels
        self.head = ConvNormActivation(SamePaddingConv2d(last_width, config.hidden_size, 1), eps)

    def forward(self, pixel_values: torch.Tensor) -> BaseModelOutputWithPooling:
        feature_map = self.head(self.blocks(self.stem(pixel_values)))  # (B, hidden, H/32, W/32)
        return BaseModelOutputWithPooling(last_hidden_state=feature_map, pooler_output=feature_map.mean(dim=(2, 3)))


__all__ = ["EfficientNetLiteVisionModel", "InvertedResidualBlock", "SamePaddingConv2d"]
