"""Small previews of images: JPEG bytes, or ``data:`` URIs a web page can show without another request."""

from __future__ import annotations

import base64
import io

from sightql.errors import ImageError
from sightql.images.decode import ImageLimits, decode_image

THUMBNAIL_PX = 96


def thumbnail(
    data: bytes | None, limits: ImageLimits = ImageLimits(), size: int = THUMBNAIL_PX, quality: int = 80
) -> bytes | None:
    """A JPEG of at most ``size`` x ``size`` pixels, decoded as classify decodes (EXIF orientation, modes);
    None if ``data`` is no image."""
    try:
        return downscaled_jpeg(data, limits, size, quality)
    except ImageError:
        return None


def downscaled_jpeg(data: bytes | None, limits: ImageLimits, size: int, quality: int = 80) -> bytes:
    """:func:`thumbnail`, raising the ImageError that says why ``data`` is no image (never enlarged)."""
    image = decode_image(data, limits, min_size=size)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def thumbnail_data_uri(data: bytes | None, limits: ImageLimits = ImageLimits(), size: int = THUMBNAIL_PX) -> str | None:
    """:func:`thumbnail` as ``data:image/jpeg;base64,...``; None if ``data`` is no image."""
    jpeg = thumbnail(data, limits, size)
    return None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
