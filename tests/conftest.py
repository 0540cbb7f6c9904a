"""Shared fixtures: temporary warehouses, real sample photos, phone-size media, the real bundled model."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sightql
from sightql.cli.demo import write_sample_photos
from tests import media

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


# Long CLI jobs lower their process's CPU priority (job_nice); tests call the CLI in this process too, and
# must not lower the test runner's. tests/test_config.py checks job_nice itself in child processes.
os.environ.setdefault("SIGHTQL_JOB_NICE", "0")


def pytest_collection_modifyitems(config, items):
    from sightql.models.device import cuda_available

    if not cuda_available():
        skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    """The real photos scikit-image and scikit-learn ship, saved as files (plus one text file)."""
    folder = tmp_path_factory.mktemp("photos")
    write_sample_photos(folder)
    return folder


@pytest.fixture(scope="session")
def phone_photos_dir(tmp_path_factory) -> Path:
    """20 phone photos as a phone writes them: ``IMG_0000.jpg`` ... 4032x3024 JPEGs stored sideways with
    EXIF orientation 6 (shown 3024x4032), 3.3-3.5 MB each (see tests/media.py; about 3 s, once per run)."""
    folder = tmp_path_factory.mktemp("phone-photos")
    media.write_phone_photos(folder, 20)
    return folder


@pytest.fixture(scope="session")
def heic_bytes() -> bytes:
    """An iPhone-style HEIC of the cat photo, stored 1008x756 sideways with its rotation: opens upright, 756x1008."""
    return media.heic_photo()


@pytest.fixture(scope="session")
def avif_bytes() -> bytes:
    """An AVIF of the coffee photo, stored 1008x756 with EXIF orientation 6 (shown 756x1008)."""
    return media.avif_photo()


@pytest.fixture(scope="session")
def dicom_bytes() -> bytes:
    """A 12-bit MONOCHROME2 DICOM (512x512) with Rescale Slope/Intercept and a window."""
    return media.dicom_file()


@pytest.fixture(scope="session")
def dicom_monochrome1_bytes() -> bytes:
    """The same stored values as ``dicom_bytes``, as MONOCHROME1 (low values shown white)."""
    return media.dicom_file(photometric="MONOCHROME1")


@pytest.fixture(scope="session")
def dicom_multiframe_bytes() -> bytes:
    """Two frames: the camera photo, then a flat frame."""
    camera = media.camera_12bit()
    return media.dicom_file(np.stack([camera, np.full_like(camera, 4000)]))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A warehouse whose bundled model is already exported, so each test need not export again."""
    home = tmp_path_factory.mktemp("model-cache")
    with sightql.connect(home) as session:
        session.predictor("imagenet")
    return home / "models"


@pytest.fixture
def warehouse(tmp_path, model_cache) -> Path:
    """A fresh warehouse folder that shares the exported bundled model (hard links)."""
    home = tmp_path / "warehouse"
    shutil.copytree(model_cache, home / "models", copy_function=os.link)
    return home


@pytest.fixture
def session(warehouse):
    with sightql.connect(warehouse) as s:
        yield s


def jpeg_bytes(path: Path) -> bytes:
    return path.read_bytes()


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()
