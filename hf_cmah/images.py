"""Reading image files and uploads with limits: the one way the CLI, the Python API and the service open images.

PIL decodes whatever a file claims to be: a 388 KB PNG can declare 20,000 × 20,000 pixels
(a decompression bomb, 1.2 GB decoded), and a truncated file fails deep inside ``load()``.
Here the size is checked from the header before any pixel is decoded, and every way a file
can fail becomes an :class:`~hf_cmah.errors.InvalidInputError` that names the field.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from .errors import InvalidInputError

# 64 MP: a 48-50 MP phone photo passes; decoded as RGB it stays under 200 MB.
MAX_IMAGE_PIXELS = 64_000_000


def load_image(source: str | Path | bytes | BinaryIO, where: str = "image", max_pixels: int = MAX_IMAGE_PIXELS):
    """Open and fully decode an image file, path or bytes; refuse empty, unreadable, truncated or oversized ones.

    ``where`` names the argument or form field in error messages (``--image``, ``image``).
    Returns a loaded PIL image (its first frame for animations), in its own mode.
    """
    if isinstance(source, bytes):
        if not source:
            raise InvalidInputError(f"{where}: the file is empty")
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"{where}: {path}: no such file")
        if path.stat().st_size == 0:
            raise InvalidInputError(f"{where}: {path}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            _check_size(image, where, max_pixels)
            image.load()
    except InvalidInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInputError(f"{where}: refused as a decompression bomb ({error})") from None
    except UnidentifiedImageError:
        raise InvalidInputError(f"{where}: not an image file PIL can read (PNG, JPEG, WebP, BMP, TIFF, …)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # what PIL raises on bad or truncated data
        raise InvalidInputError(f"{where}: cannot read the image ({type(error).__name__}: {error})") from None
    return image


def _check_size(image, where: str, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels``, before its pixels are decoded."""
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{where}: {width} × {height} pixels ({width * height / 1e6:.0f} MP) is over the limit of "
            f"{max_pixels / 1e6:.0f} MP; downscale the image"
        )


__all__ = ["MAX_IMAGE_PIXELS", "load_image"]
