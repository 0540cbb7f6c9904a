"""Decoding: modes, EXIF orientation, animations, limits; preprocessing follows the card."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sightql.errors import ImageDecodeError, ImageTooLargeError
from sightql.images.decode import ImageLimits, decode_image, probe_image
from sightql.images.preprocess import preprocess
from sightql.models.card import InputSpec
from tests.conftest import encode


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.chelsea())  # 451x300 RGB


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = encode(photo, "JPEG", exif=exif.tobytes())
    assert decode_image(data).size == (300, 451)


@pytest.mark.parametrize(
    "mode_image",
    [
        lambda p: p.convert("L"),
        lambda p: p.convert("P"),
        lambda p: p.convert("RGBA"),
        lambda p: p.convert("LA"),
        lambda p: p.convert("1"),
        lambda p: Image.fromarray(np.asarray(p.convert("L"), dtype=np.uint16) * 257),
    ],
    ids=["grey", "palette", "rgba", "grey-alpha", "1-bit", "16-bit"],
)
def test_every_mode_becomes_rgb(photo, mode_image):
    image = decode_image(encode(mode_image(photo), "PNG"))
    assert image.mode == "RGB" and image.size == (451, 300)


def test_cmyk_jpeg_and_palette_transparency(photo):
    assert decode_image(encode(photo.convert("CMYK"), "JPEG")).mode == "RGB"
    palette = photo.convert("P")
    assert decode_image(encode(palette, "PNG", transparency=0)).mode == "RGB"


def test_sixteen_bit_keeps_its_contrast(photo):
    grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    decoded = np.asarray(decode_image(encode(Image.fromarray(grey), "PNG")).convert("L"))
    assert decoded.max() > 200 and decoded.min() < 60


def test_animation_gives_its_first_frame(photo):
    frames = [photo.convert("RGB"), Image.new("RGB", photo.size, (255, 0, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    first = np.asarray(decode_image(data))
    assert not (first[..., 0] > 250).all()  # not the solid red second frame


def test_pixel_cap_refuses_a_decompression_bomb_before_decoding():
    big = encode(Image.new("L", (4000, 4000)), "PNG")  # 16 Mpx of zeros: a tiny file
    assert len(big) < 100_000
    with pytest.raises(ImageTooLargeError, match="pixel limit"):
        decode_image(big, ImageLimits(max_pixels=10_000_000))
    with pytest.raises(ImageTooLargeError, match="byte limit"):
        probe_image(big, ImageLimits(max_bytes=1000))


@pytest.mark.parametrize("data", [b"", b"GIF89a garbage", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, None])
def test_garbage_is_a_typed_error(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_preprocessing_follows_the_card(photo):
    data = encode(photo, "PNG")
    nchw = preprocess(data, InputSpec(height=64, width=48, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert nchw.shape == (3, 64, 48) and nchw.dtype == np.float32
    assert -1.0 <= nchw.min() and nchw.max() <= 1.0
    keras_like = InputSpec(height=200, width=200, mean=(0, 0, 0), std=(1, 1, 1), resize="squash", layout="NHWC")
    nhwc = preprocess(data, keras_like)
    assert nhwc.shape == (200, 200, 3) and 0.0 <= nhwc.min() and nhwc.max() <= 1.0
    grey = preprocess(data, InputSpec(height=28, width=28, channels=1, mean=(0.0,), std=(1.0,)))
    assert grey.shape == (1, 28, 28)
