"""Checks of the tensors handed to a model, shared by CMAH and the pre-aligned dual encoder.

A wrong rank, size or value would otherwise fail deep inside a forward pass with a message
about reshapes; these raise `ModelInputError` with a sentence naming the argument instead.
Imports only torch (saved with the model, see ARCHITECTURE.md "Saved models").
"""

from __future__ import annotations

import warnings

import torch


class ModelInputError(ValueError):
    """A tensor handed to a model has the wrong type, rank, size or values."""


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int, image_size: int) -> torch.Tensor:
    """``pixel_values`` as given, after checking it is a finite ``[B, num_channels, image_size, image_size]`` tensor."""
    if not isinstance(pixel_values, torch.Tensor):
        raise ModelInputError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    expected = (num_channels, image_size, image_size)
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
        raise ModelInputError(
            f"pixel_values must have shape [batch, {', '.join(map(str, expected))}], got {list(pixel_values.shape)}"
            " (use CMAHProcessor to resize and normalise images)"
        )
    if pixel_values.shape[0] == 0:
        raise ModelInputError("pixel_values is an empty batch")
    if not torch.isfinite(pixel_values).all():
        raise ModelInputError("pixel_values contains NaN or infinite values")
    return pixel_values


def check_points(points: torch.Tensor, num_groups: int, group_size: int, num_points: int) -> torch.Tensor:
    """``points`` as given, after checking it is a finite ``[B, N, 3 | 6]`` tensor with enough points to group.

    ``num_groups`` and ``group_size`` are what the model's grouping needs; ``num_points`` is what
    the processor resamples to (named in the message as the fix).
    """
    if not isinstance(points, torch.Tensor):
        raise ModelInputError(f"points must be a torch.Tensor, got {type(points).__name__}")
    if points.ndim != 3 or points.shape[-1] not in (3, 6):
        raise ModelInputError(
            "points must have shape [batch, num_points, 3] (xyz) or [batch, num_points, 6] (xyz + rgb), "
            f"got {list(points.shape)}"
        )
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise ModelInputError(f"points is empty: shape {list(points.shape)}")
    needed = max(group_size, num_groups)
    if points.shape[1] < needed:
        raise ModelInputError(
            f"points has {points.shape[1]} points per cloud, fewer than the {needed} that {num_groups} groups of "
            f"{group_size} need (CMAHProcessor resamples to {num_points})"
        )
    if not torch.isfinite(points).all():
        raise ModelInputError("points contains NaN or infinite values")
    return points


def deprecated_input_error(old_name: str) -> type[ModelInputError]:
    """`ModelInputError` under a per-model name it had before (``CMAHInputError``, ``PreAlignedInputError``).

    One release of warning, then the old names go; ``except`` clauses written for them still catch.
    """
    warnings.warn(
        f"{old_name} is now ModelInputError (hf_cmah.modeling.input_checks), one error class for every model; "
        f"the name {old_name} is removed in the next release",
        FutureWarning,
        stacklevel=3,
    )
    return ModelInputError


__all__ = ["ModelInputError", "check_pixel_values", "check_points", "deprecated_input_error"]
