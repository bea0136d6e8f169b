"""Train-time image augmentations that narrow the gap between our renders and images nobody here made.

A reference photo, a product shot or a concept render differs from a clean render in framing, colour,
sharpness, compression and background. `ImageAugmentation` draws each of those per image: a random
background behind transparent renders (so one RGBA render serves many backgrounds), a random resized
crop, colour jitter, grayscale, blur and JPEG re-encoding — the SimCLR / CLIP-style recipe. Off unless
asked for, three more close the gaps a grey render that fills its frame has to a staged picture of a
coloured object: a colour tint of the object, a zoom-out that leaves it small in the frame
(torchvision's RandomZoomOut), and ground-plane scenes (a sky over a floor with a perspective grid)
among the backgrounds.

Every draw comes from a NumPy generator seeded by `sample_seed` (run seed, epoch, row, view), never
from global state: the same row in the same epoch gets the same image in any process, worker or
resumed run. These are PIL operations rather than torchvision's transforms v2 because no CPU build of
torchvision that matches the project's torch is installable here (the CUDA wheel's operators fail to
load against a CPU torch); the operations and their ranges follow torchvision's defaults.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from ..errors import ConfigError


def sample_seed(seed: int, epoch: int, row: int, view: int = 0) -> int:
    """A 32-bit seed that depends on every part of the sample's identity, and on nothing else."""
    return int(np.random.SeedSequence([seed, epoch, row, view]).generate_state(1)[0])


