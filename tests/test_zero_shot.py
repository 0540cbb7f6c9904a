"""Zero-shot labels with a dual encoder (issue 15, part 2): a CLIP-shaped model with random weights, built
here, logged from each supported layout (a Hugging Face CLIP folder; ONNX encoders + tokenizer.json named
by zero_shot.json), answers classify_labels from SQL as transformers does directly."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sightql
from sightql.errors import ConfigError, ModelNotFoundError, SightQLError, UnsafeModelError
from sightql.images.preprocess import preprocess

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LABELS = ["scratch", "dent", "ok"]
TEMPLATES = ["a photo of a {}.", "a close-up of a {} on metal."]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte-to-character table: the base vocabulary of a byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A tiny random CLIPModel, its tokenizer and processor saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("hf") / "tiny-clip"
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"])
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    model = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(np.log(30.0))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder, model, tokenizer


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class _Image(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels):
        return _features(self.model.get_image_features(pixel_values=pixels))


class _Text(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return _features(self.model.get_text_features(input_ids=ids, attention_mask=mask))


@pytest.fixture(scope="module")
def onnx_pair(clip, tmp_path_factory):
    """The same model as two ONNX encoders, its tokenizer.json and a zero_shot.json manifest."""
    _, model, tokenizer = clip
    folder = tmp_path_factory.mktemp("pair") / "tiny-pair"
    folder.mkdir()
    tokens = tokenizer(["a photo of a dent."], return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Image(model), (torch.zeros(1, 3, 32, 32),), str(folder / "image.onnx"), dynamo=False,
                          input_names=["pixel_values"], output_names=["embeds"], dynamic_axes={"pixel_values": {0: "n"}})
        torch.onnx.export(_Text(model), (tokens["input_ids"], tokens["attention_mask"]), str(folder / "text.onnx"),
                          dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["embeds"],
                          dynamic_axes={"input_ids": {0: "n", 1: "l"}, "attention_mask": {0: "n", 1: "l"}})
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    manifest = {"image_encoder": "image.onnx", "text_encoder": "text.onnx", "tokenizer": "tokenizer.json",
                "logit_scale": 30.0, "input": {"size": 32, "mean": [0.48145466, 0.4578275, 0.40821073],
                                               "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic",
                                               "resize": "shorter", "crop_pct": 1.0}}
    (folder / "zero_shot.json").write_text(json.dumps(manifest))
    return folder


OPEN_CLIP_PREPROCESS = {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3], "interpolation": "bicubic", "resize_mode": "shortest"}


@pytest.fixture(scope="module")
def open_clip_folder(tmp_path_factory):
    """A tiny random open_clip CLIP (built from a config of our own) saved in open_clip's hub layout."""
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("oc") / "tiny-open-clip"
    folder.mkdir()
    config = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": OPEN_CLIP_PREPROCESS}))
    torch.manual_seed(1)
    model = open_clip.create_model(f"local-dir:{folder}").eval()  # random weights: the folder has none yet
    with torch.no_grad():
        model.logit_scale.fill_(np.log(30.0))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder, model, open_clip.get_tokenizer(f"local-dir:{folder}")


def open_clip_reference(model, tokenizer, pixels: np.ndarray, labels, templates, scale: float):
    """classify_labels computed with open_clip itself."""
    with torch.no_grad():
        image = model.encode_image(torch.from_numpy(pixels)).numpy()
        text = model.encode_text(tokenizer([t.replace("{}", label) for label in labels for t in templates])).numpy()
    return _finish(image, text, labels, templates, scale)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(7)
    out = []
    for size in ((40, 32), (64, 48), (32, 32), (50, 70)):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


@pytest.fixture()
def session(tmp_path):
    with sightql.connect(tmp_path / "wh") as s:
        yield s


def reference(model, tokenizer, pixels: np.ndarray, labels, templates, scale: float):
    """classify_labels computed with transformers itself: CLIP's template averaging and softmax."""
    with torch.no_grad():
        image = _features(model.get_image_features(pixel_values=torch.from_numpy(pixels))).numpy()
        texts = [t.replace("{}", label) for label in labels for t in templates]
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        text = _features(model.get_text_features(**tokens)).numpy()
    return _finish(image, text, labels, templates, scale)


