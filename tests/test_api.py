"""The HTTP API: auth, predict (multipart and JSON) equal to SQL classify_topk, limits, errors, and `sightql serve`."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

import sightql
from sightql.api import ApiLimits, create_app
from sightql.errors import WarehouseBusyError
from sightql.models.loader import builtin_version
from tests.api_server import running_server
from tests.registry_models import tiny_classifier, write_onnx

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREDICT = "/v1/models/imagenet/predict"
JPEGS_AND_PNG = ["chelsea.jpg", "coffee.jpg", "camera.png"]


@pytest.fixture(scope="module")
def home(tmp_path_factory, model_cache) -> Path:
    """One warehouse for the module (sharing the exported bundled model), with two registry versions of 'pets'."""
    folder = tmp_path_factory.mktemp("api") / "warehouse"
    shutil.copytree(model_cache, folder / "models", copy_function=os.link)
    with sightql.connect(folder) as session:
        for favour in (0, 1):  # v1 always answers 'cat', v2 always 'dog'
            path = write_onnx(tiny_classifier(2, favour=favour), folder.parent / f"pets-{favour}.onnx")
            session.registry.log_model(path, "pets", labels=["cat", "dog"])
        session.registry.get_model("pets").set_alias("prod", "v1")
    return folder


@pytest.fixture(scope="module")
def client(home) -> Iterator[TestClient]:
    with TestClient(create_app(home, TOKEN, ApiLimits())) as test_client:
        yield test_client


def _file(photos_dir: Path, name: str) -> tuple[str, tuple[str, bytes, str]]:
    return ("file", (name, (photos_dir / name).read_bytes(), "application/octet-stream"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sql_topk(home: Path, images: list[bytes], k: int = 5) -> list[list[dict]]:
    with sightql.connect(home) as session:
        return [session.sql("SELECT classify_topk('imagenet', ?, ?) AS top", [blob, k]).to_pylist()[0]["top"]
                for blob in images]


def _assert_same_top(api_top: list[dict], sql_top: list[dict]) -> None:
    assert [item["label"] for item in api_top] == [item["label"] for item in sql_top]
    for got, want in zip(api_top, sql_top):
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)


# ---- auth ---------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
                         ids=["none", "wrong", "not-bearer"])
def test_v1_endpoints_answer_401_without_the_right_token(client, photos_dir, headers):
    for response in (client.get("/v1/models", headers=headers),
                     client.post(PREDICT, headers=headers, files=[_file(photos_dir, "chelsea.jpg")])):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "SIGHTQL_API_TOKEN" in response.json()["detail"]
    unread = client.post(PREDICT, headers={**headers, "Content-Type": "application/json"}, content=b"{not json")
    assert unread.status_code == 401  # the token is checked before the body is parsed


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}], ids=["none", "wrong"])
def test_the_token_is_checked_before_any_size(home, headers):
    with TestClient(create_app(home, TOKEN, ApiLimits(max_request_bytes=50_000))) as small:
        huge = {"Content-Length": str(10**12), "Content-Type": "multipart/form-data; boundary=x"}
        refused = small.post(PREDICT, headers={**headers, **huge}, content=b"")
        assert refused.status_code == 401 and "SIGHTQL_API_TOKEN" in refused.json()["detail"]
        allowed = small.post(PREDICT, headers={**AUTH, **huge}, content=b"")
        assert allowed.status_code == 413
        assert allowed.json()["detail"].startswith("the request is 1,000,000,000,000 bytes, over the 50,000-byte limit")


def test_health_and_docs_are_open_and_document_the_bearer_scheme(client):
    assert client.get("/healthz").json() == {"status": "ok", "version": sightql.__version__}
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/v1/models", "/v1/models/{ref}/predict"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    body = spec["paths"]["/v1/models/{ref}/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)


def test_an_app_without_a_token_is_open(home, photos_dir):
    with TestClient(create_app(home, None)) as open_client:
        response = open_client.post(PREDICT, files=[_file(photos_dir, "coffee.jpg")])
    assert response.status_code == 200
    assert response.json()["predictions"][0]["top"][0]["label"] == "espresso"


# ---- predict ------------------------------------------------------------------------------

def test_predict_equals_sql_classify_topk_for_the_same_bytes(client, home, photos_dir):
    images = [(photos_dir / name).read_bytes() for name in JPEGS_AND_PNG]
    expected = _sql_topk(home, images)
    response = client.post(PREDICT, headers=AUTH, files=[_file(photos_dir, name) for name in JPEGS_AND_PNG])
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "imagenet" and body["k"] == 5
    assert body["model_version"] == builtin_version("imagenet")
    assert [p["name"] for p in body["predictions"]] == JPEGS_AND_PNG
    for prediction, sql_top in zip(body["predictions"], expected):
        assert prediction["error"] is None and prediction["model_version"] == builtin_version("imagenet")
        _assert_same_top(prediction["top"], sql_top)
    for name, blob, sql_top in zip(JPEGS_AND_PNG, images, expected):  # one image per request gives the same
        (alone,) = client.post(PREDICT, headers=AUTH, files=[_file(photos_dir, name)]).json()["predictions"]
        _assert_same_top(alone["top"], sql_top)


def test_json_base64_one_image_and_a_batch(client, home, photos_dir):
    coffee, chelsea = (photos_dir / "coffee.jpg").read_bytes(), (photos_dir / "chelsea.jpg").read_bytes()
    sql_coffee, sql_chelsea = _sql_topk(home, [coffee, chelsea], k=3)
    one = client.post(f"{PREDICT}?k=3", headers=AUTH, json={"image": _b64(coffee)})
    assert one.status_code == 200
    (prediction,) = one.json()["predictions"]
    assert prediction["name"] == "image" and len(prediction["top"]) == 3
    _assert_same_top(prediction["top"], sql_coffee)
    wrapped = base64.encodebytes(chelsea).decode()  # `base64 FILE` output: 76-column lines
    batch = client.post(f"{PREDICT}?k=3", headers=AUTH,
                        json={"images": [f"data:image/jpeg;base64,{_b64(coffee)}", wrapped]})
    assert batch.status_code == 200
    first, second = batch.json()["predictions"]
    assert (first["name"], second["name"]) == ("images[0]", "images[1]")
    _assert_same_top(first["top"], sql_coffee)
    _assert_same_top(second["top"], sql_chelsea)


def test_a_bad_image_in_a_batch_gets_its_own_error_and_the_others_go_on(client, photos_dir):
    files = [_file(photos_dir, "chelsea.jpg"), _file(photos_dir, "notes.txt"), _file(photos_dir, "coffee.jpg")]
    response = client.post(f"{PREDICT}?k=2", headers=AUTH, files=files)
    assert response.status_code == 200
    cat, text, coffee = response.json()["predictions"]
    assert text["top"] is None and text["error"] == "not an image: the bytes match no known image format"
    assert cat["error"] is None and cat["top"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    assert coffee["top"][0]["label"] == "espresso" and len(coffee["top"]) == 2
    assert [p["index"] for p in (cat, text, coffee)] == [0, 1, 2]


def test_bad_base64_is_422_alone_and_an_item_error_in_a_batch(client, photos_dir):
    alone = client.post(PREDICT, headers=AUTH, json={"image": "this is not base64!"})
    assert alone.status_code == 422
    assert alone.json()["detail"].startswith("image: not valid base64")
    batch = client.post(PREDICT, headers=AUTH,
                        json={"images": ["%%%", _b64((photos_dir / "coffee.jpg").read_bytes())]})
    assert batch.status_code == 200
    bad, good = batch.json()["predictions"]
    assert bad["error"].startswith("not valid base64") and bad["model_version"] is None
    assert good["top"][0]["label"] == "espresso"


@pytest.mark.parametrize("send", ["multipart", "json"])
def test_one_image_that_is_not_an_image_is_422_with_a_message(client, photos_dir, send):
    text = (photos_dir / "notes.txt").read_bytes()
    if send == "multipart":
        response = client.post(PREDICT, headers=AUTH, files=[("file", ("notes.txt", text, "text/plain"))])
        name = "notes.txt"
    else:
        response = client.post(PREDICT, headers=AUTH, json={"images": [_b64(text)]})
        name = "images[0]"
    assert response.status_code == 422
    assert response.json() == {"detail": f"{name}: not an image: the bytes match no known image format"}


@pytest.mark.parametrize(
    "ref, version, label",
    [("pets", "pets@v2", "dog"), ("pets@v1", "pets@v1", "cat"), ("pets%40prod", "pets@v1", "cat"),
     ("pets@prod", "pets@v1", "cat"), ("pets@latest", "pets@v2", "dog")],
)
def test_registry_references_answer_with_the_exact_version(client, photos_dir, ref, version, label):
    response = client.post(f"/v1/models/{ref}/predict?k=1", headers=AUTH, files=[_file(photos_dir, "rocket.jpg")])
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == version
    assert body["predictions"][0]["top"][0]["label"] == label


@pytest.mark.parametrize("ref, sentence", [
    ("nope", "no model named 'nope' in the registry"),
    ("nope%40prod", "no model named 'nope' in the registry"),
    ("pets@staging", "pets has no version or alias 'staging'; versions: v1, v2; aliases: prod"),
])
def test_an_unknown_model_is_404_in_one_sentence(client, photos_dir, ref, sentence):
    response = client.post(f"/v1/models/{ref}/predict", headers=AUTH, files=[_file(photos_dir, "coffee.jpg")])
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith(sentence) and "\n" not in detail
    if ref.startswith("nope"):
        assert detail.endswith("(built-in models: imagenet, minilm)")


@pytest.mark.parametrize("url, body, status, words", [
    (f"{PREDICT}?k=0", {"image": "AAAA"}, 422, "k: Input should be greater than or equal to 1"),
    ("/v1/models/minilm/predict", {"image": "AAAA"}, 422, "minilm reads text, not images"),
    ("/v1/models/bad%20name/predict", {"image": "AAAA"}, 422, "model name 'bad name' is not allowed"),
    (PREDICT, {"image": "AAAA", "images": ["AAAA"]}, 422, "give exactly one of 'image' or 'images'"),
    (PREDICT, {"picture": "AAAA"}, 422, "picture: Extra inputs are not permitted"),
    (PREDICT, {"images": []}, 422, "the request has no image"),
    (PREDICT, None, 415, "a body without a content type is not accepted"),
])
def test_malformed_requests_get_one_sentence(client, url, body, status, words):
    response = client.post(url, headers=AUTH, json=body) if body is not None else client.post(url, headers=AUTH, content=b"x")
    assert response.status_code == status
    assert words in response.json()["detail"]


# ---- limits -------------------------------------------------------------------------------

def _chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_an_oversized_upload_is_413_by_its_length_and_while_streaming(home, photos_dir):
    limits = ApiLimits(max_request_bytes=50_000)
    big = (photos_dir / "camera.png").read_bytes()  # 142 kB
    assert len(big) > limits.max_request_bytes
    with TestClient(create_app(home, TOKEN, limits)) as small:
        declared = small.post(PREDICT, headers=AUTH, files=[("file", ("camera.png", big, "image/png"))])
        assert declared.status_code == 413
        assert declared.json()["detail"].startswith(f"the request is {int(declared.request.headers['content-length']):,} bytes, over the 50,000-byte limit")
        streamed = small.post(PREDICT, headers={**AUTH, "Content-Type": "application/json"},
                              content=_chunks(f'{{"image": "{_b64(big)}"}}'.encode()))
        assert "content-length" not in streamed.request.headers  # chunked: only counting can stop it
        assert streamed.status_code == 413
        assert "SIGHTQL_API_MAX_REQUEST_BYTES" in streamed.json()["detail"]
        fits = small.post(PREDICT, headers=AUTH, files=[_file(photos_dir, "coffee.jpg")])
        assert fits.status_code == 200


def test_per_image_and_per_request_image_limits(home, photos_dir):
    limits = ApiLimits(max_image_bytes=50_000, max_images=3)
    with TestClient(create_app(home, TOKEN, limits)) as small:
        alone = small.post(PREDICT, headers=AUTH, files=[_file(photos_dir, "camera.png")])
        assert alone.status_code == 413
        size = (photos_dir / "camera.png").stat().st_size
        assert alone.json()["detail"].startswith(f"camera.png: {size:,} bytes, over the 50,000-byte limit per image")
        batch = small.post(PREDICT, headers=AUTH, files=[_file(photos_dir, "camera.png"), _file(photos_dir, "coffee.jpg")])
        assert batch.status_code == 200
        too_big, coffee = batch.json()["predictions"]
        assert "SIGHTQL_MAX_IMAGE_BYTES" in too_big["error"] and coffee["top"][0]["label"] == "espresso"
        many = small.post(PREDICT, headers=AUTH, files=[_file(photos_dir, "coffee.jpg")] * 4)
        assert many.status_code == 413 and "4 images, over the limit of 3" in many.json()["detail"]


@pytest.mark.parametrize("count", [5, 200])
def test_more_files_than_the_limit_is_413_naming_the_limit_and_the_variable(home, count):
    with TestClient(create_app(home, TOKEN, ApiLimits(max_images=3))) as small:
        files = [("file", (f"{i}.jpg", b"tiny", "image/jpeg")) for i in range(count)]
        many = small.post(PREDICT, headers=AUTH, files=files)
        assert many.status_code == 413
        assert many.json()["detail"] == (
            "the request has more than 3 images, over the limit of 3 per request; "
            "split it, or start the server with a larger SIGHTQL_API_MAX_IMAGES"
        )
    with TestClient(create_app(home, TOKEN, ApiLimits())) as default:  # 64 by default
        files = [("file", (f"{i}.jpg", b"tiny", "image/jpeg")) for i in range(100)]
        many = default.post(PREDICT, headers=AUTH, files=files)
        assert many.status_code == 413 and "over the limit of 64 per request" in many.json()["detail"]


# ---- models, and a busy warehouse ---------------------------------------------------------

def test_models_lists_builtins_and_registry_versions_with_aliases(client):
    response = client.get("/v1/models", headers=AUTH)
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert models["imagenet"]["source"] == "builtin"
    assert models["imagenet"]["version"] == builtin_version("imagenet")
    assert (models["minilm"]["input"], models["minilm"]["task"]) == ("text", "embedding")
    pets = models["pets"]
    assert (pets["source"], pets["default_version"], pets["latest_version"]) == ("registry", "v2", "v2")
    assert pets["aliases"] == {"prod": "v1"}
    assert [(v["ref"], v["aliases"], v["task"]) for v in pets["versions"]] == [
        ("pets@v1", ["prod"], "classification"), ("pets@v2", [], "classification")]


HOLD = """
import sys, time, sightql
s = sightql.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
s.close()
"""


def test_a_held_warehouse_gives_503_naming_the_holder_then_works_again(home, photos_dir):
    with TestClient(create_app(home, TOKEN, ApiLimits(lock_wait=0.3))) as impatient:
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "holding"
            busy = impatient.post(PREDICT, headers=AUTH, files=[_file(photos_dir, "coffee.jpg")])
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "1"
            detail = busy.json()["detail"]
            assert re.search(rf"is in use by process {holder.pid} \(python[0-9.]* -c ", detail), detail  # its command
            assert "SIGHTQL_LOCK_WAIT" in detail
            assert impatient.get("/v1/models", headers=AUTH).status_code == 503
        finally:
            holder.communicate("done\n", timeout=30)
        assert impatient.post(PREDICT, headers=AUTH, files=[_file(photos_dir, "coffee.jpg")]).status_code == 200


def _busy_request(app_limits: ApiLimits, home: Path, outcome: dict) -> None:
    with TestClient(create_app(home, TOKEN, app_limits)) as impatient:
        started = time.monotonic()
        response = impatient.get("/v1/models", headers=AUTH)
        outcome.update(elapsed=time.monotonic() - started, status=response.status_code, detail=response.json()["detail"])


def test_a_503_says_how_long_it_really_waited(home):
    """A request that waits for its turn in this process and then for the file says the whole wait."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        first, second = {}, {}
        ahead = threading.Thread(target=_busy_request, args=(ApiLimits(lock_wait=1.5), home, first))
        ahead.start()
        while ahead.is_alive():  # until the first request holds this process's turn (waiting for the file)
            try:
                sightql.connect(home, lock_wait=0).close()
            except WarehouseBusyError as exc:
                if "another session of this process" in str(exc):
                    break
            time.sleep(0.01)
        _busy_request(ApiLimits(lock_wait=3.0), home, second)  # waits for the turn, then for the file
        ahead.join()
    finally:
        holder.communicate("done\n", timeout=30)
    for outcome in (first, second):
        assert outcome["status"] == 503
        said = float(re.search(r"\(waited ([0-9.]+) s\)", outcome["detail"]).group(1))
        # What the message says is the time the request waited, measured: never more than the
        # client saw, and at most a rounding and the request's own handling less.
        assert outcome["elapsed"] - 0.5 <= said <= outcome["elapsed"] + 0.05, outcome


