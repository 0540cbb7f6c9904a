"""Importing SightQL, or any of its entry points, loads no heavy framework: those load lazily, when used."""

import subprocess
import sys

import pytest

HEAVY = (
    "torch", "torchvision", "onnxruntime", "keras", "tensorflow", "h5py", "transformers", "sentence_transformers",
    "dask", "distributed", "fastapi", "uvicorn", "streamlit",
)


@pytest.mark.parametrize("module", [
    "sightql",
    "sightql.cli.predict",
    "sightql.inference.predict",
    "sightql.train",
    "sightql.models.text_embedder",
    "sightql.models.keras",
    "sightql.models.torch.files",
    "sightql.models.onnx.runtime",
])
def test_import_stays_light(module):
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
