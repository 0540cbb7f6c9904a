"""Decoding: modes, EXIF orientation, animations, limits; preprocessing follows the card."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sightql.errors import ImageDecodeError, ImageTooLargeError
from sightql.images.decode import ImageLimits, decode_image, probe_image
from sightql.images.preprocess import preprocess
from sightql.images.spec import InputSpec
from tests import media
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


# ---- sizes after EXIF orientation (read from the header, pixels untouched) ---------------------------


def test_a_phone_photo_reports_the_size_it_is_shown_at(phone_photos_dir):
    data = (phone_photos_dir / "IMG_0000.jpg").read_bytes()
    assert len(data) >= 3_000_000 and Image.open(io.BytesIO(data)).size == media.PHONE_STORED_SIZE
    header = probe_image(data)
    assert (header.width, header.height, header.format) == (3024, 4032, "JPEG")
    assert decode_image(data).size == (3024, 4032)
    assert decode_image(data, min_size=256).size == (378, 504)  # the JPEG draft path still applies


def test_png_orientation_is_read_before_and_after_the_pixel_data(photo):
    before = encode(photo, "PNG", exif=media.phone_exif(6))  # Pillow writes eXIf before IDAT
    after = _move_chunk_to_end(before, b"eXIf")
    for data in (before, after):
        assert probe_image(data)[:2] == (300, 451) == decode_image(data).size


def _move_chunk_to_end(png: bytes, kind: bytes) -> bytes:
    """The PNG with chunk ``kind`` moved after the image data, just before IEND (as some tools write it)."""
    import struct

    chunks, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        chunks.append(png[offset : offset + 12 + length])
        offset += 12 + length
    moved = [c for c in chunks if c[4:8] == kind]
    rest = [c for c in chunks if c[4:8] != kind]
    return png[:8] + b"".join(rest[:-1] + moved + rest[-1:])


# ---- HEIC / AVIF / DICOM ---------------------------------------------------------------------------


def test_heic_and_avif_decode_upright_with_their_format(heic_bytes, avif_bytes):
    for data, fmt in ((heic_bytes, "HEIF"), (avif_bytes, "AVIF")):
        header = probe_image(data)
        assert (header.format, header.width, header.height) == (fmt, 756, 1008)
        image = decode_image(data)
        assert image.mode == "RGB" and image.size == (756, 1008)


def test_dicom_header_and_decode(dicom_bytes):
    assert tuple(probe_image(dicom_bytes)) == (512, 512, "DICOM", "I;16")
    assert decode_image(dicom_bytes).mode == "RGB" and decode_image(dicom_bytes, channels=1).mode == "L"


# Stored values 0, 16, ..., 4080 across 256 columns: column c holds 16c.
GRADIENT = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (4, 1))


def _row(data: bytes) -> np.ndarray:
    return np.asarray(decode_image(data, channels=1))[0].astype(int)


def test_dicom_rescale_then_window_gives_the_viewers_grey_levels():
    # Rescale to HU = stored - 1024, soft-tissue window centre 40 width 400: HU -160..240 is grey,
    # i.e. stored 864..1264 (columns 54..79); below is black, above white.
    windowed = _row(media.dicom_file(GRADIENT, slope=1, intercept=-1024, window=(40, 400)))
    hu = GRADIENT[0].astype(float) - 1024
    expected = np.clip(((hu - 39.5) / 399 + 0.5) * 255, 0, 255)  # DICOM's LINEAR window, PS3.3 C.11.2.1.2
    assert np.abs(windowed - expected).max() <= 1
    assert windowed[:54].max() == 0 and windowed[80:].min() == 255 and 90 < windowed[64] < 115
    # Without the rescale the same window would see stored values 0..4080 as HU and show all but 16 columns white.
    unscaled = _row(media.dicom_file(GRADIENT, slope=None, intercept=None, window=(40, 400)))
    assert (unscaled == 255).sum() > 230 and (windowed == 255).sum() < 180


def test_dicom_without_a_window_is_stretched_and_a_voi_lut_wins_over_the_window():
    plain = _row(media.dicom_file(GRADIENT, slope=None, intercept=None, window=None))
    assert plain[0] == 0 and plain[-1] == 255 and np.all(np.diff(plain) >= 0)
    lut = np.clip((np.arange(4096) - 1000) * 4, 0, 4095)  # black to 1000, white from 2024
    with_lut = _row(media.dicom_file(GRADIENT, slope=None, intercept=None, window=(40, 400), voi_lut=(0, 12, lut)))
    expected = np.clip((GRADIENT[0].astype(int) - 1000) * 4, 0, 4095) * 255 / 4095
    assert np.abs(with_lut - expected).max() <= 1


def test_dicom_monochrome1_is_shown_inverted(dicom_bytes, dicom_monochrome1_bytes):
    mono2 = np.asarray(decode_image(dicom_bytes, channels=1)).astype(int)
    mono1 = np.asarray(decode_image(dicom_monochrome1_bytes, channels=1)).astype(int)
    assert mono2.std() > 30 and np.array_equal(mono1, 255 - mono2)


def test_dicom_multiframe_gives_its_first_frame(dicom_bytes, dicom_multiframe_bytes):
    assert probe_image(dicom_multiframe_bytes)[:2] == (512, 512)
    first = np.asarray(decode_image(dicom_multiframe_bytes))
    assert np.array_equal(first, np.asarray(decode_image(dicom_bytes)))  # not the flat second frame


def test_a_damaged_dicom_is_a_typed_error(dicom_bytes):
    with pytest.raises(ImageDecodeError, match="DICOM"):
        decode_image(dicom_bytes[:400])
    with pytest.raises(ImageTooLargeError, match="pixel limit"):
        probe_image(dicom_bytes, ImageLimits(max_pixels=100_000))
    with pytest.raises(ImageTooLargeError, match="pixel limit"):  # checked before any pixel is decoded
        decode_image(dicom_bytes, ImageLimits(max_pixels=100_000))


MISSING_EXTRA = """
import sys
sys.modules["pillow_heif"] = None  # as if pillow-heif and pydicom were not installed
sys.modules["pydicom"] = None
import sightql
from sightql.errors import ImageDecodeError
from sightql.images.decode import decode_image, probe_image
data = {"heic": open(sys.argv[1], "rb").read(), "dicom": open(sys.argv[2], "rb").read()}
for name, blob in data.items():
    for read in (probe_image, decode_image):
        try:
            read(blob)
        except ImageDecodeError as exc:
            print(name, read.__name__, exc)
