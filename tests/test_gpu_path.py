"""The GPU path: JPEGs decoded and preprocessed by torch on the device, the fp16 torch predictor, the engine's hook.

The same code runs on the CPU here (torchvision's libjpeg decode, float32 model); the ``gpu`` tests
repeat the checks on CUDA (nvJPEG, fp16) where a GPU is present.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sightql.engine import predict_rows, prepare_image
from sightql.images.decode import ImageLimits
from sightql.images.preprocess import preprocess
from sightql.images.spec import InputSpec
from sightql.images import tensor_preprocess
from sightql.images.tensor_preprocess import cpu_prepared, device_decodable, draft_scale, preprocess_encoded
from sightql.models.builtin import imagenet_card, imagenet_torch_module
from sightql.models.torch.gpu import TorchGpuPredictor
from sightql.models.torch.runtime import TorchPredictor
from tests import media

# torchvision 0.29 deprecates its image codecs (TorchCodec takes over); the GPU path uses decode_jpeg as it is.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")

PHOTOS = ("astronaut.jpg", "chelsea.jpg", "china.jpg", "coffee.jpg", "flower.jpg", "rocket.jpg")
CARD_SPEC = imagenet_card().input  # 224x224, bilinear, shorter side to 256 then centre crop, mean = std = 0.5
LEVEL = 1 / 255 / 0.5  # one 8-bit level after the card's normalising


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo_jpegs(photos_dir) -> list[bytes]:
    """The real sample photos (cat, coffee, astronaut, rocket, china, flower) as JPEG bytes, 451x300 to 640x427."""
    return [(photos_dir / name).read_bytes() for name in PHOTOS]


@pytest.fixture(scope="module")
def large_jpeg(photos_dir) -> bytes:
    """A 2000x1500 JPEG without EXIF: the CPU path decodes it at 1/4 scale (Pillow's draft)."""
    return _jpeg(Image.open(photos_dir / "chelsea.jpg").convert("RGB").resize((2000, 1500), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def cpu_predictor() -> TorchGpuPredictor:
    """The GPU predictor's code on the CPU, handed bytes by the engine as it would be on CUDA."""
    return TorchGpuPredictor(imagenet_torch_module(), imagenet_card(), "cpu", fp16=True, batch_size=4, takes_encoded=True)


def _cpu_batch(images: list[bytes], spec: InputSpec = CARD_SPEC) -> np.ndarray:
    return np.stack([preprocess(data, spec) for data in images])


# ---- the preprocessing, on the CPU ------------------------------------------------------------
def test_device_decode_matches_the_cpu_path_on_photos(photo_jpegs):
    assert len(photo_jpegs) == 6
    assert all(device_decodable(data, CARD_SPEC) is not None for data in photo_jpegs)  # not the fallback
    batch, errors = preprocess_encoded(photo_jpegs, CARD_SPEC, "cpu")
    assert errors == [None] * 6
    assert tuple(batch.shape) == CARD_SPEC.shape(6) and str(batch.dtype) == "torch.float32"
    difference = np.abs(batch.numpy() - _cpu_batch(photo_jpegs))
    # Decoded at full size by both (451x300 to 640x427): Pillow rounds between its two resize passes,
    # torch does not; a level at most.
    assert difference[1:].max() <= LEVEL + 1e-6
    assert difference[1:].mean() < 0.02 * LEVEL  # all but a few pixels in thousands are equal


@pytest.mark.parametrize("which", ["astronaut", "large"])
def test_jpegs_the_cpu_path_decodes_at_a_smaller_scale_are_brought_to_that_size(photo_jpegs, large_jpeg, which):
    data, size, scale = (photo_jpegs[0], (512, 512), 2) if which == "astronaut" else (large_jpeg, (1500, 2000), 4)
    assert device_decodable(data, CARD_SPEC) == size
    assert draft_scale(size[1], size[0], CARD_SPEC) == scale  # Pillow's draft decodes at 1/scale in libjpeg
    batch, errors = preprocess_encoded([data], CARD_SPEC, "cpu")
    difference = np.abs(batch.numpy() - _cpu_batch([data]))
    assert errors == [None]
    # Block means approximate libjpeg's scaled IDCT: most pixels within a level, a few edges further off.
    assert difference.mean() < 0.005 and difference.max() < 0.25
    assert np.quantile(difference, 0.99) <= 6 * LEVEL + 1e-6


@pytest.mark.parametrize("spec", [
    InputSpec(resize="squash"),
    InputSpec(resize="pad", layout="NHWC"),
    InputSpec(interpolation="bicubic", height=160, width=192, crop_pct=0.75),
    InputSpec(channels=1, mean=(0.5,), std=(0.25,)),
], ids=["squash", "pad-nhwc", "bicubic-crop", "grey"])
def test_every_resize_layout_and_channel_count_follows_the_card(photo_jpegs, spec):
    images = photo_jpegs[1:4]  # chelsea, china, coffee: decoded at full size by both paths
    assert all(draft_scale(w, h, spec) == 1 for w, h in ((451, 300), (640, 427), (600, 400)))
    batch, errors = preprocess_encoded(images, spec, "cpu")
    expected = _cpu_batch(images, spec)
    assert errors == [None] * 3 and tuple(batch.shape) == expected.shape
    level = max(spec.scale / s for s in spec.std)
    tolerance = level
    assert np.abs(batch.numpy() - expected).max() <= tolerance + 1e-6
    assert np.abs(batch.numpy() - expected).mean() < 0.02 * level


def test_decoding_and_resizing_in_bounded_runs_gives_the_same_batch(photo_jpegs, monkeypatch):
    whole, _ = preprocess_encoded(photo_jpegs, CARD_SPEC, "cpu")
    monkeypatch.setattr(tensor_preprocess, "DECODE_PIXELS", 300_000)  # one or two photos per decode call
    monkeypatch.setattr(tensor_preprocess, "RESIZE_PIXELS", 1)  # one image per resize call
    runs, errors = preprocess_encoded(photo_jpegs + photo_jpegs[1:2], CARD_SPEC, "cpu")
    assert errors == [None] * 7
    assert np.array_equal(runs.numpy()[:6], whole.numpy()) and np.array_equal(runs.numpy()[6], whole.numpy()[1])


def test_phone_photos_turned_by_exif_take_the_cpu_path():
    phone = media.phone_photo(0)  # 4032x3024 stored, EXIF orientation 6
    assert device_decodable(phone, CARD_SPEC) is None
    batch, errors = preprocess_encoded([phone], CARD_SPEC, "cpu")
    assert errors == [None]
    np.testing.assert_array_equal(batch.numpy()[0], preprocess(phone, CARD_SPEC))


def test_png_cmyk_greyscale_and_mpo_take_the_cpu_path(photos_dir, photo_jpegs):
    cat = Image.open(photos_dir / "chelsea.jpg").convert("RGB")
    png = io.BytesIO()
    cat.save(png, "PNG")
    others = [png.getvalue(), _jpeg(cat.convert("CMYK")), _jpeg(cat.convert("L")), (photos_dir / "camera.png").read_bytes()]
    assert [device_decodable(data, CARD_SPEC) for data in others] == [None] * 4
    images = others + photo_jpegs[1:3]
    batch, errors = preprocess_encoded(images, CARD_SPEC, "cpu")
    assert errors == [None] * 6
    np.testing.assert_array_equal(batch.numpy()[:4], _cpu_batch(others))  # exactly the CPU path
    assert np.abs(batch.numpy()[4:] - _cpu_batch(photo_jpegs[1:3])).max() <= LEVEL + 1e-6


def _bad_huffman_table(data: bytes) -> bytes:
    """The JPEG with its first Huffman table overwritten: the header reads, no decoder can decode it."""
    at = data.index(b"\xff\xc4")
    return data[: at + 5] + b"\xff" * 20 + data[at + 25 :]


def test_a_bad_image_gives_its_row_an_error_and_the_others_go_on(photo_jpegs):
    truncated = photo_jpegs[0][: len(photo_jpegs[0]) // 3]
    broken = _bad_huffman_table(photo_jpegs[3])
    assert device_decodable(truncated, CARD_SPEC) is None  # no end-of-image marker: Pillow decides
    assert device_decodable(broken, CARD_SPEC) is not None  # the header reads: decode_jpeg must fail it
    images = [photo_jpegs[1], truncated, broken, b"not an image", None, b"", photo_jpegs[2]]
    batch, errors = preprocess_encoded(images, CARD_SPEC, "cpu")
    assert errors[0] is None and errors[6] is None
    assert errors[1:6] == [cpu_prepared(data, CARD_SPEC, ImageLimits()) for data in images[1:6]]
    assert errors[1].startswith("corrupt or truncated image") and errors[2].startswith("corrupt or truncated image")
    assert errors[4] == "no image (the value is NULL)"
    assert not batch[1:6].any()
    assert np.abs(batch.numpy()[[0, 6]] - _cpu_batch([photo_jpegs[1], photo_jpegs[2]])).max() <= LEVEL + 1e-6


def test_limits_send_an_image_to_the_cpu_path_which_refuses_it(photo_jpegs):
    limits = ImageLimits(max_pixels=100_000)  # the photos are 135,300 pixels and more
    assert device_decodable(photo_jpegs[0], CARD_SPEC, limits) is None
    _, errors = preprocess_encoded(photo_jpegs[:1], CARD_SPEC, "cpu", limits)
    assert "over the 100,000-pixel limit" in errors[0]


# ---- the predictor and the engine, on the CPU ----------------------------------------------------
def test_predict_encoded_agrees_with_the_cpu_path(cpu_predictor, photo_jpegs):
    reference = TorchPredictor(imagenet_torch_module(), imagenet_card(), "cpu").predict(_cpu_batch(photo_jpegs))
    images = photo_jpegs[:3] + [b"junk"] + photo_jpegs[3:]  # two batches of 4 and a bad row
    outputs, errors = cpu_predictor.predict_encoded(images)
    assert outputs.shape == (7, 1000)
    assert errors[3] == "not an image: the bytes match no known image format"
    assert np.isnan(outputs[3]).all() and [e is None for e in errors] == [True] * 3 + [False] + [True] * 3
    good = outputs[[0, 1, 2, 4, 5, 6]]
    np.testing.assert_array_equal(good.argmax(1), reference.argmax(1))
    assert np.abs(good - reference).max() < 0.05
    np.testing.assert_allclose(cpu_predictor.predict(_cpu_batch(photo_jpegs)), reference, atol=1e-5)  # the protocol


def test_the_engine_hands_bytes_to_a_predictor_that_takes_them(cpu_predictor, photo_jpegs):
    assert isinstance(prepare_image(photo_jpegs[0], cpu_predictor, ImageLimits()), bytes)
    plain = TorchGpuPredictor(imagenet_torch_module(), imagenet_card(), "cpu")  # on the CPU: arrays, as before
    assert not plain.takes_encoded and isinstance(prepare_image(photo_jpegs[0], plain, ImageLimits()), np.ndarray)
    images = [photo_jpegs[0], b"junk", None, photo_jpegs[1]]
    rows = predict_rows(cpu_predictor, images, batch_size=2, threads=2)
    expected, _ = cpu_predictor.predict_encoded([photo_jpegs[0], photo_jpegs[1]])
    assert [row.error for row in rows[1:3]] == ["not an image: the bytes match no known image format",
                                                "no image (the value is NULL)"]
    np.testing.assert_allclose(np.stack([rows[0].output, rows[3].output]), expected, atol=1e-6)


@pytest.mark.slow
def test_predict_encoded_agrees_with_the_bundled_onnx_classify(cpu_predictor, session, photo_jpegs):
    onnx = session.predictor("imagenet")
    reference = onnx.predict(_cpu_batch(photo_jpegs))
    outputs, errors = cpu_predictor.predict_encoded(photo_jpegs)
    assert errors == [None] * 6
    np.testing.assert_array_equal(outputs.argmax(1), reference.argmax(1))


@pytest.mark.slow
def test_the_benchmark_runs_on_the_cpu(capsys):
    gpu_predict = _benchmark_module()
    results = gpu_predict.main(["--device", "cpu", "--n", "8", "--batch", "4"])
    assert results["errors"] == 0 and results["end_to_end"] > 0
    assert "GPU predict benchmark" in capsys.readouterr().out


def _benchmark_module():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_predict

    return gpu_predict


# ---- on CUDA --------------------------------------------------------------------------------------
def _photo_crops(photos_dir: Path, count: int) -> list[bytes]:
    """``count`` distinct JPEGs: seeded crops of the bundled photos (the int8 gate's generator)."""
    from sightql.models.sample_photos import generated_crops

    return generated_crops(count, seed=7)


@pytest.mark.gpu
def test_cuda_decode_matches_the_cpu_path(photo_jpegs, large_jpeg, photos_dir):
    broken = _bad_huffman_table(photo_jpegs[3])
    images = photo_jpegs + _photo_crops(photos_dir, 26) + [large_jpeg, broken, b"junk"]
    batch, errors = preprocess_encoded(images, CARD_SPEC, "cuda")
    assert batch.device.type == "cuda" and errors[:-2] == [None] * 33
    assert errors[-2].startswith("corrupt or truncated image") and errors[-1]  # nvJPEG refused it, Pillow said why
    difference = np.abs(batch[:-2].cpu().numpy() - _cpu_batch(images[:-2]))
    # nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's: a few levels here and there, more at
    # sharp colour edges. (These bounds are first guesses, not yet measured on a GPU.)
    assert difference.mean() < 0.01  # about one 8-bit level
    assert np.quantile(difference, 0.99) < 0.05 and difference.max() < 0.5


@pytest.mark.gpu
def test_fp16_top1_agrees_with_fp32_on_64_photos(photos_dir):
    images = _photo_crops(photos_dir, 64)
    fp16 = TorchGpuPredictor(imagenet_torch_module(), imagenet_card(), "cuda", fp16=True, batch_size=32)
    fp32 = TorchGpuPredictor(imagenet_torch_module(), imagenet_card(), "cuda", fp16=False, batch_size=32)
    assert fp16.takes_encoded and fp16.fp16 and not fp32.fp16
    half, half_errors = fp16.predict_encoded(images)
    full, full_errors = fp32.predict_encoded(images)
    assert half_errors == full_errors == [None] * 64
    assert (half.argmax(1) == full.argmax(1)).mean() >= 0.98
    reference = TorchPredictor(imagenet_torch_module(), imagenet_card(), "cpu").predict(_cpu_batch(images))
    assert (full.argmax(1) == reference.argmax(1)).mean() >= 0.95  # GPU decode against the CPU path


@pytest.mark.gpu
def test_the_engine_decodes_on_cuda_and_the_batch_size_is_probed(photo_jpegs):
    predictor = TorchGpuPredictor(imagenet_torch_module(), imagenet_card(), "cuda")
    assert 16 <= predictor.batch_size <= 1024
    rows = predict_rows(predictor, photo_jpegs + [b"junk"], batch_size=4)
    assert [row.error is None for row in rows] == [True] * 6 + [False]
    reference = TorchPredictor(imagenet_torch_module(), imagenet_card(), "cpu").predict(_cpu_batch(photo_jpegs))
    np.testing.assert_array_equal(np.stack([row.output for row in rows[:6]]).argmax(1), reference.argmax(1))


@pytest.mark.gpu
def test_the_benchmark_runs_on_cuda(capsys):
    results = _benchmark_module().main(["--device", "cuda", "--n", "256"])
    assert results["errors"] == 0 and results["model_only"] > 0 and results["end_to_end"] > 0
    assert "GPU predict benchmark" in capsys.readouterr().out
