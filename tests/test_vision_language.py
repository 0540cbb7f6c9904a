"""ai_classify / ai_complete against a loopback server speaking the OpenAI chat-completions API.

The fake (tests/fake_chat_api.py) checks each request as a real server would and "looks" at the image
it got (its mean colour picks the scripted reply), so these tests see what was really sent: the
image as a downscaled, upright JPEG data URL, the labels in the prompt, the model, the bearer token.
"""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

import sightql
from sightql.config import Settings
from sightql.errors import ConfigError, GenerationError
from sightql.functions.vision_language_cache import ANSWERS_TABLE
from sightql.generation.chat_provider import OPENAI_BASE, chat_provider
from sightql.generation.vision_language import match_label
from tests import media
from tests.fake_chat_api import COLOURS, FakeChatAPI, answer, failure

KEY = "sk-test-chat-secret-7f3a9c"
CHAT_VARS = ("OPENAI_API_KEY", "SIGHTQL_CHAT_API_BASE", "SIGHTQL_CHAT_API_KEY", "SIGHTQL_CHAT_MODEL",
             "SIGHTQL_CHAT_TIMEOUT", "SIGHTQL_CHAT_CONCURRENCY", "SIGHTQL_CHAT_MAX_ATTEMPTS",
             "SIGHTQL_CHAT_MAX_IMAGES", "SIGHTQL_CHAT_IMAGE_SIDE", "SIGHTQL_CONFIG")
LABELS = ["cat", "dog"]


def picture(colour: str, size: tuple[int, int] = (1600, 900), fmt: str = "PNG", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buffer, fmt, **save)
    return buffer.getvalue()


def sideways_phone_jpeg(colour: str) -> bytes:
    """Stored 1200x900 with EXIF orientation 6: shown upright as 900x1200."""
    return picture(colour, (1200, 900), "JPEG", quality=90, exif=media.phone_exif(6))


@pytest.fixture(autouse=True)
def chat_env(monkeypatch, tmp_path):
    for name in CHAT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.sightql/config.toml of the machine's


@pytest.fixture
def fake():
    server = FakeChatAPI()
    yield server
    server.close()


@pytest.fixture
def configured(monkeypatch, fake):
    monkeypatch.setenv("SIGHTQL_CHAT_API_BASE", fake.base_url)
    monkeypatch.setenv("SIGHTQL_CHAT_API_KEY", KEY)
    monkeypatch.setenv("SIGHTQL_CHAT_MODEL", "fake-vlm")
    monkeypatch.setenv("SIGHTQL_CHAT_TIMEOUT", "0.5")
    monkeypatch.setenv("SIGHTQL_CHAT_MAX_ATTEMPTS", "3")
    return fake


def open_photos(home, rows: dict[str, bytes | None]):
    session = sightql.connect(home)
    session.sql("CREATE TABLE IF NOT EXISTS photos (name VARCHAR PRIMARY KEY, image BLOB)")
    for name, data in rows.items():
        session.sql("INSERT INTO photos VALUES (?, ?)", [name, data])
    return session


def classified(session, where: str = "", params=None, model: str = "") -> dict[str, dict]:
    query = f"SELECT name, ai_classify(image, ['cat', 'dog']{model}) AS r FROM photos {where} ORDER BY name"
    return {row["name"]: row["r"] for row in session.sql(query, params).to_pylist()}


