"""Registry models from SQL: references in classify, embed(), cosine search, create_function."""

from __future__ import annotations

import numpy as np
import pytest

import sightql
from sightql.errors import ConfigError, RegistryError, SightQLError
from tests.registry_models import (
    DEFECTS, KERAS_INPUT, PHOTOS, defect_cnn, keras_outputs, photo_batch, tiny_classifier, write_onnx,
)


@pytest.fixture
def photos(session, photos_dir):
    session.load_images("photos", photos_dir)
    return session


def _log(session, tmp_path, name="m", favour=0, **kwargs):
    path = write_onnx(tiny_classifier(2, favour=favour), tmp_path / f"{name}-{favour}.onnx")
    return session.registry.log_model(path, name, labels=["cat", "dog"], **kwargs)


def test_classify_follows_references_and_a_moved_alias_at_the_next_query(photos, tmp_path):
    _log(photos, tmp_path, favour=0)
    _log(photos, tmp_path, favour=1)
    model = photos.registry.get_model("m")
    model.set_alias("prod", "v1")
    query = "SELECT DISTINCT classify(?, image).label AS label FROM photos"
    assert photos.sql(query, ["m@v1"]).to_pylist() == [{"label": "cat"}]
    assert photos.sql(query, ["m@v2"]).to_pylist() == [{"label": "dog"}]
    assert photos.sql(query, ["m"]).to_pylist() == [{"label": "dog"}]  # no default: the latest
    assert photos.sql(query, ["m@prod"]).to_pylist() == [{"label": "cat"}]
    model.set_alias("prod", "v2")
    assert photos.sql(query, ["m@prod"]).to_pylist() == [{"label": "dog"}]
    with pytest.raises(SightQLError, match="no version or alias 'staging'"):
        photos.sql(query, ["m@staging"])


def test_an_image_embedding_is_nearest_to_itself(photos, tmp_path):
    path = write_onnx(tiny_classifier(8, seed=3), tmp_path / "emb.onnx")
    photos.registry.log_model(path, "emb", task="embedding")
    rows = photos.sql(
        """WITH e AS (SELECT relative_path, embed('emb', image) AS v FROM photos)
           SELECT a.relative_path AS query, b.relative_path AS hit, list_cosine_similarity(a.v, b.v) AS cos
           FROM e a, e b ORDER BY a.relative_path, cos DESC"""
    ).to_pylist()
    by_query: dict[str, list] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    assert len(by_query) == 8
    for query, hits in by_query.items():
        assert hits[0]["hit"] == query and hits[0]["cos"] == pytest.approx(1.0, abs=1e-6)
    typed = photos.sql("SELECT typeof(embed('emb', image)) AS t FROM photos LIMIT 1").to_pylist()
    assert typed == [{"t": "FLOAT[]"}]


def test_bad_image_rows_are_null_with_an_error_for_every_model_function(session, photos_dir, tmp_path):
    _log(session, tmp_path)
    session.create_function("pet_kind", "m")
    session.sql("CREATE TABLE mixed (name VARCHAR, image BLOB)")
    rows = [("coffee.jpg", (photos_dir / "coffee.jpg").read_bytes()), ("text.jpg", b"not an image"),
            ("empty.jpg", b""), ("chelsea.jpg", (photos_dir / "chelsea.jpg").read_bytes())]
    for name, data in rows:
        session.sql("INSERT INTO mixed VALUES (?, ?)", [name, data])
    out = {
        r["name"]: r
        for r in session.sql(
            "SELECT name, classify('m', image) AS c, classify_topk('m@v1', image, 2) AS t, embed('m', image) AS e, "
            "pet_kind(image) AS f FROM mixed"
        ).to_pylist()
    }
    for bad in ("text.jpg", "empty.jpg"):
        assert out[bad]["c"]["label"] is None and out[bad]["c"]["error"]
        assert out[bad]["t"] is None and out[bad]["e"] is None
        assert out[bad]["f"]["label"] is None and out[bad]["f"]["error"]
    for good in ("coffee.jpg", "chelsea.jpg"):
        assert out[good]["c"]["label"] == "cat" and out[good]["f"] == out[good]["c"]
        assert len(out[good]["e"]) == 2


def test_strict_mode_fails_embed_on_a_bad_image(warehouse, tmp_path):
    with sightql.connect(warehouse) as session:
        _log(session, tmp_path)
    with sightql.connect(warehouse, on_error="raise") as strict:
        with pytest.raises(SightQLError, match="not an image"):
            strict.sql("SELECT embed('m', ?::BLOB)", [b"not an image"])


def test_created_functions_survive_reopening_and_follow_the_alias(warehouse, photos_dir, tmp_path):
    with sightql.connect(warehouse) as session:
        session.load_images("photos", photos_dir)
        _log(session, tmp_path, favour=0)
        _log(session, tmp_path, favour=1)
        session.registry.get_model("m").set_alias("prod", "v1")
        session.create_function("pet_kind", "m@prod")
        path = write_onnx(tiny_classifier(4), tmp_path / "emb.onnx")
        session.registry.log_model(path, "emb", task="embedding")
        session.create_function("pet_vector", "emb")
    with sightql.connect(warehouse) as session:
        labels = session.sql("SELECT DISTINCT pet_kind(image).label AS l FROM photos").to_pylist()
        assert labels == [{"l": "cat"}]
        session.registry.get_model("m").set_alias("prod", "v2")
        assert session.sql("SELECT DISTINCT pet_kind(image).label AS l FROM photos").to_pylist() == [{"l": "dog"}]
        vector = session.sql("SELECT pet_vector(image) AS v FROM photos LIMIT 1").to_pylist()[0]["v"]
        assert len(vector) == 4
        assert session.sql("SELECT * FROM sightql_functions ORDER BY name").column("name").to_pylist() == [
            "pet_kind", "pet_vector"]
        with pytest.raises(RegistryError, match="pet_kind"):
            session.registry.delete_model("m")
        session.drop_function("pet_kind")
        with pytest.raises(SightQLError, match="pet_kind"):
            session.sql("SELECT pet_kind(image) FROM photos")
    with sightql.connect(warehouse) as session:
        assert session.sql("SELECT name FROM sightql_functions").to_pylist() == [{"name": "pet_vector"}]


