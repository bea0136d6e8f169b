"""hf-cmah: image ⇄ 3D-shape retrieval on the Hugging Face stack.

Importing the package registers its models with `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining` (CMAH's pre-training class) and `AutoProcessor`, and marks them for
`register_for_auto_class`, so that a saved folder also loads with ``trust_remote_code=True``
where hf_cmah is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoProcessor

from .codes import hamming_distance, pack_codes, unpack_codes
from .errors import (
    ConfigError,
    CorruptIndexError,
    HFCMAHError,
    IncompatibleIndexError,
    InvalidInputError,
    MeshLoadError,
)
from .modeling import (
    CMAH_PRESETS,
    CMAHConfig,
    CMAHForPreTraining,
    CMAHModel,
    PreAlignedShapeConfig,
    PreAlignedShapeModel,
)
from .processing_cmah import CMAHProcessor

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    AutoConfig.register(CMAHConfig.model_type, CMAHConfig, exist_ok=True)
    AutoModel.register(CMAHConfig, CMAHModel, exist_ok=True)
    AutoModelForPreTraining.register(CMAHConfig, CMAHForPreTraining, exist_ok=True)
    AutoProcessor.register(CMAHConfig, CMAHProcessor, exist_ok=True)
    AutoConfig.register(PreAlignedShapeConfig.model_type, PreAlignedShapeConfig, exist_ok=True)
    AutoModel.register(PreAlignedShapeConfig, PreAlignedShapeModel, exist_ok=True)
    AutoProcessor.register(PreAlignedShapeConfig, CMAHProcessor, exist_ok=True)
    for config_class, model_class in ((CMAHConfig, CMAHModel), (PreAlignedShapeConfig, PreAlignedShapeModel)):
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")
    CMAHForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    CMAHProcessor.register_for_auto_class("AutoProcessor")


_register_auto_classes()

__all__ = [
    "CMAH_PRESETS",
    "CMAHConfig",
    "CMAHForPreTraining",
    "CMAHModel",
    "CMAHProcessor",
    "ConfigError",
    "CorruptIndexError",
    "HFCMAHError",
    "IncompatibleIndexError",
    "InvalidInputError",
    "MeshLoadError",
    "PreAlignedShapeConfig",
    "PreAlignedShapeModel",
    "__version__",
    "hamming_distance",
    "pack_codes",
    "unpack_codes",
]