def test_the_request_carries_the_image_labels_model_and_key_and_a_rerun_costs_nothing(configured, tmp_path):
    fake = configured
    fake.scripts = {"red": [answer("cat")], "blue": [answer(" Dog.")]}
    session = open_photos(tmp_path / "wh", {"wide": picture("red"), "phone": sideways_phone_jpeg("blue")})
    assert classified(session) == {"phone": {"label": "dog", "error": None}, "wide": {"label": "cat", "error": None}}

    assert len(fake.requests) == 2
    for request in fake.requests:
        assert request.problem is None and request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.body["model"] == "fake-vlm" and request.body["temperature"] == 0
        assert request.image_format == "JPEG"
        url = request.body["messages"][-1]["content"][1]["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        prompt = fake.prompt(request)
        assert "- cat\n- dog" in prompt and "exactly one" in prompt
    sizes = {r.colour: r.image_size for r in fake.requests}
    assert sizes == {"red": (768, 432), "blue": (576, 768)}  # downscaled to 768; the phone photo upright

    assert classified(session)["wide"] == {"label": "cat", "error": None}
    assert len(fake.requests) == 2  # answered from the cache
    session.close()
    with sightql.connect(tmp_path / "wh") as again:  # another connection: the cache is in the warehouse
        assert classified(again)["phone"] == {"label": "dog", "error": None}
        assert len(fake.requests) == 2
        stored = again.sql(f"SELECT * FROM {ANSWERS_TABLE} ORDER BY answer").to_pylist()
        assert [(r["task"], r["request"], r["model"], r["answer"]) for r in stored] == [
            ("classify", '["cat", "dog"]', "fake-vlm", "Dog."), ("classify", '["cat", "dog"]', "fake-vlm", "cat")]
        assert {r["endpoint"] for r in stored} == {fake.base_url}
        assert KEY not in repr(stored)
        # another model is another question: asked once, named with := or =>
        assert classified(again, "WHERE name = 'wide'", model=", model := 'bigger-vlm'")["wide"]["label"] == "cat"
        assert classified(again, "WHERE name = 'wide'", model=", model => 'bigger-vlm'")["wide"]["label"] == "cat"
        assert [r.body["model"] for r in fake.requests[2:]] == ["bigger-vlm"]


def test_every_failure_ends_as_a_label_or_a_row_error_and_the_query_goes_on(configured, tmp_path):
    fake = configured
    fake.scripts = {
        "yellow": [failure(429, "slow down", Retry_After="1"), answer("CAT")],
        "magenta": [failure(500, "upstream exploded")],
        "green": [answer("a horse")],
        "cyan": [answer("dog", sleep=2.0)],  # past the client's 0.5 s timeout, every time
        "grey": [failure(400, "image too small for this model")],
        "black": [failure(401, f"Incorrect API key provided: {KEY}")],
    }
    session = open_photos(tmp_path / "wh", {c: picture(c, (64, 48)) for c in fake.scripts} | {"none": None})
    started = time.monotonic()
    rows = classified(session)
    assert time.monotonic() - started < 20

    assert rows["yellow"] == {"label": "cat", "error": None}
    assert fake.count("yellow") == 2  # one 429, then the answer
    first, second = [r.at for r in fake.requests if r.colour == "yellow"]
    assert second - first >= 1.0  # Retry-After: 1 was waited (the backoff alone would be 0.5-0.75 s)
    assert rows["magenta"]["label"] is None and "HTTP 500" in rows["magenta"]["error"]
    assert "after 3 attempts" in rows["magenta"]["error"] and fake.count("magenta") == 3
    assert rows["green"]["label"] is None and fake.count("green") == 1
    assert "'a horse', which is not one of the labels (cat, dog)" in rows["green"]["error"]
    assert rows["cyan"]["label"] is None and fake.count("cyan") == 3
    assert "did not answer within 0.5 s after 3 attempts" in rows["cyan"]["error"]
    assert "SIGHTQL_CHAT_TIMEOUT" in rows["cyan"]["error"]
    assert rows["grey"]["label"] is None and fake.count("grey") == 1  # a 4xx is not retried
    assert "HTTP 400: image too small for this model" in rows["grey"]["error"]
    assert "HTTP 401" in rows["black"]["error"] and "SIGHTQL_CHAT_API_KEY" in rows["black"]["error"]
    assert rows["none"] == {"label": None, "error": "no image (the value is NULL)"}
    assert all(KEY not in (r["error"] or "") for r in rows.values())
    assert all(r.problem is None for r in fake.requests)

    # answers are cached (an answer outside the labels stays that row's error); failures are asked again
    counts = {c: fake.count(c) for c in fake.scripts}
    again = classified(session, "WHERE name IN ('yellow', 'green', 'magenta')")
    assert again["yellow"]["label"] == "cat" and again["green"]["error"] == rows["green"]["error"]
    assert (fake.count("yellow"), fake.count("green")) == (counts["yellow"], counts["green"])
    assert fake.count("magenta") == counts["magenta"] + 3
    assert KEY not in repr(session.sql(f"SELECT * FROM {ANSWERS_TABLE}").to_pylist())
    session.close()


def test_the_per_query_cap_refuses_in_one_sentence_before_sending(configured, monkeypatch, tmp_path):
    fake = configured
    monkeypatch.setenv("SIGHTQL_CHAT_MAX_IMAGES", "2")
    colours = ("red", "green", "blue")
    session = open_photos(tmp_path / "wh", {c: picture(c, (32, 32)) for c in colours})
    with pytest.raises(ConfigError) as refused:
        classified(session)
    message = str(refused.value)
    assert message.count(". ") == 0 and "3 images" in message and "chat_max_images (2)" in message
    assert "SIGHTQL_CHAT_MAX_IMAGES" in message
    assert fake.requests == []  # refused before any request
    classified(session, "WHERE name <> 'blue'")
    assert len(fake.requests) == 2
    classified(session)  # two are cached: one image to send, within the cap
    assert len(fake.requests) == 3

    # the cap is per query across DuckDB's chunks of 2,048 rows: 2,049 rows of two new images and a third
    many = [picture("yellow", (16, 16))] * 2048 + [picture("cyan", (16, 16)), picture("magenta", (16, 16))]
    session.sql("CREATE TABLE many AS SELECT range AS i, ?[range + 1] AS image FROM range(2050)", [many])
    with pytest.raises(ConfigError, match="chat_max_images"):
        session.sql("SELECT ai_classify(image, ['cat', 'dog']) FROM many")
    assert len(fake.requests) - 3 <= 2
    session.close()


def test_ai_complete_returns_the_text_from_sql_and_python_and_file_values_work(configured, tmp_path):
    fake = configured
    fake.scripts = {"red": [answer("A red square on nothing at all.")], "blue": [answer("dog")]}
    session = open_photos(tmp_path / "wh", {"red": picture("red", (300, 200))})
    rows = session.sql("SELECT ai_complete(image, 'Describe the image in one sentence.') AS r FROM photos").to_pylist()
    assert rows == [{"r": {"text": "A red square on nothing at all.", "error": None}}]
    assert fake.prompt(fake.requests[-1]) == "Describe the image in one sentence."
    assert session.ai_complete([picture("red", (300, 200)), b"not an image"], "Describe the image in one sentence.") == [
        {"text": "A red square on nothing at all.", "error": None},
        {"text": None, "error": session.ai_complete([b"not an image"], "x")[0]["error"]},
    ]
    assert len(fake.requests) == 1  # same image, same prompt: cached; the bad image is never sent
    assert session.ai_classify([picture("blue", (40, 40))], LABELS, model="other") == [{"label": "dog", "error": None}]
    assert fake.requests[-1].body["model"] == "other"

    # a FILE value (a staged file) is read and sent the same way
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "blue.jpg").write_bytes(sideways_phone_jpeg("blue"))
    session.create_stage("pics").put(folder)
    result = session.sql("SELECT ai_classify(file, ['cat', 'dog']) AS r FROM directory('@pics')").to_pylist()
    assert result == [{"r": {"label": "dog", "error": None}}]
    assert fake.requests[-1].image_size == (576, 768)
    session.close()


