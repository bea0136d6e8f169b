"""Binarisation shared by every hashing model: hash logits → ±1 codes (imports only torch).

Also the one place that asks a retriever for codes and embeddings together: a model may
offer ``get_{image,shape}_codes_and_embeds`` (both CMAH and the pre-aligned model do), which
runs its encoder once; otherwise ``get_*_codes`` and ``get_*_embeds`` are called in turn.
"""

from __future__ import annotations

import torch


def codes_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """``sign`` of hash logits as ±1 int8; 0 maps to +1 so that every bit is defined."""
    return torch.where(logits >= 0, 1, -1).to(torch.int8)


def codes_and_embeds(model, modality: str, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """±1 codes ``[B, K]`` and L2-normalised embeddings ``[B, D]`` of ``inputs``; ``modality`` is image or shape.

    One encoder pass when the model has ``get_<modality>_codes_and_embeds``; two otherwise
    (any object that follows the retriever protocol works).
    """
    combined = getattr(model, f"get_{modality}_codes_and_embeds", None)
    if combined is not None:
        return combined(inputs)
    return getattr(model, f"get_{modality}_codes")(inputs), getattr(model, f"get_{modality}_embeds")(inputs)