with sightql.connect(sys.argv[3]) as s:
    print("sql", s.sql("SELECT image_info(?).error AS e", [data["heic"]]).to_pylist()[0]["e"])
"""


def test_without_the_formats_extra_the_error_names_it(heic_bytes, dicom_bytes, tmp_path):
    import subprocess
    import sys

    (tmp_path / "a.heic").write_bytes(heic_bytes)
    (tmp_path / "a.dcm").write_bytes(dicom_bytes)
    out = subprocess.run(
        [sys.executable, "-c", MISSING_EXTRA, str(tmp_path / "a.heic"), str(tmp_path / "a.dcm"), str(tmp_path / "wh")],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    heic, dicom = "HEIC needs: pip install 'sightql[formats]'", "DICOM needs: pip install 'sightql[formats]'"
    assert out == [f"heic probe_image {heic}", f"heic decode_image {heic}", f"dicom probe_image {dicom}",
                   f"dicom decode_image {dicom}", f"sql {heic}"]


def test_training_and_inference_transforms_come_from_one_factory(photo):
    from sightql.images.preprocess import create_transform

    data = encode(photo, "JPEG")
    spec = InputSpec(height=64, width=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    served = preprocess(data, spec)
    evaluation = create_transform(spec, is_training=False, augment="standard")  # evaluation never augments
    assert np.array_equal(evaluation(data, np.random.default_rng(1)), served)
    assert np.array_equal(create_transform(spec, is_training=True)(data), served)  # no preset: the same pixels
    train = create_transform(spec, is_training=True, augment="standard")
    first = train(data, np.random.default_rng([0, 0, 7]))
    assert first.shape == served.shape and first.dtype == served.dtype
    assert np.array_equal(first, train(data, np.random.default_rng([0, 0, 7])))  # seeded: reproducible
    assert not np.array_equal(first, served)  # augmentation added on top of the shared preprocessing
