"""Bytes -> RGB or greyscale Pillow image, with every failure a typed error.

Handles EXIF orientation, grey/palette/alpha/CMYK/16-bit modes, the first frame of animations,
HEIC/HEIF and AVIF (through Pillow plugins) and DICOM (through pydicom). A pixel-count cap is
checked from the header, before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from sightql.config import DEFAULT_MAX_IMAGE_PIXELS
from sightql.errors import ImageDecodeError, ImageTooLargeError
from sightql.images.dicom import decode_dicom, dicom_header
from sightql.images.formats import Container, container_of, require_reader
from sightql.images.levels import to_uint8, value_range

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


def _checked(data: bytes | None, limits: ImageLimits) -> tuple[bytes, Container | None]:
    """The byte checks, then which container needs a reader of its own (None: Pillow's usual formats)."""
    if data is None:
        raise ImageDecodeError("no image (the value is NULL)")
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"file is {len(data):,} bytes, over the {limits.max_bytes:,}-byte limit "
            "(raise SIGHTQL_MAX_IMAGE_BYTES to accept it)"
        )
    container = container_of(data)
    require_reader(container)
    return data, container


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image: the bytes match no known image format") from None
    except Exception as exc:  # Pillow raises many kinds on garbage headers
        raise ImageDecodeError(f"not a readable image: {exc}") from None
    _check_pixels(image.width, image.height, limits)
    return image


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    pixels = width * height
    if pixels > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {pixels:,} pixels, over the "
            f"{limits.max_pixels:,}-pixel limit (raise SIGHTQL_MAX_IMAGE_PIXELS to accept it)"
        )


def _dicom_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    header = dicom_header(data)
    _check_pixels(header.width, header.height, limits)
    return ImageHeader(header.width, header.height, "DICOM", header.mode)


def probe_image(data: bytes | None, limits: ImageLimits = ImageLimits()) -> ImageHeader:
    """Read only the header: size, format and mode. Cheap; does not decode pixels.

    The size is the one :func:`decode_image` gives, i.e. after EXIF orientation: a phone photo
    stored 4032x3024 with orientation 6 (shown turned a quarter) is 3024x4032.
    """
    data, container = _checked(data, limits)
    if container == "DICOM":
        return _dicom_header(data, limits)
    image = _open(data, limits)
    width, height = image.size
    if _orientation(image, data) in _TURNED:
        width, height = height, width
    return ImageHeader(width, height, image.format or "UNKNOWN", image.mode)


_ORIENTATION_TAG = 0x0112
_TURNED = (5, 6, 7, 8)  # orientations that swap width and height


def _orientation(image: Image.Image, data: bytes) -> int:
    """The EXIF (or XMP) orientation that ``ImageOps.exif_transpose`` will apply, read without decoding.

    Pillow reads a PNG's metadata after the pixel data only by decoding the pixels, so an ``eXIf``
    chunk there is found by walking the chunk headers instead.
    """
    if image.format == "PNG" and "exif" not in image.info:
        trailing = _png_exif_chunk(data)
        if trailing is not None:
            image.info["exif"] = trailing
        # The base class reads what is already in ``info`` (PNG's own getexif would decode the pixels).
        return Image.Image.getexif(image).get(_ORIENTATION_TAG, 1)
    return image.getexif().get(_ORIENTATION_TAG, 1)


def _png_exif_chunk(data: bytes) -> bytes | None:
    offset = 8  # after the signature; each chunk: length, type, data, CRC
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind == b"eXIf":
            return data[offset + 8 : offset + 8 + length]
        if kind == b"IEND":
            return None
        offset += 12 + length
    return None


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
    array = np.asarray(image, dtype=np.float64)
    return Image.fromarray(to_uint8(array, *value_range(array)))


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
    data, container = _checked(data, limits)
    if container == "DICOM":
        image = decode_dicom(data, lambda width, height: _check_pixels(width, height, limits))
        return _to_rgb_or_l(image, channels)
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
