"""The CPU speed settings of training: precision choice, glibc malloc tuning, the JPEG draft for squash,
prefetching the next batch, and the decoded-image cache (real textile JPEGs from conformal-clip-data)."""

from __future__ import annotations

import io
import platform
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sightql.errors import ConfigError, SightQLError
from sightql.images.decode import ImageLimits, decode_image
from sightql.images.preprocess import create_transform, to_array
from sightql.images.spec import InputSpec
from sightql.train import speed
from sightql.train.dataset import ImageRowsDataset, make_loader
from sightql.train.image_cache import DecodedImageCache, image_bytes
from sightql.train.options import TrainOptions
from sightql.train.sources import Example

SQUASH = InputSpec(height=64, width=64, resize="squash")


def _textile(count: int) -> list[Path]:
    import conformal_clip_data

    per_class = (count + 1) // 2
    files = sorted(conformal_clip_data.local_dir().glob("*.jpg"))[:per_class]
    return (files + sorted(conformal_clip_data.nominal_dir().glob("*.jpg"))[:per_class])[:count]


class CountingReader:
    """Bytes by key from a dict, counting the keys read (the cache should spare reads)."""

    description = "test images"

    def __init__(self, blobs: dict[str, bytes]):
        self.blobs = blobs
        self.keys_read = 0

    def read(self, keys):
        self.keys_read += len(keys)
        return [self.blobs[k] for k in keys]


def _dataset(count: int, augment: str = "light", cache: DecodedImageCache | None = None, broken: set[int] = frozenset()):
    files = _textile(count)
    blobs = {str(p): (b"not an image at all" if i in broken else p.read_bytes()) for i, p in enumerate(files)}
    examples = [Example(key=str(p), label=p.parent.name, sha256=str(p), name=p.name) for p in files]
    labels = sorted({e.label for e in examples})
    reader = CountingReader(blobs)
    dataset = ImageRowsDataset(examples, reader, {label: i for i, label in enumerate(labels)}, SQUASH, ImageLimits(),
                               augment, seed=3, threads=2, cache=cache)
    return dataset, reader


def _epochs(loader, dataset, epochs=(1, 2)):
    out = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        loader.generator.manual_seed(epoch)
        out.append([(images.numpy().copy(), targets.numpy().copy()) for images, targets in loader])
    return out


# ---- precision ------------------------------------------------------------------------------------
def test_precision_choice():
    assert speed.choose_precision("auto", "cpu", fast_bf16=True) == "bf16"
    assert speed.choose_precision("auto", "cpu", fast_bf16=False) == "fp32"
    assert speed.choose_precision("fp32", "cpu", fast_bf16=True) == "fp32"
    assert speed.choose_precision("bf16", "cpu", fast_bf16=False) == "bf16"  # asked for: emulated, slower
    assert speed.choose_precision("bf16", "cuda", fast_bf16=True) == "fp32"  # CUDA: amp decides
    assert speed.choose_precision("auto", "cuda:1", fast_bf16=True) == "fp32"
    detected = speed.cpu_has_fast_bf16()
    assert speed.choose_precision("auto", "cpu") == ("bf16" if detected else "fp32")


def test_precision_setting_is_checked():
    assert TrainOptions(name="m", source="t").precision == "auto"
    with pytest.raises(ConfigError, match="precision='fp16' is not known; use one of auto, fp32, bf16"):
        TrainOptions(name="m", source="t", precision="fp16")
    with pytest.raises(ConfigError, match="image_cache_mb=-1 is not valid"):
        TrainOptions(name="m", source="t", image_cache_mb=-1)


