"""Uploaded files → what the models read: images through :func:`hf_cmah.images.load_image`, shapes through
the geometry loaders (from a temporary file whose suffix tells the format). Errors name the form field."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, MeshLoadError
from ..geometry import MESH_SUFFIXES, POINT_SUFFIXES, load_points
from ..images import load_image

SHAPE_SUFFIXES = MESH_SUFFIXES + POINT_SUFFIXES


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the form field it came in, its client-side name, its bytes; for library writes,
    the shape id and label it is added under."""

    field: str
    filename: str
    data: bytes
    shape_id: str = ""
    label: str | None = None


def read_image(upload: Upload, max_pixels: int):
    """A decoded PIL image, or InvalidInputError naming the field (empty, not an image, truncated, too large)."""
    return load_image(upload.data, upload.field, max_pixels)


@contextmanager
def saved_uploads(uploads: list[Upload]) -> Iterator[list[Path]]:
    """The uploads written to temporary files with their (checked) suffixes, in order; removed afterwards."""
    suffixes = [_checked_suffix(upload) for upload in uploads]
    with tempfile.TemporaryDirectory(prefix="hf-cmah-upload-") as folder:
        paths = [Path(folder) / f"upload-{number}{suffix}" for number, suffix in enumerate(suffixes)]
        for path, upload in zip(paths, uploads):
            path.write_bytes(upload.data)
        yield paths


def _checked_suffix(upload: Upload) -> str:
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in SHAPE_SUFFIXES:
        raise InvalidInputError(
            f"{upload.field}: {upload.filename or 'the file'} is not a mesh or point file "
            f"(its name must end in one of {', '.join(SHAPE_SUFFIXES)})"
        )
    if not upload.data:
        raise InvalidInputError(f"{upload.field}: {upload.filename} is empty")
    return suffix


def read_shape_file(path: Path, upload: Upload, num_points: int, seed: int) -> np.ndarray:
    """``num_points`` normalised points of a saved upload; the error names the field and the client's file name."""
    try:
        return load_points(path, num_points, seed=seed)
    except MeshLoadError as error:
        message = str(error).replace(str(path), upload.filename)
        raise InvalidInputError(f"{upload.field}: {message}") from None


def read_shape(upload: Upload, num_points: int, seed: int) -> np.ndarray:
    with saved_uploads([upload]) as (path,):
        return read_shape_file(path, upload, num_points, seed)


SHAPE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\- /]{0,199}")


def checked_shape_id(shape_id: str, where: str) -> str:
    """A shape id a client may choose: letters, digits, ``_ . - /`` and spaces; no ``..`` segment."""
    shape_id = shape_id.strip().strip("/")
    if not SHAPE_ID.fullmatch(shape_id) or ".." in shape_id.split("/"):
        raise InvalidInputError(
            f"{where}: {shape_id!r} is not a valid shape id (letters, digits, '_', '.', '-', '/', spaces; ≤ 200)"
        )
    return shape_id


__all__ = [
    "SHAPE_SUFFIXES",
    "Upload",
    "checked_shape_id",
    "read_image",
    "read_shape",
    "read_shape_file",
    "saved_uploads",
]
