"""The models. Self-contained: nothing here imports from the rest of hf_cmah (ARCHITECTURE.md)."""

from .configuration_cmah import CMAH_PRESETS, CMAHConfig
from .modeling_cmah import CMAHInputError, CMAHModel, CMAHModelOutput, CMAHPreTrainedModel

__all__ = ["CMAH_PRESETS", "CMAHConfig", "CMAHInputError", "CMAHModel", "CMAHModelOutput", "CMAHPreTrainedModel"]
