"""Image generation against a loopback server speaking the OpenAI Images API, and the table that keeps the images."""

from __future__ import annotations

import socket

import pytest

from sightql.errors import ConfigError, GenerationError
from sightql.generation import generate_image, provider_from_env
from sightql.ingest.generated import GENERATED_TABLE, store_generated
from sightql.generation.provider import OPENAI_BASE
from tests.fake_image_api import FakeImagesAPI

PROVIDER_VARS = ("OPENAI_API_KEY", "SIGHTQL_IMAGE_API_BASE", "SIGHTQL_IMAGE_API_KEY", "SIGHTQL_IMAGE_MODEL",
                 "SIGHTQL_IMAGE_SIZE", "SIGHTQL_IMAGE_TIMEOUT")
MAX_BYTES = 50 * 1024 * 1024


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch):
    for name in PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def chelsea(photos_dir) -> bytes:
    return (photos_dir / "chelsea.jpg").read_bytes()


@pytest.fixture
def fake(chelsea):
    server = FakeImagesAPI(chelsea)
    yield server
    server.close()


def compatible(monkeypatch, base: str, key: str | None = "local-key", **extra: str):
    monkeypatch.setenv("SIGHTQL_IMAGE_API_BASE", base)
    if key:
        monkeypatch.setenv("SIGHTQL_IMAGE_API_KEY", key)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return provider_from_env()


def test_no_provider_without_settings_and_openai_with_only_its_key(monkeypatch):
    assert provider_from_env() is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    provider = provider_from_env()
    assert (provider.name, provider.api_base, provider.api_key, provider.model) == ("openai", OPENAI_BASE, "sk-test", "dall-e-3")
    assert "sk-test" not in repr(provider)


def test_a_bad_base_url_is_one_sentence(monkeypatch):
    monkeypatch.setenv("SIGHTQL_IMAGE_API_BASE", "localhost:8080")
    with pytest.raises(ConfigError, match="SIGHTQL_IMAGE_API_BASE='localhost:8080' is not an http"):
        provider_from_env()


def test_credentials_in_the_base_url_are_not_shown_or_stored(monkeypatch):
    provider = compatible(monkeypatch, "http://user:secret@127.0.0.1:9/v1")
    assert provider.endpoint == "http://127.0.0.1:9/v1" and "secret" not in repr(provider)


def test_b64_image_request_and_answer(monkeypatch, fake, chelsea):
    provider = compatible(monkeypatch, fake.base_url, SIGHTQL_IMAGE_MODEL="tiny-diffusion", SIGHTQL_IMAGE_SIZE="512x512")
    image = generate_image("  a cat on a sofa ", provider, max_bytes=MAX_BYTES)
    assert image.data == chelsea
    assert (image.prompt, image.provider, image.model) == ("a cat on a sofa", "openai-compatible", "tiny-diffusion")
    assert image.revised_prompt == "a cat on a sofa, photo"
    [request] = fake.generations
    assert request.path == "/v1/images/generations"
    assert request.headers["authorization"] == "Bearer local-key"
    assert request.body == {"model": "tiny-diffusion", "prompt": "a cat on a sofa", "n": 1, "size": "512x512",
                            "response_format": "b64_json"}


def test_an_endpoint_without_a_key_gets_no_authorization_header(monkeypatch, fake, chelsea):
    assert generate_image("a cat", compatible(monkeypatch, fake.base_url, key=None), max_bytes=MAX_BYTES).data == chelsea
    assert "authorization" not in fake.generations[0].headers


def test_gpt_image_models_are_not_sent_response_format(monkeypatch, fake):
    provider = compatible(monkeypatch, fake.base_url, SIGHTQL_IMAGE_MODEL="gpt-image-1")
    generate_image("a cat", provider, max_bytes=MAX_BYTES)
    assert "response_format" not in fake.generations[0].body


def test_openai_key_is_used_for_a_compatible_endpoint_without_its_own(monkeypatch, fake):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback")
    generate_image("a cat", compatible(monkeypatch, fake.base_url, key=None), max_bytes=MAX_BYTES)
    assert fake.generations[0].headers["authorization"] == "Bearer sk-fallback"


def test_url_answer_is_fetched_within_the_size_cap(monkeypatch, chelsea):
    fake = FakeImagesAPI(chelsea, mode="url")
    try:
        provider = compatible(monkeypatch, fake.base_url)
        assert generate_image("a cat", provider, max_bytes=MAX_BYTES).data == chelsea
        assert [r.path for r in fake.requests] == ["/v1/images/generations", "/files/generated.png"]
        with pytest.raises(GenerationError, match="over the 1,000-byte limit"):
            generate_image("a cat", provider, max_bytes=1000)
    finally:
        fake.close()