def _finish(image, text, labels, templates, scale: float):
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    per_label = text.reshape(len(labels), len(templates), -1).mean(axis=1)
    per_label /= np.linalg.norm(per_label, axis=1, keepdims=True)
    logits = scale * image @ per_label.T
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return image, text, exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("layout", ["transformers", "onnx-dual", "open_clip"])
def test_each_layout_answers_from_sql_as_the_framework_does(layout, clip, onnx_pair, images, session, request):
    if layout == "open_clip":
        source, model, tokenizer = request.getfixturevalue("open_clip_folder")
        mean = tuple(OPEN_CLIP_PREPROCESS["mean"])
    else:
        folder, model, tokenizer = clip
        source, mean = (folder if layout == "transformers" else onnx_pair), (0.48145466, 0.4578275, 0.40821073)
    version = session.registry.log_model(source, "clipref", task="zero-shot", templates=TEMPLATES)
    assert (version.task, version.framework) == ("zero-shot", layout)
    card = version.card
    assert card.templates == tuple(TEMPLATES) and card.logit_scale == pytest.approx(30.0, rel=1e-5)
    assert (card.input.height, card.input.width, card.input.interpolation) == (32, 32, "bicubic")
    assert card.input.mean == pytest.approx(mean)

    pixels = np.stack([preprocess(data, card.input) for data in images])
    compute = open_clip_reference if layout == "open_clip" else reference
    ref_images, _, ref_scores = compute(model, tokenizer, pixels, LABELS, TEMPLATES, 30.0)

    session.sql("CREATE TABLE photos (id INTEGER, image BLOB)")
    for i, data in enumerate(images):
        session.sql("INSERT INTO photos VALUES (?, ?)", [i, data])
    rows = session.sql("SELECT classify_labels('clipref', image, $labels) AS r FROM photos ORDER BY id",
                       {"labels": LABELS}).to_pylist()
    for row, expected in zip(rows, ref_scores):
        r = row["r"]
        assert r["error"] is None
        assert [s["label"] for s in r["scores"]] == LABELS
        np.testing.assert_allclose([s["score"] for s in r["scores"]], expected, atol=1e-4)
        assert r["label"] == LABELS[int(np.argmax(expected))] and r["score"] == pytest.approx(expected.max(), abs=1e-4)

    direct = session.classify_labels(images, LABELS, model="clipref")
    assert [d["label"] for d in direct] == [row["r"]["label"] for row in rows]
    np.testing.assert_allclose([[s["score"] for s in d["scores"]] for d in direct], ref_scores, atol=1e-4)
    assert direct[0]["model_version"] == "clipref@v1"

    embedded = session.sql("SELECT embed('clipref', image) AS v FROM photos ORDER BY id").column("v").to_pylist()
    np.testing.assert_allclose(np.array(embedded), ref_images, atol=1e-4)
    text_vector = session.sql("SELECT embed_text('clipref', 'a photo of a dent.') AS v").column("v")[0].as_py()
    np.testing.assert_allclose(text_vector, session.predictor("clipref").embed_texts(["a photo of a dent."])[0], atol=1e-6)
    encoder = session.predictor("clipref")
    np.testing.assert_allclose(encoder.embed_images(pixels), ref_images, atol=1e-4)


def test_embed_texts_agrees_with_transformers(clip, onnx_pair, session):
    _, model, tokenizer = clip
    texts = ["a photo of a dent.", "ok", "a much longer description of a scratch on brushed steel"]
    with torch.no_grad():
        expected = _features(model.get_text_features(**tokenizer(texts, padding=True, return_tensors="pt"))).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    for name, source in (("hf", clip[0]), ("pair", onnx_pair)):
        session.registry.log_model(source, name, task="zero-shot")
        vectors = session.predictor(name).embed_texts(texts)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, expected, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_open_clip_embed_texts_agrees_and_pickle_weights_are_refused(open_clip_folder, session, tmp_path):
    folder, model, tokenizer = open_clip_folder
    texts = ["a photo of a dent.", "ok"]
    with torch.no_grad():
        expected = model.encode_text(tokenizer(texts)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    session.registry.log_model(folder, "oc")  # an open_clip folder is zero-shot without being told
    np.testing.assert_allclose(session.predictor("oc").embed_texts(texts), expected, atol=1e-4)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "open_clip_config.json").write_text((folder / "open_clip_config.json").read_text())
    (pickled / "open_clip_pytorch_model.bin").write_bytes(b"a pickle would run code")
    with pytest.raises(UnsafeModelError, match="without \\*.safetensors"):
        session.registry.log_model(pickled, "pickled", task="zero-shot")


