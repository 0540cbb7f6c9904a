"""The Generate page against a loopback server speaking the OpenAI Images API."""

from __future__ import annotations

import pytest

from tests.app_pages import page, texts
from tests.conftest import CAT_CLASSES
from tests.fake_image_api import FakeImagesAPI
from tests.test_generation import PROVIDER_ERROR_IDS, PROVIDER_ERRORS, PROVIDER_VARS


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch):
    for name in PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(photos_dir):
    server = FakeImagesAPI((photos_dir / "chelsea.jpg").read_bytes())
    yield server
    server.close()


def generate(at, prompt: str):
    at.text_area[0].input(prompt)
    at.button[0].click()
    return at.run()


def stored(warehouse):
    import sightql

    with sightql.connect(warehouse) as s:
        return s.sql("SELECT prompt, provider, model, sha256, format FROM generated_images").to_pylist()


def test_without_a_provider_the_page_says_how_to_set_one_up(warehouse, monkeypatch):
    at = page("generate", warehouse, monkeypatch).run()
    assert not at.exception and not at.text_area
    [info] = at.info
    for needed in ("No image provider is configured", "export OPENAI_API_KEY=sk-...", "SIGHTQL_IMAGE_MODEL",
                   "export SIGHTQL_IMAGE_API_BASE=http://localhost:8080/v1", "SIGHTQL_IMAGE_API_KEY"):
        assert needed in info.value


def test_a_prompt_becomes_a_stored_and_recognized_image(warehouse, monkeypatch, fake, tmp_path):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # nothing may be written to the working directory
    monkeypatch.setenv("SIGHTQL_IMAGE_API_BASE", fake.base_url)
    monkeypatch.setenv("SIGHTQL_IMAGE_API_KEY", "fake-key-123")
    at = page("generate", warehouse, monkeypatch).run()
    assert not at.exception and f"openai-compatible at {fake.base_url}" in at.caption[0].value
    generate(at, "a tabby cat on a windowsill")
    assert not at.exception and not at.error
    [request] = fake.generations
    assert request.headers["authorization"] == "Bearer fake-key-123"
    assert request.body == {"model": "dall-e-3", "prompt": "a tabby cat on a windowsill", "n": 1, "size": "1024x1024",
                            "response_format": "b64_json"}
    [row] = stored(warehouse)
    assert (row["prompt"], row["provider"], row["model"], row["format"]) == (
        "a tabby cat on a windowsill", "openai-compatible", "dall-e-3", "JPEG"
    )
    best = at.markdown[0].value.strip("*").split(" — ")[0]
    assert best in CAT_CLASSES and len(at.get("progress")) == 5
    assert any("prompt: a tabby cat on a windowsill" in t for t in texts(at))
    at.run()  # a rerun shows the same image again without asking the provider or storing again
    assert len(fake.generations) == 1 and stored(warehouse) == [row]
    assert at.markdown[0].value.strip("*").split(" — ")[0] == best
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("status, error, sentence", PROVIDER_ERRORS[:2], ids=PROVIDER_ERROR_IDS[:2])
def test_a_provider_error_is_one_sentence_and_nothing_is_stored(warehouse, monkeypatch, photos_dir, status, error, sentence):
    fake = FakeImagesAPI((photos_dir / "chelsea.jpg").read_bytes(), mode="error", status=status, error=error)
    try:
        monkeypatch.setenv("SIGHTQL_IMAGE_API_BASE", fake.base_url)
        at = generate(page("generate", warehouse, monkeypatch).run(), "a cat")
    finally:
        fake.close()
    assert not at.exception
    [shown] = at.error
    assert shown.value.startswith(f"the image provider at {fake.base_url} ") and sentence in shown.value
    assert "\n" not in shown.value and not at.get("image")


def test_an_empty_prompt_is_refused_without_a_request(warehouse, monkeypatch, fake):
    monkeypatch.setenv("SIGHTQL_IMAGE_API_BASE", fake.base_url)
    at = generate(page("generate", warehouse, monkeypatch).run(), "   ")
    assert [e.value for e in at.error] == ["the prompt is empty; describe the image you want, e.g. 'a tabby cat on a sofa'"]
    assert fake.requests == []
