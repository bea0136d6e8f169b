"""Running a retriever over batches: the one batch encoder of evaluation, the index and training.

A retriever follows the protocol of ARCHITECTURE.md: ``get_image_embeds`` / ``get_shape_embeds``
and, for hashing models (``config.code_bits``), ``get_*_codes``; a model may also offer
``get_*_codes_and_embeds`` (CMAH and the pre-aligned model do), which runs its encoder once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InvalidInputError

# modality → (the processor's argument, the model input it returns)
PROCESSOR_KEYS = {"image": ("images", "pixel_values"), "shape": ("points", "points")}


def codes_and_embeds(model, modality: str, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """±1 codes ``[B, K]`` and L2-normalised embeddings ``[B, D]`` of ``inputs``; ``modality`` is image or shape.

    One encoder pass when the model has ``get_<modality>_codes_and_embeds``; two otherwise
    (any object that follows the retriever protocol works).
    """
    combined = getattr(model, f"get_{modality}_codes_and_embeds", None)
    if combined is not None:
        return combined(inputs)
    return getattr(model, f"get_{modality}_codes")(inputs), getattr(model, f"get_{modality}_embeds")(inputs)


def encode_batch(
    model, processor, modality: str, items: Sequence, device: torch.device | str | None = None
) -> tuple[np.ndarray | None, np.ndarray]:
    """±1 ``int8 [B, K]`` codes and ``float32 [B, D]`` embeddings of one batch of ``items``.

    Images are PIL images or arrays, shapes point clouds ``[N, 3|6]`` or trimesh meshes; the
    processor makes the model's inputs, on ``device`` (default: the model's). A float-only model
    (no ``config.code_bits``, e.g. a dual encoder without a hash head) gives ``None`` codes.
    """
    argument, key = PROCESSOR_KEYS[modality]
    inputs = processor(**{argument: list(items)}, return_tensors="pt")[key].to(device or model.device)
    with torch.inference_mode():
        if getattr(model.config, "code_bits", None) is None:
            return None, getattr(model, f"get_{modality}_embeds")(inputs).float().cpu().numpy()
        codes, embeds = codes_and_embeds(model, modality, inputs)
    return codes.cpu().numpy().astype(np.int8), embeds.float().cpu().numpy()


def encode_batches(
    model, processor, modality: str, batches: Iterable[Sequence], total: int, description: str, progress: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """:func:`encode_batch` over ``batches`` (``total`` items in all, for the progress bar), concatenated."""
    codes, embeds = [], []
    with tqdm(total=total, desc=description, disable=not progress, leave=False) as bar:
        for items in batches:
            batch_codes, batch_embeds = encode_batch(model, processor, modality, items)
            codes.append(batch_codes)
            embeds.append(batch_embeds)
            bar.update(len(batch_embeds))
    if not embeds:
        raise InvalidInputError(f"{description}: nothing to encode (no {modality} in the batches)")
    return (None if codes[0] is None else np.concatenate(codes)), np.concatenate(embeds)


__all__ = ["codes_and_embeds", "encode_batch", "encode_batches"]
