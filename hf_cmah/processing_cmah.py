"""CMAHProcessor: images and point clouds → the tensors every hf_cmah model reads.

Contracts (ARCHITECTURE.md): ``pixel_values`` float32 ``[B, 3, H, W]`` normalised with the
mean/std here, RGBA composited on white; ``points`` float32 ``[B, N, 3]`` (or ``[B, N, 6]``
with rgb in 0..1), y up, centred on the centroid and scaled into the unit ball, resampled
to ``num_points``. Saved beside the model (``preprocessor_config.json``), so this file
imports only its same-folder sibling ``errors`` and treats trimesh as optional.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature
from transformers.image_processing_base import ImageProcessingMixin

from .errors import InvalidInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_COLOR_GREY = 0.4  # colour given to shapes without one, where a model reads colour
UP_AXES = ("y", "z")


def _batch(inputs: Any, single_ndim: int) -> list:
    """A single item, a list/tuple of items or a stacked array of items → a list of items."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == single_ndim + 1:
        return list(inputs)
    return [inputs]


def _to_rgb_image(image: Any, index: int, background: tuple[int, int, int]) -> Image.Image:
    """PIL / numpy / torch image in any common mode → an RGB PIL image (alpha composited on ``background``)."""
    where = f"images[{index}]"
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            image = np.moveaxis(image, 0, -1)  # CHW → HWC
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image, where)
    if not isinstance(image, Image.Image):
        raise InvalidInputError(
            f"{where}: expected a PIL image, numpy array or torch tensor, got {type(image).__name__}"
        )
    if image.width == 0 or image.height == 0:
        raise InvalidInputError(f"{where}: the image is empty ({image.width}×{image.height} pixels)")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in ("RGB", "L", "P", "CMYK", "YCbCr", "I;16", "1"):
        return image.convert("RGB") if image.mode != "I;16" else image.point(lambda v: v / 256).convert("RGB")
    raise InvalidInputError(f"{where}: unsupported image mode {image.mode!r} (use RGB, RGBA or grayscale)")


def _array_to_pil(array: np.ndarray, where: str) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InvalidInputError(
            f"{where}: an image array must be [H, W], [H, W, 3] or [H, W, 4] (or [C, H, W] as a tensor), "
            f"got shape {list(array.shape)}"
        )
    if array.size == 0:
        raise InvalidInputError(f"{where}: the image is empty (shape {list(array.shape)})")
    if array.dtype != np.uint8:
        if not np.isfinite(array).all():
            raise InvalidInputError(f"{where}: the image contains NaN or infinite values")
        scale = 255.0 if array.max() <= 1.0 else 1.0  # float images in 0..1, or already 0..255
        array = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    return Image.fromarray(array, mode=None)


def _fit_square(image: Image.Image, size: int, background: tuple[int, int, int]) -> Image.Image:
    """Pad to a square (never crop: the whole object stays in view), then resize.

    The padding is the image's own ground when its border is one colour — black for a silhouette
    mask such as Pix3D's, grey for a studio shot — so padding never draws bands that are not in the
    picture; other images are padded with ``background``.
    """
    side = max(image.width, image.height)
    if image.width != image.height:
        canvas = Image.new("RGB", (side, side), _border_colour(image) or background)
        canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        image = canvas
    return image.resize((size, size), Image.Resampling.BICUBIC)


def _border_colour(image: Image.Image, tolerance: int = 16, share: float = 0.95) -> tuple[int, int, int] | None:
    """The median colour of the outermost pixels when ``share`` of them lie within ``tolerance`` of it, else None."""
    pixels = np.asarray(image, dtype=np.int16)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    median = np.median(border, axis=0)
    if (np.abs(border - median).max(axis=1) <= tolerance).mean() < share:
        return None
    return tuple(int(value) for value in median.round())


