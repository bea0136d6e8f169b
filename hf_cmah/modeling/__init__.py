"""The models. Self-contained: nothing here imports from the rest of hf_cmah (ARCHITECTURE.md)."""

from .configuration_cmah import CMAH_PRESETS, CMAHConfig
from .configuration_prealigned import PREALIGNED_PRESETS, PreAlignedShapeConfig, PreAlignedShapeEncoderConfig
from .input_checks import ModelInputError, deprecated_input_error
from .modeling_cmah import (
    CMAHForPreTraining,
    CMAHForPreTrainingOutput,
    CMAHModel,
    CMAHModelOutput,
    CMAHPreTrainedModel,
)
from .modeling_prealigned import PreAlignedShapeModel, PreAlignedShapeModelOutput, PreAlignedShapePreTrainedModel


def __getattr__(name: str):
    if name in ("CMAHInputError", "PreAlignedInputError"):  # one release: both are ModelInputError now
        return deprecated_input_error(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CMAH_PRESETS",
    "CMAHConfig",
    "CMAHForPreTraining",
    "CMAHForPreTrainingOutput",
    "CMAHModel",
    "CMAHModelOutput",
    "CMAHPreTrainedModel",
    "ModelInputError",
]
__all__ += [
    "PREALIGNED_PRESETS",
    "PreAlignedShapeConfig",
    "PreAlignedShapeEncoderConfig",
    "PreAlignedShapeModel",
    "PreAlignedShapeModelOutput",
    "PreAlignedShapePreTrainedModel",
]