PROVIDER_ERRORS = [
    (401, {"message": "Incorrect API key provided: sk-wrong.", "type": "invalid_request_error", "code": "invalid_api_key"},
     "refused the API key (Incorrect API key provided: sk-wrong); set a valid key in SIGHTQL_IMAGE_API_KEY"),
    (400, {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error",
           "code": "content_policy_violation"},
     "refused the prompt under its content policy (Your request was rejected as a result of our safety system); "
     "rephrase the prompt"),
    (404, {"message": "The model 'nope' does not exist", "type": "invalid_request_error", "code": "model_not_found"},
     "does not know model 'dall-e-3'"),
    (429, {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"},
     "rate-limiting this key or its quota is used up"),
]
PROVIDER_ERROR_IDS = ["auth", "content-policy", "unknown-model", "quota"]


@pytest.mark.parametrize("status, error, sentence", PROVIDER_ERRORS, ids=PROVIDER_ERROR_IDS)
def test_provider_errors_are_one_sentence(monkeypatch, chelsea, status, error, sentence):
    fake = FakeImagesAPI(chelsea, mode="error", status=status, error=error)
    try:
        with pytest.raises(GenerationError) as raised:
            generate_image("a cat", compatible(monkeypatch, fake.base_url), max_bytes=MAX_BYTES)
    finally:
        fake.close()
    message = str(raised.value)
    assert message.startswith(f"the image provider at {fake.base_url} ") and sentence in message
    assert "\n" not in message and "Traceback" not in message


def test_timeout_and_unreachable_provider_are_one_sentence(monkeypatch, chelsea):
    fake = FakeImagesAPI(chelsea, delay=2.0)
    try:
        provider = compatible(monkeypatch, fake.base_url, SIGHTQL_IMAGE_TIMEOUT="0.3")
        with pytest.raises(GenerationError, match=r"did not answer within 0.3 s; try again or raise SIGHTQL_IMAGE_TIMEOUT"):
            generate_image("a cat", provider, max_bytes=MAX_BYTES)
    finally:
        fake.close()
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(GenerationError, match=r"could not reach the image provider at http://127.0.0.1:\d+/v1; check"):
        generate_image("a cat", compatible(monkeypatch, f"http://127.0.0.1:{port}/v1"), max_bytes=MAX_BYTES)


def test_empty_prompt_is_refused_before_any_request(monkeypatch, fake):
    with pytest.raises(ConfigError, match="the prompt is empty"):
        generate_image("   ", compatible(monkeypatch, fake.base_url), max_bytes=MAX_BYTES)
    assert fake.requests == []


def test_stored_with_its_prompt_once_by_content(monkeypatch, fake, session):
    provider = compatible(monkeypatch, fake.base_url)
    first = store_generated(session.warehouse, generate_image("a cat", provider, max_bytes=MAX_BYTES))
    again = store_generated(session.warehouse, generate_image("a cat", provider, max_bytes=MAX_BYTES))
    assert first.new and not again.new and first.relative_path == again.relative_path
    assert first.relative_path.startswith("generated/") and first.relative_path.endswith(".jpg")
    [row] = session.sql(
        f"SELECT prompt, revised_prompt, provider, endpoint, model, format, width, height, sha256, "
        f"classify('imagenet', image).label AS label FROM {GENERATED_TABLE}"
    ).to_pylist()
    assert row["prompt"] == "a cat" and row["revised_prompt"] == "a cat, photo"
    assert (row["provider"], row["endpoint"], row["model"]) == ("openai-compatible", fake.base_url, "dall-e-3")
    assert (row["format"], row["width"], row["height"], row["sha256"]) == ("JPEG", 451, 300, first.sha256)
    from tests.conftest import CAT_CLASSES

    assert row["label"] in CAT_CLASSES


def test_provider_bytes_that_are_no_image_are_refused(monkeypatch, session):
    fake = FakeImagesAPI(b"<html>oops</html>")
    try:
        generated = generate_image("a cat", compatible(monkeypatch, fake.base_url), max_bytes=MAX_BYTES)
    finally:
        fake.close()
    with pytest.raises(GenerationError, match="sent an unusable image: not an image"):
        store_generated(session.warehouse, generated)
