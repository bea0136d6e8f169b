"""CMAHProcessor: every supported input kind → the tensor contracts, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from hf_cmah import CMAHProcessor, InvalidInputError


@pytest.fixture
def processor():
    return CMAHProcessor(image_size=32, num_points=64)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (40, 40), (10, 20, 30)),
        Image.new("RGBA", (50, 20), (255, 0, 0, 128)),
        Image.new("L", (33, 47), 128),
        Image.new("P", (16, 16)),
        np.zeros((20, 30, 3), dtype=np.uint8),
        np.ones((20, 30), dtype=np.float32),
        np.zeros((20, 30, 4), dtype=np.uint8),
        torch.rand(3, 24, 24),
    ],
)
def test_every_image_kind_becomes_normalised_pixel_values(processor, image):
    pixel_values = processor(images=image)["pixel_values"]
    assert pixel_values.shape == (1, 3, 32, 32) and pixel_values.dtype == torch.float32
    assert torch.isfinite(pixel_values).all()


def _normalised(processor, rgb: tuple[float, float, float]) -> np.ndarray:
    return (np.array(rgb) - np.array(processor.image_mean)) / np.array(processor.image_std)


def test_transparent_pixels_composite_on_white_and_padding_keeps_the_object(processor):
    image = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 32, 32))  # opaque black left half, red right half: a border of two colours
    image.paste((255, 0, 0, 255), (32, 0, 64, 32))
    pixels = processor(images=image, return_tensors="np")["pixel_values"][0]
    assert np.allclose(pixels[:, 0, 8], _normalised(processor, (1, 1, 1)), atol=1e-3)  # padding above is white
    assert np.allclose(pixels[:, 16, 8], _normalised(processor, (0, 0, 0)), atol=1e-3)  # the band is intact
    transparent = processor(images=Image.new("RGBA", (32, 32), (0, 0, 0, 0)), return_tensors="np")["pixel_values"]
    assert np.allclose(transparent[0, :, 16, 16], _normalised(processor, (1, 1, 1)), atol=1e-3)


def test_a_silhouette_mask_is_padded_with_its_own_black_ground(processor):
    mask = Image.new("L", (64, 32), 0)  # a Pix3D-style mask: white object on black, 2:1 aspect
    mask.paste(255, (16, 8, 48, 24))
    pixels = processor(images=mask, return_tensors="np")["pixel_values"][0]
    assert np.allclose(pixels[:, 2, 16], _normalised(processor, (0, 0, 0)), atol=1e-3)  # padding: black, no bands
    assert np.allclose(pixels[:, 16, 16], _normalised(processor, (1, 1, 1)), atol=1e-3)  # the object is intact


def test_points_are_centred_in_the_unit_ball_and_resampled(processor):
    cloud = np.random.default_rng(0).normal(loc=5.0, scale=3.0, size=(1000, 3))
    points = processor(points=cloud, return_tensors="np")["points"]
    assert points.shape == (1, 64, 3) and points.dtype == np.float32
    assert np.linalg.norm(points[0], axis=1).max() <= 1.0 + 1e-6
    assert np.abs(points[0].mean(0)).max() < 0.2


@pytest.mark.parametrize("count", [1, 5, 64, 1000])
def test_any_point_count_resamples_to_num_points(processor, count):
    cloud = np.random.default_rng(1).uniform(size=(count, 3))
    assert processor(points=[cloud, cloud])["points"].shape == (2, 64, 3)


def test_resampling_is_deterministic_for_the_seed(processor):
    cloud = np.random.default_rng(2).uniform(size=(500, 3))
    first = processor(points=cloud)["points"]
    assert torch.equal(first, processor(points=cloud)["points"])
    assert not torch.equal(first, CMAHProcessor(image_size=32, num_points=64, seed=1)(points=cloud)["points"])


def test_mesh_is_sampled_on_its_surface():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    points = CMAHProcessor(num_points=1024)(points=mesh, return_tensors="np")["points"][0]
    radii = np.linalg.norm(points, axis=1)  # surface samples of a sphere: all near radius 1 after scaling
    assert radii.max() == pytest.approx(1.0, abs=1e-5) and radii.min() > 0.9


def test_z_up_input_is_rotated_to_y_up():
    processor = CMAHProcessor(num_points=2, up_axis="z")
    points = processor(points=np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), return_tensors="np")["points"][0]
    assert np.allclose(np.abs(points[:, 1]), 1.0) and np.allclose(points[:, 2], 0.0)


def test_colours_kept_or_filled_with_grey():
    processor = CMAHProcessor(num_points=8, with_colors=True)
    grey = processor(points=np.random.default_rng(0).uniform(size=(8, 3)), return_tensors="np")["points"]
    assert grey.shape == (1, 8, 6) and np.allclose(grey[0, :, 3:], 0.4)
    coloured = np.concatenate([np.random.default_rng(0).uniform(size=(8, 3)), np.full((8, 3), 255.0)], axis=1)
    assert np.allclose(processor(points=coloured, return_tensors="np")["points"][0, :, 3:], 1.0)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (np.zeros((0, 3)), "empty"),
        (np.full((10, 3), np.nan), "NaN"),
        (np.zeros((10, 2)), r"\[N, 3\] or \[N, 6\]"),
        (np.zeros((2, 10, 3, 1)), r"\[N, 3\] or \[N, 6\]"),
        ("a string", "expected an array"),
        (trimesh.Trimesh(), "no surface"),
    ],
)
def test_bad_point_clouds_name_the_problem(processor, points, message):
    with pytest.raises(InvalidInputError, match=message):
        processor(points=points)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10, 2), dtype=np.uint8), "image array must be"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "NaN"),
        (Image.new("F", (4, 4)), "unsupported image mode"),
        ("not an image", "expected a PIL image"),
    ],
)
def test_bad_images_name_the_problem(processor, image, message):
    with pytest.raises(InvalidInputError, match=message):
        processor(images=image)


def test_processor_needs_some_input(processor):
    with pytest.raises(InvalidInputError, match="needs images, points, or both"):
        processor()


def test_invalid_settings_are_rejected():
    with pytest.raises(InvalidInputError, match="up_axis"):
        CMAHProcessor(up_axis="x")


def test_model_up_axis_z_rotates_y_up_clouds_to_z_up():
    processor = CMAHProcessor(num_points=2, model_up_axis="z")
    points = processor(points=np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]), return_tensors="np")["points"][0]
    assert np.allclose(np.abs(points[:, 2]), 1.0) and np.allclose(points[:, 1], 0.0)
    assert points[np.argmax(points[:, 2]), 2] > 0  # what was up (+y) is up (+z)
