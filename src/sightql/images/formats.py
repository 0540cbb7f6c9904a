"""Which container the bytes are, from their first bytes, and readers that need the ``formats`` extra.

Pillow reads JPEG, PNG, GIF, WebP, TIFF, BMP and (from 11.3, with libavif) AVIF by itself. HEIC/HEIF
needs pillow-heif and DICOM needs pydicom, both in ``pip install 'sightql[formats]'``; each is
imported the first time such bytes arrive, never at ``import sightql``, and a missing one is a
per-image error naming the extra (the other rows of a query go on).
"""

from __future__ import annotations

import functools
from typing import Literal

from PIL import features

from sightql.errors import ImageDecodeError

Container = Literal["HEIF", "AVIF", "DICOM"]

FORMATS_EXTRA = "pip install 'sightql[formats]'"
# ISO base media brands (the ftyp box) of still and sequence HEIF/HEVC images, and of AVIF.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_FTYP_MAX_BRANDS = 64  # a real ftyp box lists a handful; more is not worth reading


def container_of(data: bytes) -> Container | None:
    """'HEIF', 'AVIF' or 'DICOM' when the bytes are one of those; None for everything else.

    HEIF and AVIF share the ISO base media container: a ``ftyp`` box whose major and compatible
    brands say which. DICOM Part 10 files carry ``DICM`` after a 128-byte preamble.
    """
    if data[128:132] == b"DICM":
        return "DICOM"
    if data[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(data[0:4], "big")
    end = min(box_size if box_size >= 16 else 16, 16 + 4 * _FTYP_MAX_BRANDS, len(data))
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


def require_reader(container: Container | None) -> None:
    """Make sure Pillow (or our DICOM path) can read ``container``; raise naming the extra if not."""
    if container == "HEIF":
        _register_heif()
    elif container == "AVIF":
        _check_avif()
    elif container == "DICOM":
        _check_pydicom()


@functools.cache
def _register_heif() -> None:
    try:
        import pillow_heif
    except ImportError:
        raise ImageDecodeError(f"HEIC needs: {FORMATS_EXTRA}") from None
    # Only the primary image: no thumbnails, depth maps or auxiliary images held in memory.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


@functools.cache
def _check_avif() -> None:
    if not features.check("avif"):
        raise ImageDecodeError(f"AVIF needs a Pillow built with AVIF support: {FORMATS_EXTRA}")


@functools.cache
def _check_pydicom() -> None:
    try:
        import pydicom  # noqa: F401
    except ImportError:
        raise ImageDecodeError(f"DICOM needs: {FORMATS_EXTRA}") from None