@dataclass(frozen=True)
class ImageAugmentation:
    """Probabilities and ranges of each augmentation; a probability of 0 (or a zero strength) turns it off."""

    tint_p: float = 0.0  # RGBA images: the object's pixels times a random colour (grey shading → coloured)
    zoom_out_p: float = 0.0  # any image: placed at a random spot of a transparent canvas, then resized back
    zoom_out_side: tuple[float, float] = (1.0, 2.5)  # canvas side ÷ image side, as torchvision's RandomZoomOut
    silhouette_p: float = 0.0  # RGBA images: their alpha as a white-on-black mask, the form of Pix3D's real masks
    background_p: float = 0.8  # RGBA images: a random solid or gradient background instead of white
    gradient_p: float = 0.5  # of those backgrounds, the share that are two-colour gradients
    floor_p: float = 0.0  # of the rest, the share that are ground-plane scenes: sky, horizon, gridded floor
    crop_p: float = 0.8
    crop_scale: tuple[float, float] = (0.6, 1.0)  # area kept, as torchvision's RandomResizedCrop
    crop_ratio: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.3  # factors drawn from [1 - x, 1 + x], as ColorJitter
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03  # fraction of the colour wheel, ±
    grayscale_p: float = 0.1
    blur_p: float = 0.2
    blur_radius: tuple[float, float] = (0.3, 1.5)
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)

    def __post_init__(self) -> None:
        probabilities = ("tint_p", "zoom_out_p", "silhouette_p", "background_p", "gradient_p", "floor_p", "crop_p")
        for name in (*probabilities, "grayscale_p", "blur_p", "jpeg_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"augmentation.{name}: expected a probability in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"augmentation.{name}: expected a strength in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ConfigError(f"augmentation.hue: expected a fraction in [0, 0.5], got {self.hue}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ConfigError(f"augmentation.crop_scale: expected 0 < low <= high <= 1, got {self.crop_scale}")
        if not 1.0 <= self.zoom_out_side[0] <= self.zoom_out_side[1]:
            raise ConfigError(f"augmentation.zoom_out_side: expected 1 <= low <= high, got {self.zoom_out_side}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ConfigError(f"augmentation.jpeg_quality: expected 1 <= low <= high <= 100, got {self.jpeg_quality}")

    def __call__(self, image: Image.Image, seed: int) -> Image.Image:
        """The augmented RGB image, the same size as ``image``; the same ``seed`` gives the same result."""
        rng = np.random.default_rng(seed)
        # Drawn only when on, so that every other draw (and each image of an older recipe) stays the same.
        if self.tint_p and _has_alpha(image) and rng.random() < self.tint_p:
            image = _tint(image, rng.uniform(0.25, 1.0, size=3))
        if self.zoom_out_p and rng.random() < self.zoom_out_p:
            image = _zoom_out(image, rng.uniform(*self.zoom_out_side), rng.random(2))
        if self.silhouette_p and _has_alpha(image) and rng.random() < self.silhouette_p:
            image = _silhouette(image)
        image = self._background(image, rng)
        if rng.random() < self.crop_p:
            image = self._crop(image, rng)
        image = self._colour(image, rng)
        if rng.random() < self.grayscale_p:
            image = image.convert("L").convert("RGB")
        if rng.random() < self.blur_p:
            image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(*self.blur_radius))))
        if rng.random() < self.jpeg_p:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        return image

    def _background(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Transparent pixels over white, or over a random colour / gradient (images without alpha pass)."""
        draw_background, draw_gradient = rng.random() < self.background_p, rng.random() < self.gradient_p
        colours = rng.integers(0, 256, size=(2, 3))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        draw_floor = bool(self.floor_p) and rng.random() < self.floor_p
        if not _has_alpha(image):
            return image.convert("RGB")
        rgba = image.convert("RGBA")
        if not draw_background:
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        elif draw_gradient:
            canvas = _gradient(rgba.size, colours[0], colours[1], angle)
        elif draw_floor:
            canvas = _floor_scene(rgba.size, rng)
        else:
            canvas = Image.new("RGBA", rgba.size, (*colours[0].tolist(), 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")

    def _crop(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """torchvision's RandomResizedCrop: a random area share and aspect ratio, resized back to the size."""
        width, height = image.size
        area = width * height * rng.uniform(*self.crop_scale)
        ratio = float(np.exp(rng.uniform(*np.log(self.crop_ratio))))
        crop_width = max(1, round(min(width, np.sqrt(area * ratio))))
        crop_height = max(1, round(min(height, np.sqrt(area / ratio))))
        left = int(rng.integers(0, width - crop_width + 1))
        top = int(rng.integers(0, height - crop_height + 1))
        box = (left, top, left + crop_width, top + crop_height)
        return image.resize((width, height), Image.Resampling.BICUBIC, box=box)

    def _colour(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """ColorJitter: brightness, contrast, saturation and hue, in a random order."""
        factors = {
            "brightness": rng.uniform(1.0 - self.brightness, 1.0 + self.brightness),
            "contrast": rng.uniform(1.0 - self.contrast, 1.0 + self.contrast),
            "saturation": rng.uniform(1.0 - self.saturation, 1.0 + self.saturation),
            "hue": rng.uniform(-self.hue, self.hue),
        }
        enhancers = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast}
        enhancers["saturation"] = ImageEnhance.Color
        for name in rng.permutation(list(factors)):
            if name == "hue":
                image = _shift_hue(image, factors["hue"]) if self.hue else image
            elif factors[name] != 1.0:
                image = enhancers[name](image).enhance(float(factors[name]))
        return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _silhouette(image: Image.Image) -> Image.Image:
    """The object's mask: opaque pixels white, transparent ones black (as a mask cut from a photo)."""
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    return Image.fromarray(np.where(alpha >= 128, 255, 0).astype(np.uint8), "L").convert("RGB")


def _tint(image: Image.Image, colour: np.ndarray) -> Image.Image:
    """The object's RGB times ``colour`` (three factors in [0, 1]); alpha unchanged."""
    pixels = np.asarray(image.convert("RGBA")).astype(np.float64)
    pixels[..., :3] *= colour[None, None, :]
    return Image.fromarray(pixels.round().astype(np.uint8), "RGBA")


def _zoom_out(image: Image.Image, side: float, position: np.ndarray) -> Image.Image:
    """The image on a transparent canvas ``side`` times its size at ``position`` (two fractions), resized back."""
    rgba = image.convert("RGBA")
    width, height = rgba.size
    canvas = Image.new("RGBA", (round(width * side), round(height * side)), (0, 0, 0, 0))
    left = int(position[0] * (canvas.width - width))
    top = int(position[1] * (canvas.height - height))
    canvas.paste(rgba, (left, top))
    return canvas.resize((width, height), Image.Resampling.BICUBIC)


def _floor_scene(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A ground-plane scene: a sky gradient over a floor to the horizon, with grid lines in perspective."""
    width, height = size
    horizon = int(height * rng.uniform(0.35, 0.75))
    sky_top, sky_bottom, floor, line = rng.integers(0, 256, size=(4, 3))
    scene = np.empty((height, width, 3), dtype=np.float64)
    along = np.linspace(0.0, 1.0, max(horizon, 1))[:, None, None]
    scene[:horizon] = sky_top * (1.0 - along) + sky_bottom * along
    scene[horizon:] = floor
    canvas = Image.fromarray(scene.round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    vanishing_x = width * rng.uniform(0.2, 0.8)
    lines = int(rng.integers(6, 16))
    colour = tuple(line.tolist())
    for x in np.linspace(-width, 2 * width, lines):  # floor lines that meet at the vanishing point
        draw.line([(vanishing_x, horizon), (x, height)], fill=colour, width=1)
    depth = rng.uniform(0.5, 1.5)
    for k in range(1, 12):  # lines across the floor, closer together towards the horizon (1 / distance)
        y = horizon + (height - horizon) * depth / (depth + k - 1)
        draw.line([(0, y), (width, y)], fill=colour, width=1)
    return canvas.convert("RGBA")


def _gradient(size: tuple[int, int], start: np.ndarray, end: np.ndarray, angle: float) -> Image.Image:
    """A linear two-colour gradient across the image along ``angle``."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    along = np.cos(angle) * xs / max(width - 1, 1) + np.sin(angle) * ys / max(height - 1, 1)
    along = (along - along.min()) / max(along.max() - along.min(), 1e-9)
    pixels = start[None, None, :] * (1.0 - along[..., None]) + end[None, None, :] * along[..., None]
    rgba = np.concatenate([pixels, np.full((height, width, 1), 255.0)], axis=-1)
    return Image.fromarray(rgba.round().astype(np.uint8), "RGBA")


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Turn every colour round the hue wheel by ``shift`` (a fraction of a turn)."""
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


__all__ = ["ImageAugmentation", "sample_seed"]
