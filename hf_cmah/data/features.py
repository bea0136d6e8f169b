"""The columns of every dataset the builders make, as ``datasets.Features``.

One row is one (shape, image) pair: ``points`` repeat across a shape's views so that any
row is a complete training example; :mod:`hf_cmah.data.pairing` picks views per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets

# How the image of a row was made; ``none`` rows carry points only.
IMAGE_KINDS = ("render", "thumbnail", "photo", "mask", "none")

CAMERA = {
    "index": datasets.Value("int32"),
    "kind": datasets.Value("string"),
    "azimuth": datasets.Value("float32"),
    "elevation": datasets.Value("float32"),
    "distance": datasets.Value("float32"),
    "fov_deg": datasets.Value("float32"),
    # 4×4 camera-to-world matrix, row-major, in the y-up frame of the normalised shape
    # (OpenGL convention: the camera looks down its -z); NaN where unknown.
    "cam_to_world": datasets.Sequence(datasets.Value("float32"), length=16),
    # How a render was made (hf_cmah.render): roll about the viewing axis in degrees, the engine
    # (cycles / workbench), the lighting preset and its turn about the vertical, and the look —
    # ``importer:obj|gltf`` (the asset with its own materials) or ``vertex_colors`` (the plain mesh).
    "roll": datasets.Value("float32"),
    "engine": datasets.Value("string"),
    "lighting": datasets.Value("string"),
    "light_rotation": datasets.Value("float32"),
    "look": datasets.Value("string"),
}


def shape_features(
    class_names: Sequence[str], num_points: int, with_colors: bool = False, with_thumbnail: bool = False
) -> datasets.Features:
    """Features of a built dataset; ``label`` is -1 for shapes whose class is unknown."""
    columns = {
        "shape_id": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(class_names)),
        "points": datasets.Array2D(shape=(num_points, 6 if with_colors else 3), dtype="float32"),
        "image": datasets.Image(),
        "view": CAMERA,
        "source": datasets.Value("string"),
        "mesh_path": datasets.Value("string"),
    }
    if with_thumbnail:
        columns["thumbnail"] = datasets.Image()
    return datasets.Features(columns)


def empty_view(kind: str = "none") -> dict:
    """A ``view`` value for images without a known camera (thumbnails, photos, point-only rows)."""
    nan = float("nan")
    return {
        "index": -1,
        "kind": kind,
        "azimuth": nan,
        "elevation": nan,
        "distance": nan,
        "fov_deg": nan,
        "cam_to_world": [nan] * 16,
        "roll": nan,
        "engine": "",
        "lighting": "",
        "light_rotation": nan,
        "look": "",
    }


__all__ = ["CAMERA", "IMAGE_KINDS", "empty_view", "shape_features"]
