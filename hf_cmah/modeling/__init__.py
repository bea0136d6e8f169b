"""The models. Self-contained: nothing here imports from the rest of hf_cmah (ARCHITECTURE.md)."""

from .configuration_cmah import CMAH_PRESETS, CMAHConfig
from .configuration_prealigned import PREALIGNED_PRESETS, PreAlignedShapeConfig, PreAlignedShapeEncoderConfig
from .modeling_cmah import CMAHInputError, CMAHModel, CMAHModelOutput, CMAHPreTrainedModel
from .modeling_prealigned import (
    PreAlignedInputError,
    PreAlignedShapeModel,
    PreAlignedShapeModelOutput,
    PreAlignedShapePreTrainedModel,
)

__all__ = ["CMAH_PRESETS", "CMAHConfig", "CMAHInputError", "CMAHModel", "CMAHModelOutput", "CMAHPreTrainedModel"]
__all__ += [
    "PREALIGNED_PRESETS",
    "PreAlignedInputError",
    "PreAlignedShapeConfig",
    "PreAlignedShapeEncoderConfig",
    "PreAlignedShapeModel",
    "PreAlignedShapeModelOutput",
    "PreAlignedShapePreTrainedModel",
]