def test_label_lists_that_cannot_classify_are_one_sentence(configured, tmp_path):
    session = open_photos(tmp_path / "wh", {"red": picture("red", (32, 32))})
    with pytest.raises(ConfigError, match="at least 2 labels"):
        session.sql("SELECT ai_classify(image, ['cat']) FROM photos")
    with pytest.raises(ConfigError, match="'cat' and 'Cat' are the same label"):
        session.sql("SELECT ai_classify(image, ['cat', 'Cat']) FROM photos")
    assert configured.requests == []
    session.close()


def test_without_a_provider_the_query_names_the_settings(tmp_path):
    with sightql.connect(tmp_path / "wh") as session:
        with pytest.raises(GenerationError) as missing:
            session.sql("SELECT ai_classify('x'::BLOB, ['cat', 'dog'])")
    assert "SIGHTQL_CHAT_API_BASE" in str(missing.value) and "OPENAI_API_KEY" in str(missing.value)


def test_the_provider_comes_from_the_settings_and_the_environment():
    assert chat_provider(Settings(), {}) is None
    openai = chat_provider(Settings(), {"OPENAI_API_KEY": KEY})
    assert (openai.api_base, openai.api_key, openai.model, openai.name) == (OPENAI_BASE, KEY, "gpt-4o-mini", "openai")
    local = chat_provider(Settings(chat_api_base="http://user:pw@localhost:11434/v1", chat_model="llava"), {})
    assert (local.api_key, local.model, local.endpoint) == (None, "llava", "http://localhost:11434/v1")
    assert KEY not in repr(openai) and "pw" not in repr(local)
    assert local.redact("see http://user:pw@localhost") == "see http://user:***@localhost"


def test_an_answer_matches_a_label_only_exactly_up_to_case_and_punctuation():
    assert match_label('  "Dog".\n', LABELS) == "dog"
    assert match_label("CAT!", LABELS) == "cat"
    for wrong in ("dogs", "a cat", "cat or dog", ""):
        with pytest.raises(GenerationError, match="not one of the labels"):
            match_label(wrong, LABELS)


def test_answers_are_kept_while_a_writing_query_runs(configured, tmp_path):
    configured.scripts = {"red": [answer("cat")], "blue": [answer("dog")]}
    session = open_photos(tmp_path / "wh", {"a": picture("red", (50, 50)), "b": picture("blue", (50, 50))})
    session.sql("CREATE TABLE verdicts AS SELECT name, ai_classify(image, ['cat', 'dog']).label AS label FROM photos")
    assert session.sql("SELECT * FROM verdicts ORDER BY name").to_pylist() == [
        {"name": "a", "label": "cat"}, {"name": "b", "label": "dog"}]
    session.sql_script("BEGIN; UPDATE photos SET name = name || '!'; "
                       "CREATE TABLE again AS SELECT ai_classify(image, ['cat', 'dog']) AS r FROM photos; COMMIT")
    assert session.sql(f"SELECT count(*) AS n FROM {ANSWERS_TABLE}").to_pylist() == [{"n": 2}]
    assert len(configured.requests) == 2
    session.close()


def test_the_key_is_not_a_config_file_key(monkeypatch, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'chat_api_base = "http://localhost:11434/v1"\nchat_api_key = "{KEY}"\n')
    monkeypatch.setenv("SIGHTQL_CONFIG", str(config))
    with pytest.raises(ConfigError, match="unknown key 'chat_api_key'") as refused:
        Settings.from_env()
    assert KEY not in str(refused.value)
