"""Encoded images -> a model-ready float batch on a torch device: the GPU path's preprocessing.

Plain JPEGs are decoded by ``torchvision.io.decode_jpeg`` in one batched call on the device
(nvJPEG on CUDA, libjpeg on the CPU); every other image takes SightQL's CPU path
(:func:`sightql.images.preprocess.preprocess`), so EXIF orientation, modes, formats, limits and
error messages stay exactly as elsewhere. That covers PNG, HEIC, AVIF, DICOM, MPO, CMYK and
greyscale JPEGs, JPEGs with an EXIF (or XMP) orientation other than 1, truncated JPEGs (no
end-of-image marker: decoders differ on those), images over the limits,
cards asking for Lanczos (torch has no such resize), and anything ``decode_jpeg`` refuses; bytes
no decoder reads give that row an error and the others go on.

The device-decoded images are then resized, cropped or letterboxed and normalised with torch
ops on the device, following the card's :class:`~sightql.images.spec.InputSpec` the same way as
:mod:`sightql.images.preprocess`: antialiased bilinear or bicubic, the resized pixels rounded to
8-bit levels as Pillow's are, then ``pixel * (scale / std) - mean / std``. Images of one size share one resize call.

How close it is to the CPU path (tests/test_gpu_path.py checks it): the resize follows Pillow's
two passes (across, rounded to 8 bits, then down), so on JPEGs both decode at full size the inputs
agree to one 8-bit level (0.0078 after the bundled card's std of 0.5), and over 99% of the
values are equal (mean difference under 6e-5; measured on the sample photos and on
generated 500x375 photos, bilinear and bicubic, every resize mode, one and three channels).
Larger JPEGs differ more: the CPU path decodes them at 1/2, 1/4 or 1/8 scale in libjpeg (Pillow's
``draft``, whenever both sides stay at least the resize target), the device decodes at full size
and takes the mean of each 2x2, 4x4 or 8x8 block, which is close to libjpeg's scaled IDCT but not
equal: a mean difference of 0.001 to 0.004, a 99th percentile of 5 levels and a few edge pixels up
to 0.19 (24 levels; the 512x512 astronaut photo, decoded at 1/2 by the CPU path). On CUDA nvJPEG's
IDCT and chroma upsampling are not libjpeg-turbo's either, which may add a level or two (the
``gpu`` tests bound it).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from sightql.errors import SightQLError
from sightql.images.decode import ImageLimits
from sightql.images.preprocess import preprocess, resize_target
from sightql.images.spec import InputSpec

_ORIENTATION_TAG = 0x0112
_JPEG_START = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"  # EOI, after which only zero padding is expected
# Torch's antialiased resizes that match Pillow's; nearest (sample positions off by one at times) and
# Lanczos (not in torch) take the CPU path.
_TORCH_MODES = ("bilinear", "bicubic")
# Device memory stays bounded whatever the batch and photo sizes: JPEGs are decoded a few hundred
# megapixels at a time (768 MB as 8-bit RGB), and resized 64 megapixels per call (768 MB as float32).
DECODE_PIXELS = 256 * 1024 * 1024
RESIZE_PIXELS = 64 * 1024 * 1024

# torchvision 0.29 deprecates its image codecs in favour of TorchCodec (not a dependency yet); the
# warning would come once per batch, so it is silenced for that message from that module only.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning,
    module=r"torchvision\.io\.image",
)

Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


def device_decodable(data: bytes | None, spec: InputSpec, limits: ImageLimits = ImageLimits()) -> tuple[int, int] | None:
    """``(height, width)`` of a JPEG that ``decode_jpeg`` can decode as the CPU path would, else None.

    Reads only the header (Pillow, no pixels): a baseline or progressive YCbCr JPEG that ends with its
    end-of-image marker, upright (EXIF orientation 1), within ``limits``, for a card whose
    interpolation torch has.
    """
    if spec.interpolation not in _TORCH_MODES or not data or len(data) > limits.max_bytes:
        return None
    if not data.startswith(_JPEG_START) or not data[-64:].rstrip(b"\x00").endswith(_JPEG_END):
        return None  # a truncated JPEG: Pillow says so, whatever nvJPEG would make of it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            if image.format != "JPEG" or image.mode != "RGB":  # MPO, CMYK, greyscale: the CPU path
                return None
            if image.getexif().get(_ORIENTATION_TAG, 1) != 1:
                return None
    except Exception:  # a header Pillow cannot read: the CPU path says why
        return None
    width, height = image.size
    if width * height > limits.max_pixels:
        return None
    return height, width


def cpu_prepared(data: bytes | None, spec: InputSpec, limits: ImageLimits) -> np.ndarray | str:
    """SightQL's CPU preprocessing of one image, or one sentence saying why it cannot be read."""
    try:
        return preprocess(data, spec, limits)
    except SightQLError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must still only cost this row
        return f"cannot read image: {type(exc).__name__}: {exc}"


