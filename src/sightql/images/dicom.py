"""DICOM (medical images: X-rays, CT and MR slices) -> an 8-bit Pillow image, through pydicom.

The pixels are shown as a radiologist's viewer would: the Modality LUT (Rescale Slope/Intercept,
e.g. to Hounsfield units), then the VOI LUT or Window Center/Width, then MONOCHROME1 is inverted
(low values are white there). A multi-frame file gives its first frame. Without a VOI the values
are stretched over their own range. Reading a DICOM file runs no code from it: pydicom parses the
data elements, and only uncompressed, RLE or Pillow-readable JPEG pixel data decode without further
plugins (anything else is a per-image error naming the transfer syntax).

pydicom is imported here only; callers check it is installed first (``formats.require_reader``).
"""

from __future__ import annotations

import io
from typing import Any, Callable, NamedTuple

import numpy as np
from PIL import Image

from sightql.errors import ImageDecodeError
from sightql.images.levels import to_uint8, value_range

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


class DicomHeader(NamedTuple):
    width: int
    height: int
    mode: str


def _read(data: bytes, *, pixels: bool) -> Any:
    from pydicom import dcmread

    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
        rows, columns = int(ds.Rows), int(ds.Columns)
    except Exception as exc:  # pydicom raises many kinds on a damaged file
        raise ImageDecodeError(f"not a readable DICOM file: {exc}") from None
    if pixels and "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageDecodeError("the DICOM file holds no image (no Pixel Data element)")
    if rows <= 0 or columns <= 0:
        raise ImageDecodeError(f"the DICOM image is {columns}x{rows} pixels")
    return ds


def dicom_header(data: bytes) -> DicomHeader:
    """Width, height and mode from the data elements, without reading the pixels."""
    ds = _read(data, pixels=False)
    return DicomHeader(int(ds.Columns), int(ds.Rows), _mode(ds))


def _mode(ds: Any) -> str:
    if int(getattr(ds, "SamplesPerPixel", 1)) == 3:
        return "RGB"
    return "I;16" if int(getattr(ds, "BitsAllocated", 8)) > 8 else "L"


def decode_dicom(data: bytes, check_size: Callable[[int, int], None]) -> Image.Image:
    """The first frame as an 8-bit L image (monochrome) or RGB image (colour).

    ``check_size(width, height)`` (the caller's pixel cap) runs on the data elements, before any
    pixel is decoded; the file is parsed once.
    """
    from pydicom.pixels import pixel_array

    ds = _read(data, pixels=True)
    check_size(int(ds.Columns), int(ds.Rows))
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).strip()
    try:
        frame = pixel_array(ds, index=0)  # decodes the first frame only
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown"
        raise ImageDecodeError(f"cannot decode the DICOM pixel data (transfer syntax {name}): {exc}") from None
    if photometric in _MONOCHROME and frame.ndim == 2:
        return Image.fromarray(_monochrome_to_8bit(frame, ds, invert=photometric == "MONOCHROME1"))
    if frame.ndim == 3 and frame.shape[2] == 3:  # RGB, or YBR already converted to RGB by pydicom
        rgb = frame if frame.dtype == np.uint8 else to_uint8(frame, *value_range(frame))
        return Image.fromarray(rgb, "RGB")
    raise ImageDecodeError(
        f"DICOM with Photometric Interpretation {photometric or 'unknown'} is not supported; "
        "SightQL reads MONOCHROME1, MONOCHROME2 and RGB"
    )


def _monochrome_to_8bit(stored: np.ndarray, ds: Any, *, invert: bool) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    try:
        values = apply_modality_lut(stored, ds)
        if ds.get("VOILUTSequence") or (ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None):
            shown = _voi(values, ds)
            # The 8-bit range is what the lowest and highest storable values come out as, so the
            # window's black and white points (or a LUT's end values) become 0 and 255.
            low, high = sorted(float(v) for v in _voi(apply_modality_lut(_storable_ends(ds), ds), ds))
        else:
            shown = values
            low, high = value_range(values)
    except (ValueError, TypeError, KeyError, IndexError, NotImplementedError) as exc:
        raise ImageDecodeError(f"the DICOM rescale or window values cannot be applied: {exc}") from None
    out = to_uint8(shown, low, high)
    return 255 - out if invert else out


def _voi(values: np.ndarray, ds: Any) -> np.ndarray:
    """The VOI LUT (preferred, as pydicom does) or the window, of the first view."""
    from pydicom.pixels import apply_voi_lut

    if ds.get("VOILUTSequence"):  # a LUT is indexed by whole numbers
        values = np.rint(values).astype(np.int64)
    return apply_voi_lut(values, ds, index=0)


def _storable_ends(ds: Any) -> np.ndarray:
    bits = int(ds.BitsStored)
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], dtype=np.int64)
    return np.array([0, 2**bits - 1], dtype=np.int64)
