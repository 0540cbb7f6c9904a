"""The sentence-transformers adapter with the real bundled MiniLM, offline."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from sightql.errors import ConfigError, UnsafeModelError
from sightql.models.text_embedder import check_folder, load_minilm, load_text_embedder, minilm_path

GUITAR = "A man is playing a guitar."
ACOUSTIC = "Someone plays an acoustic guitar."
MARKET = "The stock market fell sharply today."


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def linked_copy(source: Path, destination: Path, skip: tuple[str, ...] = ()) -> Path:
    """A model folder made of symlinks to the bundled one, so a test can change one file cheaply."""
    destination.mkdir()
    for item in source.iterdir():
        if item.name not in skip:
            (destination / item.name).symlink_to(item)
    return destination


def test_minilm_gives_unit_float32_vectors(minilm):
    vectors = minilm.embed_texts([GUITAR, ACOUSTIC, MARKET])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.dim == 384 and minilm.model_version == "minilm" and minilm.device == "cpu"
    card = minilm.card
    assert (card.name, card.task, card.framework, card.output, card.modality, card.labels) == (
        "minilm",
        "embedding",
        "sentence-transformers",
        "embedding",
        "text",
        (),
    )


def test_similar_sentences_are_closer_than_unrelated_ones(minilm):
    guitar, acoustic, market = minilm.embed_texts([GUITAR, ACOUSTIC, MARKET])
    assert float(guitar @ acoustic) > float(guitar @ market) + 0.3


def test_same_text_gives_the_same_vector(minilm):
    together = minilm.embed_texts([GUITAR, MARKET, GUITAR])
    assert np.array_equal(together[0], together[2])
    alone = minilm.embed_texts([GUITAR])
    np.testing.assert_allclose(alone[0], together[0], atol=1e-5)


def test_more_texts_than_one_batch(minilm):
    texts = [f"defect report number {i}" for i in range(70)]
    vectors = minilm.embed_texts(texts)
    assert vectors.shape == (70, 384)
    np.testing.assert_allclose(vectors[65], minilm.embed_texts([texts[65]])[0], atol=1e-5)


def test_empty_input_and_non_text_values(minilm):
    assert minilm.embed_texts([]).shape == (0, 384)
    with pytest.raises(ConfigError, match="NULL"):
        minilm.embed_texts([GUITAR, None])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"\[text\]"):
        minilm.embed_texts(GUITAR)


def test_bundled_minilm_has_safetensors_weights():
    folder = minilm_path()
    assert (folder / "model.safetensors").is_file()
    check_folder(folder, trust=False)


def test_pickle_only_weights_are_refused_unless_trusted(tmp_path):
    folder = linked_copy(minilm_path(), tmp_path / "pickled", skip=("model.safetensors",))
    (folder / "pytorch_model.bin").write_bytes(b"pretend pickle")
    with pytest.raises(UnsafeModelError, match="trust=True"):
        load_text_embedder(folder, "pickled")
    check_folder(folder, trust=True)


class _Bait:
    """Unpickling this creates ``marker``: a visible trace of any loader that reads the pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_weights_beside_safetensors_are_never_unpickled(minilm, tmp_path):
    marker = tmp_path / "unpickled"
    bait = pickle.dumps(_Bait(marker))
    folder = linked_copy(minilm_path(), tmp_path / "both")
    (folder / "pytorch_model.bin").write_bytes(bait)  # where transformers would look for pickle weights
    loaded = load_text_embedder(folder, "both")
    assert not marker.exists(), "the loader unpickled pytorch_model.bin"
    np.testing.assert_array_equal(loaded.embed_texts([GUITAR]), minilm.embed_texts([GUITAR]))  # the safetensors
    pickle.loads(bait)  # the bait is live: reading it would have left the marker
    assert marker.exists()


def test_module_classes_outside_sentence_transformers_are_refused(tmp_path):
    folder = linked_copy(minilm_path(), tmp_path / "foreign", skip=("modules.json",))
    modules = json.loads((minilm_path() / "modules.json").read_text())
    modules[1]["type"] = "evil_package.Pooling"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsafeModelError, match="evil_package.Pooling"):
        load_text_embedder(folder, "foreign")


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        load_text_embedder(tmp_path / "missing", "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a sentence-transformers model"):
        load_text_embedder(tmp_path / "empty", "x")


@pytest.mark.slow
def test_trusted_pickle_weights_load_and_match(minilm, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = linked_copy(minilm_path(), tmp_path / "pickled", skip=("model.safetensors",))
    torch.save(load_file(minilm_path() / "model.safetensors"), folder / "pytorch_model.bin")
    with pytest.raises(UnsafeModelError):
        load_text_embedder(folder, "pickled")
    trusted = load_text_embedder(folder, "pickled", trust=True)
    np.testing.assert_allclose(trusted.embed_texts([GUITAR]), minilm.embed_texts([GUITAR]), atol=1e-5)
