"""Shared fixtures: temporary warehouses, real sample photos, the real bundled model."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

import sightql
from sightql.demo import write_sample_photos

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


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
