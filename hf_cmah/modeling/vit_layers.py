"""Transformer layers shared by the CMAH and pre-aligned models: patch embedding, SDPA
attention (self and cross), the pre-norm block, and ViTMAE-style random masking.

Like timm's `layers/`, these take plain sizes so that every model reuses them; the model
files wrap them in `config`-taking modules. The two blocks are transformers'
`GradientCheckpointingLayer`s, so ``gradient_checkpointing_enable()`` recomputes them in the
backward pass instead of keeping their activations. Imports only torch and transformers
(saved with the model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


class PatchEmbedding(nn.Module):
    """Image → non-overlapping patch tokens with a strided convolution (ViT)."""

    def __init__(self, image_size: int, patch_size: int, num_channels: int, hidden_size: int):
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.num_patches = (image_size // patch_size) ** 2
        self.projection = nn.Conv2d(num_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (B, P, C)


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, P, patch_size² · C]`` in the row-major patch order of `PatchEmbedding`."""
    batch, channels, height, width = pixel_values.shape
    rows, cols = height // patch_size, width // patch_size
    patches = pixel_values.reshape(batch, channels, rows, patch_size, cols, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, p, p, C)
    return patches.reshape(batch, rows * cols, patch_size * patch_size * channels)


def random_masking(
    sequence: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of tokens per sample (ViTMAE's per-sample shuffle).

    Randomness comes from ``noise`` ``[B, L]`` (uniform in [0, 1)) or ``torch.rand`` on the
    sequence's device, so a torch seed controls it. Returns the kept tokens ``[B, L_keep, C]``,
    the binary mask ``[B, L]`` (1 = masked) and ``ids_restore`` ``[B, L]`` that undoes the shuffle.
    """
    batch, length, width = sequence.shape
    len_keep = max(1, round(length * (1 - mask_ratio)))
    if noise is None:
        noise = torch.rand(batch, length, device=sequence.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = torch.gather(sequence, 1, ids_keep.unsqueeze(-1).expand(-1, -1, width))
    mask = torch.ones(batch, length, device=sequence.device, dtype=sequence.dtype)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return kept, mask, ids_restore


def unshuffle_with_mask_tokens(kept: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Put ``kept`` tokens ``[B, L_keep, C]`` back in order, ``mask_token`` ``[1, 1, C]`` in the gaps."""
    batch, length = ids_restore.shape
    fill = mask_token.expand(batch, length - kept.shape[1], -1)
    full = torch.cat([kept, fill], dim=1)
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, kept.shape[-1]))


class Attention(nn.Module):
    """Multi-head attention through `scaled_dot_product_attention`; ``context`` makes it cross-attention."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of the number of heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.output = nn.Linear(hidden_size, hidden_size)

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, width = states.shape
        return states.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)  # (B, H, L, d)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = hidden_states if context is None else context
        attended = F.scaled_dot_product_attention(
            self._heads(self.query(hidden_states)),
            self._heads(self.key(context)),
            self._heads(self.value(context)),
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, length, _ = attended.shape
        return self.output(attended.transpose(1, 2).reshape(batch, length, -1))


class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(hidden_states))))


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attention = Attention(hidden_size, num_heads, qkv_bias=qkv_bias, dropout=dropout)
        self.norm2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, intermediate_size, dropout=dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attention(self.norm1(hidden_states))
        return hidden_states + self.mlp(self.norm2(hidden_states))


class CrossAttentionBlock(GradientCheckpointingLayer):
    """Pre-norm cross-attention block: tokens attend to another modality's tokens, then an MLP."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, layer_norm_eps: float = 1e-6):
        super().__init__()
        self.norm_query = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.norm_context = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attention = Attention(hidden_size, num_heads)
        self.norm_mlp = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, intermediate_size)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attention(self.norm_query(hidden_states), self.norm_context(context))
        return hidden_states + self.mlp(self.norm_mlp(hidden_states))