def preprocess_encoded(
    images: Sequence[bytes | None],
    spec: InputSpec,
    device: str = "cpu",
    limits: ImageLimits = ImageLimits(),
    cpu_map: Mapper = map,
) -> tuple[Any, list[str | None]]:
    """A float32 batch shaped ``spec.shape(len(images))`` on ``device``, and each row's error (None when read).

    A row with an error holds zeros. ``cpu_map`` runs the CPU path over the images that take it
    (a thread pool's ``map`` spreads them over cores; Pillow releases the GIL).
    """
    import torch

    count = len(images)
    out = torch.zeros(spec.shape(count), dtype=torch.float32, device=device)
    errors: list[str | None] = [None] * count
    sizes = {i: size for i, data in enumerate(images) if (size := device_decodable(data, spec, limits)) is not None}
    on_device: set[int] = set()
    for rows in _by_pixels(list(sizes), sizes, DECODE_PIXELS):
        decoded = _decode_on_device(images, {row: sizes[row] for row in rows}, spec.channels, device)
        on_device.update(decoded)
        for indices, pixels in _same_size_groups(decoded):
            out[indices] = pixels_to_input(pixels, spec)
        del decoded
    on_cpu = [i for i in range(count) if i not in on_device]
    read: list[int] = []
    arrays: list[np.ndarray] = []
    for i, prepared in zip(on_cpu, cpu_map(lambda i: cpu_prepared(images[i], spec, limits), on_cpu)):
        if isinstance(prepared, str):
            errors[i] = prepared
        else:
            read.append(i)
            arrays.append(prepared)
    if arrays:  # one copy to the device for all the CPU-prepared rows
        out[read] = torch.from_numpy(np.stack(arrays)).to(device)
    return out, errors


def _by_pixels(rows: list[int], sizes: dict[int, tuple[int, int]], budget: int) -> Iterator[list[int]]:
    """``rows`` in order, in runs of at most ``budget`` pixels (a larger image alone)."""
    run: list[int] = []
    total = 0
    for row in rows:
        pixels = sizes[row][0] * sizes[row][1]
        if run and total + pixels > budget:
            yield run
            run, total = [], 0
        run.append(row)
        total += pixels
    if run:
        yield run


def _decode_on_device(
    images: Sequence[bytes | None], sizes: dict[int, tuple[int, int]], channels: int, device: str
) -> dict[int, Any]:
    """``{row: uint8 CHW tensor on device}`` for the JPEGs decode_jpeg reads; the rest take the CPU path.

    One batched call; when it fails (one bad JPEG fails the batch), each image is tried alone. A
    result whose size is not the header's is refused too (the CPU path decides those).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    if not sizes:
        return {}
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    rows = list(sizes)
    encoded = [_byte_tensor(images[i]) for i in rows]  # type: ignore[arg-type]
    try:
        results: list[Any] = list(decode_jpeg(encoded, mode=mode, device=device))
    except RuntimeError:
        results = []
        for tensor in encoded:
            try:
                results.append(decode_jpeg(tensor, mode=mode, device=device))
            except RuntimeError:
                results.append(None)
    return {
        row: pixels
        for row, pixels in zip(rows, results)
        if pixels is not None and tuple(pixels.shape) == (channels, *sizes[row])
    }


def _byte_tensor(data: bytes) -> Any:
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)  # a writable copy: torch warns on read-only buffers


def _same_size_groups(decoded: dict[int, Any]) -> list[tuple[list[int], Any]]:
    """The decoded images grouped by size, at most :data:`RESIZE_PIXELS` to a group: (rows, uint8 batch
    NCHW), so each size is resized in few calls and the float copies stay a bounded size."""
    import torch

    groups: dict[tuple[int, ...], list[int]] = {}
    for row, pixels in decoded.items():
        groups.setdefault(tuple(pixels.shape), []).append(row)
    out = []
    for shape, rows in groups.items():
        most = max(1, RESIZE_PIXELS // (shape[1] * shape[2]))
        for first in range(0, len(rows), most):
            part = rows[first : first + most]
            out.append((part, torch.stack([decoded[row] for row in part])))
    return out


def pixels_to_input(pixels: Any, spec: InputSpec) -> Any:
    """uint8 NCHW pixels (one size) -> float32 model input in the spec's layout, on their device."""
    drafted = _as_drafted(pixels.float(), spec)
    height, width = drafted.shape[2:]
    resized = _resize_and_crop(drafted, width, height, spec)
    out = _normalised(resized, spec)
    if spec.resize == "pad":
        out = _centred_in_box(out, spec)
    return out.permute(0, 2, 3, 1).contiguous() if spec.layout == "NHWC" else out