def _mesh_to_points(mesh: Any, count: int, seed: int) -> np.ndarray:
    """Sample ``count`` surface points (with vertex colours when the mesh has them) from a trimesh object."""
    import trimesh  # optional: only needed when meshes are passed

    if isinstance(mesh, trimesh.Scene):
        mesh = mesh.to_geometry() if hasattr(mesh, "to_geometry") else mesh.dump(concatenate=True)
    if isinstance(mesh, trimesh.PointCloud):
        return np.asarray(mesh.vertices, dtype=np.float32)
    if len(mesh.faces) == 0 or mesh.area <= 0:
        raise InvalidInputError("points: the mesh has no surface to sample (no faces or zero area)")
    has_colors = getattr(mesh.visual, "kind", None) == "vertex"
    if has_colors:
        xyz, _, colors = trimesh.sample.sample_surface(mesh, count, seed=seed, sample_color=True)
        return np.concatenate([xyz, np.asarray(colors)[:, :3] / 255.0], axis=1).astype(np.float32)
    xyz, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(xyz, dtype=np.float32)


def normalize_xyz(xyz: np.ndarray, up_axis: str = "y", model_up_axis: str = "y") -> np.ndarray:
    """Contract 1: rotate ``up_axis``-up input to y-up, centre on the centroid, scale into the unit ball;
    then, for a model trained z-up (``model_up_axis="z"``), rotate y-up to z-up. Both rotations are proper."""
    if up_axis == "z":  # −90° about x: z-up → y-up
        xyz = np.stack([xyz[:, 0], xyz[:, 2], -xyz[:, 1]], axis=1)
    xyz = xyz - xyz.mean(axis=0)
    radius = np.linalg.norm(xyz, axis=1).max()
    xyz = xyz / radius if radius > 0 else xyz
    if model_up_axis == "z":  # +90° about x: y-up → z-up
        xyz = np.stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]], axis=1)
    return xyz


def resample_rows(count: int, num_points: int, seed: int) -> np.ndarray:
    """Row indices giving exactly ``num_points`` of ``count``: a seeded subset, or every row plus seeded repeats."""
    rng = np.random.default_rng(seed)
    if count >= num_points:
        return np.sort(rng.choice(count, num_points, replace=False))
    return np.concatenate([np.arange(count), rng.choice(count, num_points - count, replace=True)])


class CMAHProcessorKwargs(TypedDict, total=False):
    """Settings that `CMAHProcessor.from_pretrained(..., **kwargs)` may override."""

    image_size: int
    image_mean: list[float]
    image_std: list[float]
    background_color: list[int]
    num_points: int
    up_axis: str
    model_up_axis: str
    with_colors: bool
    seed: int