# ---- the optional dependency, and `sightql serve` as a real process ------------------------

def test_without_fastapi_the_fix_is_named(tmp_path):
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "sys.argv = ['sightql', 'serve', '-w', sys.argv[1]]\n"
        "from sightql.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "wh")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "error: fastapi is not installed; run: pip install 'sightql[api]'\n"


def test_sightql_serve_runs_a_real_server_with_token_and_limits(home, photos_dir):
    env = {"SIGHTQL_API_TOKEN": TOKEN, "SIGHTQL_API_MAX_REQUEST_BYTES": "100000"}
    with running_server(home, env) as server:
        coffee = (photos_dir / "coffee.jpg").read_bytes()
        url = f"{server.base}/v1/models/imagenet/predict"
        assert httpx.post(url, files={"file": ("coffee.jpg", coffee)}, timeout=60).status_code == 401
        ok = httpx.post(f"{url}?k=5", headers=AUTH, files={"file": ("coffee.jpg", coffee)}, timeout=60)
        assert ok.status_code == 200
        _assert_same_top(ok.json()["predictions"][0]["top"], _sql_topk(home, [coffee])[0])
        encoded = f"{server.base}/v1/models/pets%40prod/predict"
        assert httpx.post(encoded, headers=AUTH, json={"image": _b64(coffee)}, timeout=60).json()["model_version"] == "pets@v1"
        big = (photos_dir / "camera.png").read_bytes()  # 142 kB > 100 kB
        declared = httpx.post(url, headers=AUTH, files={"file": ("camera.png", big)}, timeout=60)
        assert declared.status_code == 413
        streamed = httpx.post(url, headers={**AUTH, "Content-Type": "application/json"},
                              content=_chunks(f'{{"image": "{_b64(big)}"}}'.encode()), timeout=60)
        assert streamed.status_code == 413 and "went over the 100,000-byte limit" in streamed.json()["detail"]
        assert httpx.get(f"{server.base}/healthz", timeout=10).status_code == 200  # still serving
    assert "Traceback" not in server.stderr and "warning" not in server.stderr.lower()


def test_sightql_serve_refuses_a_public_host_without_a_token_and_warns_on_loopback(home):
    env = {k: v for k, v in os.environ.items() if k != "SIGHTQL_API_TOKEN"}
    refused = subprocess.run([sys.executable, "-m", "sightql", "serve", "-w", str(home), "--host", "0.0.0.0"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: refusing to serve on 0.0.0.0 without a token: set SIGHTQL_API_TOKEN")
    assert refused.stderr.count("\n") == 1
    with running_server(home, {"SIGHTQL_API_TOKEN": ""}) as server:
        assert httpx.get(f"{server.base}/v1/models", timeout=30).status_code == 200
    assert "warning: SIGHTQL_API_TOKEN is not set, so anyone on this machine can use the API" in server.stderr
