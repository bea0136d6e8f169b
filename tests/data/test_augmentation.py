"""Train-time image augmentations: seeded, each one does what it says, backgrounds only behind the object."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hf_cmah.data.augmentation import ImageAugmentation, sample_seed
from hf_cmah.errors import ConfigError

OFF = dict(background_p=0.0, crop_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
OFF.update(grayscale_p=0.0, blur_p=0.0, jpeg_p=0.0)


def _render(size: int = 64) -> Image.Image:
    """A transparent render: an orange square with a blue stripe in the middle, nothing around it."""
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    pixels[16:48, 16:48] = (230, 120, 20, 255)
    pixels[28:36, 16:48] = (20, 60, 200, 255)
    return Image.fromarray(pixels, "RGBA")


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_the_same_seed_gives_the_same_image_and_another_seed_another():
    augment = ImageAugmentation()
    first = [_array(augment(_render(), sample_seed(0, epoch=1, row=row))) for row in range(6)]
    again = [_array(augment(_render(), sample_seed(0, epoch=1, row=row))) for row in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), "a resumed run sees the same images"
    assert len({a.tobytes() for a in first}) == 6, "every row draws its own augmentation"
    assert sample_seed(0, 1, 2) != sample_seed(0, 2, 1) != sample_seed(1, 1, 2)


def test_all_off_composites_on_white_and_keeps_the_object():
    out = _array(ImageAugmentation(**OFF)(_render(), seed=3))
    assert out.shape == (64, 64, 3)
    assert (out[:8, :8] == 255).all(), "transparent pixels become white"
    assert (out[20, 20] == (230, 120, 20)).all() and (out[30, 30] == (20, 60, 200)).all()


def test_backgrounds_replace_only_transparent_pixels_and_vary():
    augment = ImageAugmentation(**{**OFF, "background_p": 1.0, "gradient_p": 0.5})
    outs = [_array(augment(_render(), seed=seed)) for seed in range(8)]
    for out in outs:
        assert (out[20, 20] == (230, 120, 20)).all(), "the object is untouched"
    corners = {tuple(out[0, 0]) for out in outs}
    assert len(corners) == 8 and (255, 255, 255) not in corners
    gradients = [out for out in outs if not (out[:16] == out[0, 0]).all()]
    assert gradients, "some backgrounds are gradients"
    opaque = Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8))
    assert (_array(augment(opaque, seed=1)) == 90).all(), "an image without alpha keeps its own background"


def test_silhouettes_are_the_alpha_mask_of_a_share_of_the_renders():
    out = _array(ImageAugmentation(**{**OFF, "silhouette_p": 1.0})(_render(), seed=2))
    assert (out[20, 20] == 255).all() and (out[30, 30] == 255).all(), "the object is white"
    assert (out[:8, :8] == 0).all(), "the ground is black, as in a mask cut from a photo"
    opaque = Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8))
    assert (_array(ImageAugmentation(**{**OFF, "silhouette_p": 1.0})(opaque, seed=2)) == 90).all()
    mixed = [ImageAugmentation(**{**OFF, "silhouette_p": 0.5})(_render(), seed=s) for s in range(16)]
    assert 0 < sum(_array(m)[0, 0, 0] == 0 for m in mixed) < 16, "a share of the renders become silhouettes"


def test_a_tint_colours_the_object_only():
    outs = [_array(ImageAugmentation(**{**OFF, "tint_p": 1.0})(_render(), seed=seed)) for seed in range(4)]
    for out in outs:
        assert (out[:8, :8] == 255).all(), "the ground stays white"
        assert (out[20, 20] <= (230, 120, 20)).all() and (out[20, 20] != (230, 120, 20)).any()
    assert len({tuple(out[20, 20]) for out in outs}) == 4


def test_a_zoom_out_leaves_the_object_smaller_somewhere_in_the_frame():
    def object_pixels(out):
        return int((out != 255).any(axis=-1).sum())

    plain = object_pixels(_array(ImageAugmentation(**OFF)(_render(), seed=0)))
    zoomed = [_array(ImageAugmentation(**{**OFF, "zoom_out_p": 1.0, "zoom_out_side": (2.0, 2.0)})(_render(), seed=s))
              for s in range(4)]  # fmt: skip
    for out in zoomed:
        assert out.shape == (64, 64, 3)
        assert plain / 4 * 0.8 < object_pixels(out) < plain / 4 * 1.3, "half the side, a quarter of the area"
    assert len({np.argwhere(out != 255)[0].tobytes() for out in zoomed}) > 1, "at random positions"


def test_floor_scenes_have_a_sky_a_horizon_and_grid_lines_behind_the_object():
    augment = ImageAugmentation(**{**OFF, "background_p": 1.0, "gradient_p": 0.0, "floor_p": 1.0})
    for seed in range(4):
        out = _array(augment(_render(), seed=seed))
        assert (out[20, 20] == (230, 120, 20)).all(), "the object is untouched"
        floor = {tuple(pixel) for pixel in out[-8:].reshape(-1, 3)}
        assert len(floor) == 2, "the floor and its grid lines"
        assert tuple(out[0, 0]) not in floor, "a sky above the horizon"
    solid = ImageAugmentation(**{**OFF, "background_p": 1.0, "gradient_p": 0.0})
    assert len({tuple(p) for p in _array(solid(_render(), seed=0))[-1]}) == 1, "floor_p = 0: solid colours only"


@pytest.mark.parametrize(
    "change",
    [
        {"crop_p": 1.0},
        {"brightness": 0.5},
        {"contrast": 0.5},
        {"saturation": 0.5},
        {"hue": 0.2},
        {"blur_p": 1.0},
        {"jpeg_p": 1.0, "jpeg_quality": (10, 20)},
        {"tint_p": 1.0},
        {"zoom_out_p": 1.0},
        {"background_p": 1.0, "gradient_p": 0.0, "floor_p": 1.0},
    ],
)
def test_each_augmentation_changes_the_image(change):
    plain = _array(ImageAugmentation(**OFF)(_render(), seed=5))
    changed = _array(ImageAugmentation(**{**OFF, **change})(_render(), seed=5))
    assert changed.shape == plain.shape
    assert np.abs(changed - plain).mean() > 0.5, change


def test_grayscale_makes_every_channel_equal():
    out = _array(ImageAugmentation(**{**OFF, "grayscale_p": 1.0})(_render(), seed=0))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out.std() > 10, "not blank"


@pytest.mark.parametrize(
    "bad",
    [
        {"blur_p": 1.5},
        {"brightness": 1.0},
        {"crop_scale": (0.0, 1.0)},
        {"jpeg_quality": (90, 30)},
        {"hue": 0.7},
        {"zoom_out_side": (0.5, 1.0)},
        {"floor_p": -0.1},
    ],
)
def test_bad_settings_name_the_field(bad):
    with pytest.raises(ConfigError, match=f"augmentation.{next(iter(bad))}"):
        ImageAugmentation(**bad)