def draft_scale(width: int, height: int, spec: InputSpec) -> int:
    """1, 2, 4 or 8: the scale the CPU path decodes a JPEG this size at (Pillow's ``draft``, as ``Transform.decode``
    asks for it: both sides stay at least the shorter side's resize target, or the box's longer side)."""
    min_size = max(spec.width, spec.height) if spec.resize in ("squash", "pad") else resize_target(spec)
    fits = min(width // min_size, height // min_size)
    return next(scale for scale in (8, 4, 2, 1) if fits >= scale)


def _as_drafted(pixels: Any, spec: InputSpec) -> Any:
    """The full-size decode brought to the CPU path's draft size: the mean of each scale x scale block,
    rounded to 8 bits, approximates libjpeg's scaled DCT decode (sides rounded up, as libjpeg's)."""
    import torch.nn.functional as F

    scale = draft_scale(pixels.shape[3], pixels.shape[2], spec)
    if scale == 1:
        return pixels
    return F.avg_pool2d(pixels, scale, ceil_mode=True).round_()


def _resize_and_crop(pixels: Any, width: int, height: int, spec: InputSpec) -> Any:
    """As :mod:`sightql.images.preprocess` does with Pillow: the same sizes, crop and filter, rounded to 8 bits."""
    if spec.resize == "squash":
        return _resized(pixels, spec.width, spec.height, spec)
    if spec.resize == "pad":
        return _resized(pixels, *letterbox_size(width, height, spec), spec)
    target = resize_target(spec)
    scale = target / min(width, height)
    new_w, new_h = max(spec.width, round(width * scale)), max(spec.height, round(height * scale))
    left, top = (new_w - spec.width) // 2, (new_h - spec.height) // 2
    # Pillow resamples only the crop's source box; the sample positions are the same as resizing all, then cropping.
    return _resized(pixels, new_w, new_h, spec)[:, :, top : top + spec.height, left : left + spec.width]


def letterbox_size(width: int, height: int, spec: InputSpec) -> tuple[int, int]:
    """The size that fits the longer side into the spec's box, keeping the aspect ratio (as the CPU path's)."""
    scale = min(spec.width / width, spec.height / height)
    return max(1, min(spec.width, round(width * scale))), max(1, min(spec.height, round(height * scale)))


def _resized(pixels: Any, width: int, height: int, spec: InputSpec) -> Any:
    """Pillow's two passes: across (to ``width``), rounded and clipped to 8 bits, then down (to ``height``)."""
    import torch.nn.functional as F

    if width != pixels.shape[3]:
        pixels = F.interpolate(pixels, size=(pixels.shape[2], width), mode=spec.interpolation, align_corners=False,
                               antialias=True).round_().clamp_(0, 255)
    if height != pixels.shape[2]:
        pixels = F.interpolate(pixels, size=(height, width), mode=spec.interpolation, align_corners=False,
                               antialias=True).round_().clamp_(0, 255)
    return pixels


def _normalised(pixels: Any, spec: InputSpec) -> Any:
    """``pixel * (scale / std) - mean / std`` per channel, as the CPU path computes it."""
    import torch

    std = torch.tensor(spec.std, dtype=torch.float32, device=pixels.device)
    gain = (torch.tensor(spec.scale, dtype=torch.float32, device=pixels.device) / std).view(1, -1, 1, 1)
    offset = (torch.tensor(spec.mean, dtype=torch.float32, device=pixels.device) / std).view(1, -1, 1, 1)
    return pixels * gain - offset


def _centred_in_box(fitted: Any, spec: InputSpec) -> Any:
    """The letterboxed images in the middle of a box of zeros (the mean colour after normalising)."""
    import torch

    height, width = fitted.shape[2:]
    top, left = (spec.height - height) // 2, (spec.width - width) // 2
    box = torch.zeros((fitted.shape[0], spec.channels, spec.height, spec.width), dtype=fitted.dtype, device=fitted.device)
    box[:, :, top : top + height, left : left + width] = fitted
    return box

