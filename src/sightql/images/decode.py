"""Bytes -> RGB or greyscale Pillow image, with every failure a typed error.

Handles EXIF orientation, grey/palette/alpha/CMYK/16-bit modes and the first
frame of animations. A pixel-count cap is checked from the header, before any
pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from sightql.config import DEFAULT_MAX_IMAGE_PIXELS
from sightql.errors import ImageDecodeError, ImageTooLargeError

# Pillow's own global bomb check is replaced by ours, which is per call and typed.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


class ImageHeader(NamedTuple):
    width: int
    height: int
    format: str
    mode: str


def _open(data: bytes | None, limits: ImageLimits) -> Image.Image:
    if data is None:
        raise ImageDecodeError("no image (the value is NULL)")
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"file is {len(data):,} bytes, over the {limits.max_bytes:,}-byte limit "
            "(raise SIGHTQL_MAX_IMAGE_BYTES to accept it)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image: the bytes match no known image format") from None
    except Exception as exc:  # Pillow raises many kinds on garbage headers
        raise ImageDecodeError(f"not a readable image: {exc}") from None
    pixels = image.width * image.height
    if pixels > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {image.width}x{image.height} = {pixels:,} pixels, over the "
            f"{limits.max_pixels:,}-pixel limit (raise SIGHTQL_MAX_IMAGE_PIXELS to accept it)"
        )
    return image


def probe_image(data: bytes | None, limits: ImageLimits = ImageLimits()) -> ImageHeader:
    """Read only the header: size, format and mode. Cheap; does not decode pixels."""
    image = _open(data, limits)
    return ImageHeader(image.width, image.height, image.format or "UNKNOWN", image.mode)


def _to_rgb_or_l(image: Image.Image, channels: int) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
        mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _to_8bit(image: Image.Image) -> Image.Image:
    import numpy as np

    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return Image.fromarray(((array - low) * scale).astype(np.uint8))


def decode_image(
    data: bytes | None,
    limits: ImageLimits = ImageLimits(),
    *,
    channels: int = 3,
    min_size: int | None = None,
) -> Image.Image:
    """Decode fully into an RGB (or L when ``channels == 1``) image.

    ``min_size`` lets JPEG decoding skip detail the model would throw away
    (``Image.draft``): both sides stay at least ``min_size`` pixels.
    """
    image = _open(data, limits)
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        if min_size and image.format == "JPEG":
            image.draft("RGB" if channels == 3 else "L", (min_size, min_size))
        image.load()
        image = ImageOps.exif_transpose(image, in_place=True) or image  # no copy when upright
        return _to_rgb_or_l(image, channels)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