class CMAHProcessor(ImageProcessingMixin):
    r"""Turns images and shapes into model inputs.

    Args:
        image_size (`int`, defaults to 224): output side of square images.
        image_mean / image_std (`list[float]`): per-channel normalisation after scaling to 0..1.
        background_color (`list[int]`, defaults to white): fill for alpha, and for padding to square
            where the image's border is not one colour.
        num_points (`int`, defaults to 1024): points per cloud after resampling.
        up_axis (`str`, defaults to `"y"`): the up axis of the INPUT shapes; `"z"` rotates z-up data to y-up.
        model_up_axis (`str`, defaults to `"y"`): the up axis the MODEL was trained with; `"z"` (OpenShape
            G/14) rotates the y-up clouds to z-up as the last step.
        with_colors (`bool`, defaults to False): emit ``[B, N, 6]`` (xyz + rgb); shapes without colour
            get 0.4 grey.
        seed (`int`, defaults to 0): seed of point resampling and mesh surface sampling (deterministic output).
    """

    model_input_names = ["pixel_values", "points"]
    valid_kwargs = CMAHProcessorKwargs

    def __init__(
        self,
        image_size: int = 224,
        image_mean: list[float] | tuple[float, ...] = IMAGENET_MEAN,
        image_std: list[float] | tuple[float, ...] = IMAGENET_STD,
        background_color: list[int] | tuple[int, ...] = (255, 255, 255),
        num_points: int = 1024,
        up_axis: str = "y",
        model_up_axis: str = "y",
        with_colors: bool = False,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, axis in (("up_axis", up_axis), ("model_up_axis", model_up_axis)):
            if axis not in UP_AXES:
                raise InvalidInputError(f"{name} must be one of {UP_AXES}, got {axis!r}")
        if image_size <= 0 or num_points <= 0:
            raise InvalidInputError(f"image_size and num_points must be positive, got {image_size}, {num_points}")
        self.image_size = int(image_size)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.background_color = [int(v) for v in background_color]
        self.num_points = int(num_points)
        self.up_axis = up_axis
        self.model_up_axis = model_up_axis
        self.with_colors = bool(with_colors)
        self.seed = int(seed)

    @classmethod
    def from_model_config(cls, config, **kwargs) -> CMAHProcessor:
        """A processor whose image size and point count match a model config."""
        return cls(image_size=config.image_size, num_points=config.num_points, **kwargs)

    def __call__(self, images=None, points=None, return_tensors: str | None = "pt") -> BatchFeature:
        """Process ``images`` (one or a list) and/or ``points`` (one cloud / mesh or a list)."""
        if images is None and points is None:
            raise InvalidInputError("CMAHProcessor needs images, points, or both")
        data = {}
        if images is not None:
            data["pixel_values"] = self.preprocess_images(images)
        if points is not None:
            data["points"] = self.preprocess_points(points)
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ------------------------------------------------------------------ images
    def preprocess_images(self, images) -> np.ndarray:
        """→ float32 ``[B, 3, image_size, image_size]``, normalised."""
        batch = _batch(images, single_ndim=3)
        if not batch:
            raise InvalidInputError("images: the list is empty")
        background = tuple(self.background_color)
        mean = np.asarray(self.image_mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.image_std, dtype=np.float32)[:, None, None]
        arrays = []
        for index, image in enumerate(batch):
            rgb = _fit_square(_to_rgb_image(image, index, background), self.image_size, background)
            chw = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
            arrays.append((chw - mean) / std)
        return np.stack(arrays)

    # ------------------------------------------------------------------ points
    def preprocess_points(self, points) -> np.ndarray:
        """→ float32 ``[B, num_points, 3]`` (or 6 with colours), centred, in the unit ball, y up."""
        batch = _batch(points, single_ndim=2)
        if not batch:
            raise InvalidInputError("points: the list is empty")
        return np.stack([self._one_cloud(cloud, index) for index, cloud in enumerate(batch)])

    def _one_cloud(self, cloud: Any, index: int) -> np.ndarray:
        where = f"points[{index}]"
        if not isinstance(cloud, (np.ndarray, torch.Tensor, list)):
            try:
                cloud = _mesh_to_points(cloud, self.num_points, self.seed)
            except InvalidInputError as error:
                raise InvalidInputError(f"{where}: {str(error).removeprefix('points: ')}") from None
            except (AttributeError, TypeError):
                raise InvalidInputError(
                    f"{where}: expected an array [N, 3|6], a torch tensor or a trimesh mesh, got {type(cloud).__name__}"
                ) from None
        if isinstance(cloud, torch.Tensor):
            cloud = cloud.detach().cpu().numpy()
        array = np.asarray(cloud, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] not in (3, 6):
            raise InvalidInputError(f"{where}: a point cloud must have shape [N, 3] or [N, 6], got {list(array.shape)}")
        if array.shape[0] == 0:
            raise InvalidInputError(f"{where}: the point cloud is empty (0 points)")
        if not np.isfinite(array).all():
            raise InvalidInputError(f"{where}: the point cloud contains NaN or infinite values")
        xyz = normalize_xyz(array[:, :3], self.up_axis, self.model_up_axis)
        rows = resample_rows(len(xyz), self.num_points, self.seed)
        if not self.with_colors:
            return xyz[rows].astype(np.float32)
        colors = array[:, 3:6] if array.shape[1] == 6 else np.full_like(xyz, NO_COLOR_GREY)
        if colors.max(initial=0.0) > 1.0:  # 0..255 colours
            colors = colors / 255.0
        return np.concatenate([xyz, np.clip(colors, 0.0, 1.0)], axis=1)[rows].astype(np.float32)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "NO_COLOR_GREY", "CMAHProcessor", "normalize_xyz", "resample_rows"]
