"""Binarisation shared by every hashing model: hash logits → ±1 codes (imports only torch).

Only what the models need lives here, since it is saved with every remote-code model; asking a
retriever for codes and embeddings together is `hf_cmah.evaluation.encoding.codes_and_embeds`.
"""

from __future__ import annotations

import torch


def codes_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """``sign`` of hash logits as ±1 int8; 0 maps to +1 so that every bit is defined."""
    return torch.where(logits >= 0, 1, -1).to(torch.int8)
