"""Converters of public pre-aligned shape encoders (OpenShape, ULIP-2) to `PreAlignedShapeModel` folders."""

from .common import CheckpointLayoutError, ConversionReport
from .openshape import OPENSHAPE_VARIANTS, convert_openshape
from .ulip2 import convert_ulip2

__all__ = ["OPENSHAPE_VARIANTS", "CheckpointLayoutError", "ConversionReport", "convert_openshape", "convert_ulip2"]