def test_label_texts_are_embedded_once_for_a_query_over_many_rows(onnx_pair, images, session, monkeypatch):
    session.registry.log_model(onnx_pair, "pair", task="zero-shot")
    encoder = session.predictor("pair")
    calls = []
    original = encoder.embed_texts
    monkeypatch.setattr(encoder, "embed_texts", lambda texts: calls.append(list(texts)) or original(texts))
    session.sql("CREATE TABLE many AS SELECT i AS id, $img::BLOB AS image FROM range(3000) t(i)", {"img": images[1]})
    rows = session.sql("SELECT classify_labels('pair', image, ['scratch', 'dent', 'ok']).label AS label FROM many").column(
        "label").to_pylist()
    assert len(rows) == 3000 and len(set(rows)) == 1 and rows[0] in LABELS
    assert calls == [["a photo of a scratch.", "a photo of a dent.", "a photo of a ok."]]
    session.sql("SELECT classify_labels('pair', image, ['dent', 'ok', 'rust']) FROM many LIMIT 5")
    assert calls[1:] == [["a photo of a rust."]]  # cached per label: only the new one is embedded
    session.sql("SELECT classify_labels('pair', image, ['dent', 'ok'], ['{} damage']) FROM many LIMIT 5")
    assert calls[2:] == [["dent damage", "ok damage"]]  # other templates are another key


def test_bad_image_is_that_rows_error(onnx_pair, images, session):
    session.registry.log_model(onnx_pair, "pair", task="zero-shot")
    out = session.classify_labels([images[0], b"not an image"], LABELS)  # the one zero-shot model registered
    assert out[0]["error"] is None and out[0]["label"] in LABELS
    assert out[1]["label"] is None and out[1]["scores"] is None and out[1]["error"]


def test_label_lists_of_one_or_none_and_wrong_models_give_one_sentence(onnx_pair, images, session):
    session.registry.log_model(onnx_pair, "pair", task="zero-shot")
    session.sql("CREATE TABLE p AS SELECT $img::BLOB AS image", {"img": images[0]})
    for labels in (["ok"], []):
        with pytest.raises(ConfigError, match=rf"at least 2 labels to choose between, got {len(labels)}"):
            session.sql("SELECT classify_labels('pair', image, $labels::VARCHAR[]) FROM p", {"labels": labels})
        with pytest.raises(ConfigError, match="at least 2 labels"):
            session.classify_labels(images, labels, model="pair")
    with pytest.raises(ConfigError, match=r"'imagenet' is a classification model, not a zero-shot one.*zero-shot models registered: pair"):
        session.sql("SELECT classify_labels('imagenet', image, ['a', 'b']) FROM p")
    with pytest.raises(SightQLError, match=r"zero-shot model with no fixed labels; use classify_labels"):
        session.sql("SELECT classify('pair', image) FROM p")
    with pytest.raises(ConfigError, match=r"zero-shot model with no fixed labels; use classify_labels"):
        session.classify(images, model="pair")
    with pytest.raises(ConfigError, match=r"has no \{\} for the label") as caught:
        session.sql("SELECT classify_labels('pair', image, ['a', 'b'], ['a photo']) FROM p")
    assert "\n" not in str(caught.value)


def test_offline_without_a_zero_shot_model_says_how_to_log_one(images, session):
    session.sql("CREATE TABLE p AS SELECT $img::BLOB AS image", {"img": images[0]})
    with pytest.raises(ModelNotFoundError, match=r"no zero-shot model is registered.*sightql models log \./clip-folder --name clip --task zero-shot"):
        session.sql("SELECT classify_labels('clip', image, ['cat', 'dog']) FROM p")
    with pytest.raises(ModelNotFoundError, match=r"--task zero-shot"):
        session.classify_labels(images, ["cat", "dog"])
    with pytest.raises(ConfigError, match=r"not a zero-shot one.*--task zero-shot"):
        session.sql("SELECT classify_labels('imagenet', image, ['cat', 'dog']) FROM p")