def test_autocast_follows_the_precision():
    import torch

    layer, x = torch.nn.Linear(4, 2), torch.ones(1, 4)
    with speed.autocast("cpu", True, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with speed.autocast("cpu", True, "fp32"):
        assert layer(x).dtype == torch.float32


# ---- glibc malloc --------------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_tuning_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with speed.tuned_malloc() as tuned:
        assert tuned
        big = np.ones(64 * 1024 * 1024 // 8)  # a large block, served from the heap within the block
        assert big.sum() == big.size
    monkeypatch.setenv("SIGHTQL_MALLOC_TUNING", "0")
    with speed.tuned_malloc() as tuned:
        assert not tuned
    monkeypatch.delenv("SIGHTQL_MALLOC_TUNING")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    with speed.tuned_malloc() as tuned:
        assert not tuned  # another allocator is in charge


def test_malloc_tuning_is_a_no_op_elsewhere(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with speed.tuned_malloc() as tuned:
        assert not tuned


# ---- the JPEG draft for squash ----------------------------------------------------------------------
def _jpeg(size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_squash_decodes_a_large_jpeg_smaller():
    data = _jpeg((1000, 800))
    transform = create_transform(SQUASH)
    decoded = transform.decode(data)
    assert decoded.size == (125, 100)  # 1/8 scale: both sides still at least 64
    assert transform(data).shape == (3, 64, 64)
    wide = create_transform(InputSpec(height=64, width=200, resize="squash")).decode(data)
    assert min(decoded.size) >= 64 and wide.size == (250, 200) and wide.size[0] >= 200


def test_squash_without_draft_is_unchanged():
    data = _textile(1)[0].read_bytes()  # about 250 px: at 224 px no draft scale applies
    spec = InputSpec(height=224, width=224, resize="squash")
    before = to_array(decode_image(data, channels=3), spec)  # what the transform computed before the draft
    after = create_transform(spec)(data)
    step = (1 / 255) / min(spec.std)
    assert np.abs(after - before).max() <= step + 1e-6


# ---- prefetching ------------------------------------------------------------------------------------
def test_prefetch_gives_the_same_batches_in_the_same_order():
    dataset, _ = _dataset(10)
    plain = _epochs(make_loader(dataset, 4, True, 0, prefetch=False), dataset)
    ahead = _epochs(make_loader(dataset, 4, True, 0, prefetch=True), dataset)
    assert [len(e) for e in ahead] == [3, 3]
    for epoch_plain, epoch_ahead in zip(plain, ahead):
        for (images_p, targets_p), (images_a, targets_a) in zip(epoch_plain, epoch_ahead):
            np.testing.assert_array_equal(images_p, images_a)
            np.testing.assert_array_equal(targets_p, targets_a)
    assert not np.array_equal(plain[0][0][0], plain[1][0][0])  # a new order and augmentation each epoch


def test_prefetch_raises_a_bad_image_with_its_sentence():
    dataset, _ = _dataset(6, broken={4})
    messages = []
    for prefetch in (False, True):
        loader = make_loader(dataset, 2, False, 0, prefetch=prefetch)
        with pytest.raises(SightQLError, match=r"cannot be used .*remove or replace it and train again") as caught:
            list(loader)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


# ---- the decoded-image cache ----------------------------------------------------------------------------
def test_cache_keeps_within_its_budget():
    images = [Image.new("RGB", (10, 10)) for _ in range(5)]  # 300 bytes each
    cache = DecodedImageCache(1000)
    kept = [cache.put(i, image) for i, image in enumerate(images)]
    assert kept == [True, True, True, False, False]
    assert cache.bytes == 900 <= cache.max_bytes and len(cache) == 3
    assert cache.get(0) is not None and cache.get(4) is None
    assert image_bytes(Image.new("L", (10, 10))) == 100


def test_cache_spares_reads_and_augmentation_still_varies_by_epoch():
    cache = DecodedImageCache(64 * 1024 * 1024)
    cached, reader = _dataset(8, augment="standard", cache=cache)
    uncached, _ = _dataset(8, augment="standard")
    with_cache = _epochs(make_loader(cached, 4, True, 0), cached)
    without = _epochs(make_loader(uncached, 4, True, 0), uncached)
    assert reader.keys_read == 8  # epoch 2 read nothing: every image came from the cache
    assert len(cache) == 8 and cache.hits == 8
    for epoch_cached, epoch_plain in zip(with_cache, without):  # the cache changes no pixel
        for (images_c, _), (images_p, _) in zip(epoch_cached, epoch_plain):
            np.testing.assert_array_equal(images_c, images_p)
    cached.set_epoch(1)
    first = cached[0][0].numpy()
    cached.set_epoch(2)
    assert not np.array_equal(first, cached[0][0].numpy())  # same cached image, another augmentation


def test_cache_too_small_for_all_still_trains_every_image():
    one = image_bytes(create_transform(SQUASH).decode(_textile(1)[0].read_bytes()))  # 1/2 scale: 64 px is enough
    cache = DecodedImageCache(3 * one + one // 2)  # room for three textile images
    dataset, reader = _dataset(8, cache=cache)
    batches = _epochs(make_loader(dataset, 4, True, 0), dataset)
    assert [sum(len(t) for _, t in epoch) for epoch in batches] == [8, 8]
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    assert reader.keys_read == 8 + (8 - len(cache))
