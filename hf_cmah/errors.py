"""The exception types every layer of hf_cmah raises.

All subclass ``ValueError`` so that callers that only know Python's built-ins still
catch them; the service maps them to 4xx JSON and the CLI prints them without a
traceback. Messages name the file or argument and the problem.
"""

from __future__ import annotations


class HFCMAHError(ValueError):
    """Base class of every error hf_cmah raises on purpose."""


class InvalidInputError(HFCMAHError):
    """An argument, tensor, image or file is not what the call needs."""


class MeshLoadError(InvalidInputError):
    """A mesh or point file cannot be read or sampled; the message names the file."""


class IncompatibleIndexError(HFCMAHError):
    """A ShapeIndex and a model (or two indexes) disagree on bits or fingerprint."""


class CorruptIndexError(HFCMAHError):
    """A ShapeIndex folder fails its manifest or checksum verification."""


class ConfigError(HFCMAHError):
    """A training, evaluation or data-building configuration value is invalid."""


__all__ = [
    "ConfigError",
    "CorruptIndexError",
    "HFCMAHError",
    "IncompatibleIndexError",
    "InvalidInputError",
    "MeshLoadError",
]