@pytest.mark.parametrize("query, said", [
    ("SELECT classify_labels('clip', ''::BLOB, ['cat', 'dog'])", "--task zero-shot"),
    ("SELECT classify_labels('imagenet', ''::BLOB, ['cat', 'dog'])", "not a zero-shot one"),
])
def test_cli_errors_are_one_sentence_with_exit_2(tmp_path, query, said):
    done = subprocess.run(
        [sys.executable, "-m", "sightql", "sql", query, "--warehouse", str(tmp_path / "cli-wh")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and said in " ".join((done.stderr + done.stdout).split())


def test_logging_refuses_what_is_not_a_dual_encoder(clip, onnx_pair, tmp_path, session):
    with pytest.raises(ConfigError, match="labels per query"):
        session.registry.log_model(clip[0], "c", labels=["a", "b"])
    with pytest.raises(ConfigError, match="task='zero-shot'"):
        session.registry.log_model(clip[0], "c", task="embedding")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "zero_shot.json").write_text(json.dumps({"image_encoder": "../image.onnx", "text_encoder": "text.onnx"}))
    with pytest.raises(ConfigError, match="not a file inside broken"):
        session.registry.log_model(broken, "b", task="zero-shot")
    version = session.registry.log_model(clip[0], "auto")  # a CLIP folder is zero-shot without being told
    assert version.task == "zero-shot" and version.runtime == "runs through transformers (PyTorch)"


def test_cli_logs_a_zero_shot_folder_with_its_templates(clip, tmp_path):
    home = str(tmp_path / "cli-log")
    logged = subprocess.run(
        [sys.executable, "-m", "sightql", "models", "log", str(clip[0]), "--name", "clip", "--task", "zero-shot",
         "--template", "a photo of a {}.", "--template", "a {} on metal", "--warehouse", home],
        capture_output=True, text=True, timeout=180,
    )
    assert logged.returncode == 0, logged.stderr
    assert "logged clip@v1 (transformers, zero-shot" in logged.stdout
    shown = subprocess.run([sys.executable, "-m", "sightql", "models", "show", "clip", "--warehouse", home],
                           capture_output=True, text=True, timeout=120)
    assert "logit scale 30, templates ['a photo of a {}.', 'a {} on metal']" in shown.stdout, shown.stdout + shown.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "sightql", "models", "log", str(clip[0]), "--name", "c2", "--task", "zero-shot",
         "--template", "no placeholder", "--warehouse", home],
        capture_output=True, text=True, timeout=180,
    )
    assert refused.returncode == 2 and "has no {} for the label" in " ".join(refused.stderr.split())


def test_text_to_image_search_uses_the_zero_shot_models_text_tower(clip, images, session):
    """An index built with a zero-shot model answers a text query in the image tower's space: the same
    distances as 1 - embed(image) . embed_texts([query]), each already checked against transformers above."""
    session.registry.log_model(clip[0], "clip", task="zero-shot")
    session.sql("CREATE TABLE shots (id INTEGER PRIMARY KEY, image BLOB)")
    for i, data in enumerate(images):
        session.sql("INSERT INTO shots VALUES (?, ?)", [i, data])
    assert session.create_index("shots", model="clip").embedded == len(images)
    query = "a photo of a scratch."
    vectors = np.array(session.sql("SELECT embed('clip', image) AS v FROM shots ORDER BY id").column("v").to_pylist(),
                       np.float32)
    expected = 1 - vectors @ session.predictor("clip").embed_texts([query])[0]
    found = session.similar_images("shots", query, k=len(images))
    assert found["key"].to_pylist() == [int(i) for i in np.argsort(expected, kind="stable")]
    np.testing.assert_allclose(found["distance"].to_pylist(), np.sort(expected), atol=1e-4)
    sql = session.sql("SELECT key, distance FROM similar_images('shots', ?, 2)", [query])
    assert sql["key"].to_pylist() == [str(k) for k in found["key"].to_pylist()[:2]]