@pytest.mark.parametrize(
    "name, error, match",
    [("classify", RegistryError, "SightQL function"), ("embed", RegistryError, "SightQL function"),
     ("lower", RegistryError, "DuckDB function"), ("bad name; --", ConfigError, "not allowed"),
     ("main.fn", RegistryError, "schema")],
)
def test_function_names_may_not_shadow_or_inject(session, tmp_path, name, error, match):
    _log(session, tmp_path)
    with pytest.raises(error, match=match):
        session.create_function(name, "m")


def test_a_function_for_an_unknown_model_is_refused(session):
    with pytest.raises(SightQLError, match="no model named 'nothing'"):
        session.create_function("fn", "nothing@prod")


@pytest.mark.slow
def test_tutorial_mobilenet_state_dict_with_imagenet_labels(session, photos_dir, tmp_path):
    """The tutorial flow: a torchvision state dict plus the 1,000 ImageNet labels, called by a named function."""
    import torch
    import torchvision

    torch.manual_seed(0)
    module = torchvision.models.mobilenet_v3_large(weights=None).eval()
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(module.state_dict(), path)
    labels = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    session.registry.log_model(path, "mobilenet", labels=labels, architecture="mobilenet_v3_large")
    session.registry.get_model("mobilenet").set_alias("prod", "v1")
    session.create_function("image_recognition_using_bytes", "mobilenet@prod")
    session.load_images("photos", photos_dir)
    rows = session.sql(
        "SELECT image_recognition_using_bytes(image) AS named, classify('mobilenet@v1', image) AS direct FROM photos"
    ).to_pylist()
    assert len(rows) == 8
    for row in rows:
        assert row["named"]["label"] in labels and row["named"]["error"] is None
        assert row["named"]["label"] == row["direct"]["label"]
        assert row["named"]["score"] == pytest.approx(row["direct"]["score"])


@pytest.mark.slow
def test_tutorial_keras_defect_cnn_as_a_named_sql_function(session, photos_dir, tmp_path):
    """The tutorial flow: a 6-class Keras .h5 CNN, alias prod, called as metal_defect_detection(image)."""
    from sightql.models.keras.backend import import_keras

    model = defect_cnn(import_keras())
    path = tmp_path / "defects.h5"
    model.save(path)
    version = session.registry.log_model(path, "defects", labels=DEFECTS, input=KERAS_INPUT)
    session.registry.get_model("defects").set_alias("prod", version.version)
    session.create_function("metal_defect_detection", "defects@prod")
    session.sql("CREATE TABLE plates (name VARCHAR, image BLOB)")
    for name in PHOTOS:
        session.sql("INSERT INTO plates VALUES (?, ?)", [name, (photos_dir / name).read_bytes()])
    for name, data in (("text.jpg", b"not an image"), ("empty.jpg", b"")):
        session.sql("INSERT INTO plates VALUES (?, ?)", [name, data])
    out = {r["name"]: r["d"] for r in session.sql("SELECT name, metal_defect_detection(image) AS d FROM plates").to_pylist()}

    expected = keras_outputs(model, photo_batch(photos_dir, version.card.input))
    for name, probabilities in zip(PHOTOS, expected):
        assert out[name]["label"] == DEFECTS[int(np.argmax(probabilities))] and out[name]["error"] is None
        assert abs(out[name]["score"] - float(probabilities.max())) <= 1e-4
    for bad in ("text.jpg", "empty.jpg"):
        assert out[bad]["label"] is None and out[bad]["score"] is None and out[bad]["error"]


def test_a_registry_model_used_from_sql_and_predict_loads_once_and_clear_cache_empties_it(photos, tmp_path):
    from sightql.models.loader import cache_stats, clear_cache

    clear_cache()
    _log(photos, tmp_path, favour=1)
    before = cache_stats()["loads"]
    assert photos.sql("SELECT DISTINCT classify('m', image).label AS label FROM photos").to_pylist() == [{"label": "dog"}]
    report = photos.predict("m", "photos", into="m_labels", progress=False)
    assert report.predicted > 0 and report.errors == 0
    one = photos.sql("SELECT stage_file(image.stage, image.relative_path) AS b FROM photos LIMIT 1").to_pylist()[0]["b"]
    assert photos.classify([one], "m")[0]["error"] is None  # the bytes of a row's FILE value
    assert cache_stats()["loads"] - before == 1  # SQL, predict and classify share one loaded copy
    assert cache_stats()["cached"] >= 1
    clear_cache()
    assert cache_stats()["cached"] == 0
    photos.sql("SELECT classify('m', image).label FROM photos LIMIT 1")
    assert cache_stats()["loads"] - before == 2  # cleared, so loaded (and hashed) again
