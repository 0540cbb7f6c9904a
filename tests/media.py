"""Test media people really have, generated here (no downloads): phone photos, HEIC, AVIF, DICOM.

- ``phone_photo(i)``: a 12-megapixel JPEG as a phone writes it: 4032x3024 pixels stored sideways
  with EXIF orientation 6 (shown upright as 3024x4032), quality 92, 3-4 MB. The content is a real
  photo (scikit-image's samples) upscaled, plus per-pixel sensor-like noise so the JPEG is as large
  as a real one. Each index gives different bytes (base photo, mirroring, noise offset).
- ``heic_photo()``: an iPhone-style HEIC (brands heic/mif1, EXIF orientation 6, rotation box).
- ``avif_photo()``: an AVIF with EXIF orientation 6 (Pillow writes AVIF natively).
- ``dicom_file(...)``: a DICOM image, 12-bit MONOCHROME2 with rescale slope/intercept and a
  window by default; MONOCHROME1, several frames, a VOI LUT or other stored values on request.

Everything is numpy and the codecs, so the 20 phone photos take about 3 s on one core.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

PHONE_STORED_SIZE = (4032, 3024)  # width, height as stored; shown rotated to 3024x4032
PHONE_SHOWN_SIZE = (3024, 4032)
PHONE_BASES = ("chelsea", "coffee", "astronaut", "rocket")
ORIENTATION_TAG = 0x0112
_NOISE = 11  # +-11 levels of per-pixel noise: 3.3-3.9 MB per photo at quality 92
_NOISE_PAD = 64


def phone_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    exif[0x010F] = "SightQL"  # Make
    exif[0x0110] = "Test Phone"  # Model
    return exif.tobytes()


def sideways(name: str, size: tuple[int, int]) -> np.ndarray:
    """A scikit-image sample cropped to a portrait 3:4 and stored as a phone's sideways sensor does:
    turned a quarter to the left and ``size`` (landscape), so EXIF orientation 6 shows it upright."""
    import skimage.data

    array = getattr(skimage.data, name)()
    height, width = array.shape[:2]
    crop_w = min(width, height * 3 // 4)
    crop_h = crop_w * 4 // 3
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    stored = np.ascontiguousarray(np.rot90(array[top : top + crop_h, left : left + crop_w]))
    return np.asarray(Image.fromarray(stored).resize(size, Image.Resampling.BILINEAR))


@lru_cache(maxsize=None)
def _stored_base(name: str) -> np.ndarray:
    """The phone-size sideways photo, its range squeezed to leave room for the noise (no clipping needed)."""
    big = sideways(name, PHONE_STORED_SIZE)
    return (big.astype(np.uint16) * (255 - 2 * _NOISE) // 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _noise_field() -> np.ndarray:
    width, height = PHONE_STORED_SIZE
    rng = np.random.default_rng(2024)
    return rng.integers(0, 2 * _NOISE + 1, size=(height + _NOISE_PAD, width + _NOISE_PAD, 3), dtype=np.uint8)


def phone_photo(index: int = 0) -> bytes:
    """The ``index``-th phone photo: JPEG bytes, 4032x3024 stored, EXIF orientation 6, >= 3 MB."""
    base = _stored_base(PHONE_BASES[index % len(PHONE_BASES)])
    if (index // len(PHONE_BASES)) % 2:
        base = base[::-1]  # mirrored top to bottom (left to right once shown upright)
    width, height = PHONE_STORED_SIZE
    dy, dx = (index * 7) % _NOISE_PAD, (index * 13) % _NOISE_PAD
    pixels = np.add(base, _noise_field()[dy : dy + height, dx : dx + width])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92, exif=phone_exif(6))
    return buffer.getvalue()


def write_phone_photos(folder: Path, count: int = 20) -> list[Path]:
    """``count`` phone photos as ``IMG_0000.jpg`` ... in ``folder`` (numpy and the encoder release the GIL)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHONE_BASES:  # fill the caches once, before the threads share them
        _stored_base(name)
    _noise_field()

    def write(index: int) -> Path:
        path = folder / f"IMG_{index:04d}.jpg"
        path.write_bytes(phone_photo(index))
        return path

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(write, range(count)))


def heic_photo(size: tuple[int, int] = (1008, 756), orientation: int = 6) -> bytes:
    """An iPhone-style HEIC of the cat photo: brands heic/mif1, stored sideways at ``size`` with EXIF
    orientation 6, which pillow-heif writes as the HEIF rotation box; readers apply it, so the file
    opens upright (756x1008 by default) with orientation 1 left in its EXIF, as an iPhone's does."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.fromarray(sideways("chelsea", size)).save(
        buffer, "HEIF", quality=80, exif=phone_exif(orientation), enc_params={"preset": "ultrafast"}
    )
    return buffer.getvalue()


def avif_photo(size: tuple[int, int] = (1008, 756), orientation: int = 6) -> bytes:
    """An AVIF of the coffee photo stored sideways at ``size`` with EXIF orientation 6 (shown 756x1008)."""
    buffer = io.BytesIO()
    Image.fromarray(sideways("coffee", size)).save(buffer, "AVIF", quality=75, speed=10, exif=phone_exif(orientation))
    return buffer.getvalue()


def camera_12bit() -> np.ndarray:
    """scikit-image's camera photo (512x512) as 12-bit stored values, 0..4080."""
    import skimage.data

    return skimage.data.camera().astype(np.uint16) * 16


def dicom_file(
    frames: np.ndarray | None = None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    slope: float | None = 1.0,
    intercept: float | None = -1024.0,
    window: tuple[float, float] | None = (1024.0, 4096.0),
    voi_lut: tuple[int, int, np.ndarray] | None = None,
) -> bytes:
    """A DICOM Part 10 file (explicit VR little endian, uncompressed) holding ``frames``.

    ``frames`` is one 2-D array of stored values or a stack ``(n, rows, cols)`` for a multi-frame
    file (default: the camera photo in 12 bits). ``slope``/``intercept`` are Rescale Slope and
    Intercept (None leaves them out); ``window`` is (Window Center, Window Width); ``voi_lut`` is a
    VOI LUT Sequence item (first mapped value, bits per entry, LUT data).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    stack = camera_12bit() if frames is None else np.asarray(frames)
    if stack.ndim == 2:
        stack = stack[None]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "SIGHTQL-TEST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(stack.shape[1]), int(stack.shape[2])
    if len(stack) > 1:
        ds.NumberOfFrames = len(stack)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if slope is not None and intercept is not None:
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleType = "HU"
    if window is not None:
        ds.WindowCenter = f"{window[0]:g}"
        ds.WindowWidth = f"{window[1]:g}"
    if voi_lut is not None:
        first, bits, data = voi_lut
        item = Dataset()
        item.add_new(0x00283002, "US", [len(data), first, bits])  # LUT Descriptor
        item.add_new(0x00283006, "US", [int(v) for v in data])  # LUT Data
        ds.VOILUTSequence = Sequence([item])
    ds.PixelData = stack.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
