"""Query-domain calibration: per-bit thresholds that make image codes balanced on the images users send.

A model trained on renders codes each bit as ``sign(logit)``. Images of another domain (the
PSB's thumbnails, product photos) can sit off that zero on many bits at once, so those bits are
constant and the queries collapse onto few codes. The median of each bit's logit over unlabeled
images of the query domain is a threshold that splits them in half (the balanced-bit criterion
of spectral hashing, Weiss et al. 2008), with no labels and no retraining. docs/RESULTS.md ("Per-domain bit thresholds") measures it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidInputError

MIN_CALIBRATION_IMAGES = 16


def image_logits(model, processor, images: Sequence, batch_size: int = 64) -> np.ndarray:
    """Uncalibrated hash logits ``float32 [M, K]`` of ``images`` (PIL images or arrays): ``forward``'s, which
    never subtract the thresholds."""
    batches = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            pixel_values = processor(images=list(images[start : start + batch_size]), return_tensors="pt")
            output = model(pixel_values=pixel_values["pixel_values"].to(model.device))
            batches.append(output.image_code_logits.float().cpu())
    return torch.cat(batches).numpy()


@dataclass(frozen=True)
class CalibrationReport:
    """What `calibrate_image_codes` did, on its calibration images."""

    num_images: int
    bit_balance_before: float  # `bit_balance` of the sign codes
    bit_balance_after: float  # ... of the calibrated codes
    distinct_codes_before: int
    distinct_codes_after: int


def calibrate_image_codes(model, processor, images: Sequence, batch_size: int = 64) -> CalibrationReport:
    """Set ``model.config.image_code_thresholds`` to each bit's median hash logit over ``images``.

    The thresholds split the images in half on every bit; the model's image codes and embeddings
    use them from then on (``save_pretrained`` keeps them). Raises `InvalidInputError` for a model
    without image hash logits (only CMAH has them) or fewer than `MIN_CALIBRATION_IMAGES` images
    (a median of a handful is noise).
    """
    if not hasattr(model.config, "image_code_thresholds"):
        raise InvalidInputError(f"{type(model).__name__}: calibration needs a CMAH model (image hash logits)")
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise InvalidInputError(
            f"calibration needs at least {MIN_CALIBRATION_IMAGES} images of the query domain, got {len(images)}"
        )
    logits = image_logits(model, processor, images, batch_size)
    thresholds = np.median(logits, axis=0)
    before, after = logits >= 0, logits >= thresholds
    model.config.image_code_thresholds = thresholds.astype(float).tolist()
    return CalibrationReport(
        len(images),
        bit_balance(before),
        bit_balance(after),
        len(np.unique(before, axis=0)),
        len(np.unique(after, axis=0)),
    )


def bit_balance(codes: np.ndarray) -> float:
    """Mean over bits of ``|share of +1 − 0.5|``: 0 for balanced codes, 0.5 when every bit is constant."""
    return float(np.abs((np.asarray(codes) > 0).mean(axis=0) - 0.5).mean())


__all__ = ["MIN_CALIBRATION_IMAGES", "CalibrationReport", "bit_balance", "calibrate_image_codes", "image_logits"]
