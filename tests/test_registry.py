"""The model registry on a real warehouse: formats, versions, references, aliases, safety."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

import sightql
from sightql.config import Settings
from sightql.errors import (
    ArtifactIntegrityError, ConfigError, ModelNotFoundError, RegistryError, UnsafeModelError,
)
from sightql.models import quiet
from sightql.models.loader import clear_cache
from tests.registry_models import (
    DEFECTS, KERAS_INPUT, PHOTOS, defect_cnn, eager_probabilities, fresh_process_vectors, keras_outputs, photo_batch,
    resnet18, tiny_classifier, write_onnx,
)

LABELS10 = [f"class_{i}" for i in range(10)]
SIZE64 = {"size": 64}
SENTENCES = ("A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today.")


def _save_format(fmt: str, module, folder: Path) -> tuple[Path, dict]:
    import torch

    if fmt == "pth":
        path = folder / "resnet18.pth"
        torch.save(module.state_dict(), path)
        return path, {"architecture": "resnet18"}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = folder / "resnet18.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
        return path, {"architecture": "resnet18"}
    if fmt == "torchscript":
        path = folder / "resnet18_scripted.pt"
        with quiet.torchscript():  # a user's TorchScript file; torch >= 2.10 calls the format deprecated
            torch.jit.save(torch.jit.script(module), str(path))
        return path, {}
    return write_onnx(module, folder / "resnet18.onnx", size=64), {}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pth", "safetensors", "torchscript", "onnx"])
def test_each_format_round_trips_through_python_sql_and_a_fresh_process(fmt, warehouse, photos_dir, tmp_path):
    module = resnet18()
    path, extra = _save_format(fmt, module, tmp_path)
    with sightql.connect(warehouse) as session:
        session.load_images("photos", photos_dir)
        version = session.registry.log_model(path, "net", labels=LABELS10, input=SIZE64, **extra)
        assert (version.ref, version.framework) == ("net@v1", "onnx" if fmt == "onnx" else "torch")
        assert session.registry.show_models().to_pylist()[0]["latest_version"] == "v1"
        row = session.sql("SELECT * FROM sightql_model_versions WHERE name = 'net'").to_pylist()[0]
        stored = warehouse / row["artifact_path"]
        assert stored.is_file() and row["artifact_path"].startswith("models/registry/net/v1/")
        assert row["size_bytes"] == path.stat().st_size and row["trusted"] is False
        if fmt != "onnx":
            assert (warehouse / row["derived_onnx_path"]).is_file() and len(row["derived_onnx_sha256"]) == 64

        expected = eager_probabilities(module, photo_batch(photos_dir, version.card.input))
    for got in _outputs_everywhere(warehouse, photos_dir, "net", LABELS10):
        assert float(np.abs(got - expected).max()) <= 1e-4


def _outputs_everywhere(warehouse: Path, photos_dir: Path, name: str, labels: list[str] | tuple[str, ...]) -> list:
    """The registered model's outputs on PHOTOS (in PHOTOS order) from Python, from SQL, and from a fresh process."""
    names = sorted(PHOTOS)
    marks = ", ".join("?" for _ in names)
    with sightql.connect(warehouse) as session:
        predictor = session.predictor(f"{name}@v1")
        assert predictor.model_version == f"{name}@v1"
        from_python = predictor.predict(photo_batch(photos_dir, predictor.card.input))
        sql_rows = session.sql(
            f"SELECT relative_path, classify_topk(?, image, ?) AS top, embed(?, image) AS e "
            f"FROM photos WHERE relative_path IN ({marks}) ORDER BY relative_path",
            [name, len(labels), f"{name}@latest", *names],
        ).to_pylist()
    from_topk = np.array([[dict((t["label"], t["score"]) for t in r["top"])[label] for label in labels]
                          for r in sql_rows])
    from_embed = np.array([r["e"] for r in sql_rows])
    from_fresh = fresh_process_vectors(
        warehouse, f"SELECT embed(?, image) AS v FROM photos WHERE relative_path IN ({marks}) ORDER BY relative_path",
        [f"{name}@v1", *names],
    )
    back = [names.index(n) for n in PHOTOS]  # sorted rows back into PHOTOS order
    outputs = [from_python, from_topk[back], from_embed[back], from_fresh[back]]
    for got in outputs:
        assert got.shape == (len(PHOTOS), len(labels))
    return outputs


@pytest.fixture(scope="module")
def keras_defects(tmp_path_factory):
    """The tutorial-shaped defect CNN in memory and saved as .h5 and .keras."""
    from sightql.models.keras.backend import import_keras

    folder = tmp_path_factory.mktemp("keras")
    model = defect_cnn(import_keras())
    paths = {suffix: folder / f"defects{suffix}" for suffix in (".h5", ".keras")}
    for path in paths.values():
        model.save(path)
    return model, paths


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_keras_round_trips_through_python_sql_and_a_fresh_process(suffix, keras_defects, warehouse, photos_dir):
    from sightql.models.device import resolve_device
    from sightql.models.onnx.runtime import OnnxPredictor

    model, paths = keras_defects
    with sightql.connect(warehouse) as session:
        session.load_images("photos", photos_dir)
        version = session.registry.log_model(paths[suffix], "defects", labels=DEFECTS, input=KERAS_INPUT)
        assert (version.ref, version.framework, version.task) == ("defects@v1", "keras", "classification")
        spec = version.card.input
        assert (spec.height, spec.width, spec.channels, spec.layout, spec.resize) == (200, 200, 3, "NHWC", "squash")
        assert (spec.mean, spec.std, spec.scale) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), pytest.approx(1 / 255))
        assert version.card.output == "probabilities"  # the model ends in softmax; read from the file
        assert session.registry.show_models().to_pylist()[0]["latest_version"] == "v1"
        row = session.sql("SELECT * FROM sightql_model_versions WHERE name = ?", ["defects"]).to_pylist()[0]
        assert row["artifact_path"] == f"models/registry/defects/v1/defects{suffix}" and row["trusted"] is False
        assert (warehouse / row["derived_onnx_path"]).is_file() and len(row["derived_onnx_sha256"]) == 64
        if resolve_device(session.device) == "cpu":  # the CPU runs the ONNX derived at log time
            assert isinstance(session.predictor("defects"), OnnxPredictor)
    expected = keras_outputs(model, photo_batch(photos_dir, spec))
    assert float(np.abs(expected[0] - expected[1]).max()) > 1e-3  # outputs differ by photo
    for got in _outputs_everywhere(warehouse, photos_dir, "defects", DEFECTS):
        assert float(np.abs(got - expected).max()) <= 1e-4


@pytest.mark.slow
def test_keras_runs_with_keras_when_the_onnx_export_fails(keras_defects, session, photos_dir, monkeypatch):
    import sightql.models.keras.export as keras_export
    from sightql.models.keras.runtime import KerasPredictor

    def broken_export(*args, **kwargs):
        raise RuntimeError("no ONNX for this layer")

    monkeypatch.setattr(keras_export, "export_keras_model_onnx", broken_export)
    model, paths = keras_defects
    with pytest.warns(UserWarning, match=r"defects@v1 could not be exported to ONNX .*run with Keras on the CPU"):
        version = session.registry.log_model(paths[".h5"], "defects", labels=DEFECTS, input=KERAS_INPUT)
    assert version.record.derived_onnx_path is None and version.record.derived_onnx_sha256 is None
    predictor = session.predictor("defects")
    assert isinstance(predictor, KerasPredictor)
    batch = photo_batch(photos_dir, version.card.input)
    assert float(np.abs(predictor.predict(batch) - keras_outputs(model, batch)).max()) <= 1e-4


@pytest.mark.slow
def test_logging_a_keras_file_builds_the_model_once(keras_defects, session, monkeypatch):
    """The safety check, the card's defaults, the probe and the ONNX export share one built model."""
    from sightql.models.keras.backend import import_keras

    keras = import_keras()
    builds = []
    real_load = keras.models.load_model

    def counting_load(*args, **kwargs):
        builds.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(keras.models, "load_model", counting_load)
    _, paths = keras_defects
    version = session.registry.log_model(paths[".keras"], "defects", labels=DEFECTS, input=KERAS_INPUT)
    assert version.record.derived_onnx_path is not None
    assert len(builds) == 1


def test_logging_a_torch_state_dict_reads_it_once(session, tmp_path, monkeypatch):
    import torch

    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(classes=2).state_dict(), path)
    reads = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        reads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    version = session.registry.log_model(path, "net", architecture="resnet18", labels=["a", "b"], input=SIZE64)
    assert version.framework == "torch" and version.record.derived_onnx_path is not None
    assert len(reads) == 1


@pytest.mark.slow
def test_a_keras_card_that_disagrees_with_the_model_is_refused(keras_defects, session):
    _, paths = keras_defects
    with pytest.raises(ConfigError, match="input height 224 but the Keras model expects 200; fix the card"):
        session.registry.log_model(paths[".keras"], "defects", labels=DEFECTS, input={"size": 224})
    with pytest.raises(ConfigError, match="5 labels but the Keras model has 6 outputs"):
        session.registry.log_model(paths[".keras"], "defects", labels=DEFECTS[:5], input=KERAS_INPUT)
    assert session.registry.show_models().num_rows == 0


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_keras_lambda_layer_needs_trust(suffix, session, photos_dir, tmp_path):
    from sightql.models.keras.backend import import_keras

    model = defect_cnn(import_keras(), with_lambda=True)
    path = tmp_path / f"signed{suffix}"
    model.save(path)
    with pytest.raises(UnsafeModelError, match=rf"signed{suffix} contains a Keras Lambda layer \(to_signed.*pass trust=True"):
        session.registry.log_model(path, "signed", labels=DEFECTS, input=KERAS_INPUT)
    assert session.registry.show_models().num_rows == 0
    version = session.registry.log_model(path, "signed", labels=DEFECTS, input=KERAS_INPUT, trust=True)
    assert version.trusted is True
    batch = photo_batch(photos_dir, version.card.input)
    got = session.predictor("signed@v1").predict(batch)
    assert float(np.abs(got - keras_outputs(model, batch)).max()) <= 1e-4


@pytest.mark.slow
def test_minilm_folder_round_trips_through_python_sql_and_a_fresh_process(warehouse):
    from sightql.models.text_embedder import load_minilm, minilm_path

    expected = load_minilm().embed_texts(list(SENTENCES))
    with sightql.connect(warehouse) as session:
        version = session.registry.log_model(minilm_path(), "minilm-copy")  # a folder: task embedding, no labels
        assert (version.ref, version.framework, version.task) == ("minilm-copy@v1", "sentence-transformers", "embedding")
        assert (version.card.modality, version.card.output) == ("text", "embedding")
        assert session.registry.show_models().to_pylist()[0]["name"] == "minilm-copy"
        row = session.sql("SELECT * FROM sightql_model_versions WHERE name = ?", ["minilm-copy"]).to_pylist()[0]
        assert (warehouse / row["artifact_path"] / "model.safetensors").is_file() and row["derived_onnx_path"] is None
        session.sql("CREATE TABLE notes (i INTEGER, body VARCHAR)")
        for i, text in enumerate(SENTENCES):
            session.sql("INSERT INTO notes VALUES (?, ?)", [i, text])
        from_python = session.predictor("minilm-copy@v1").embed_texts(list(SENTENCES))
        session.create_function("note_vector", "minilm-copy@latest")
        rows = session.sql(
            "SELECT embed_text('minilm-copy@v1', body) AS a, embed_text('minilm', body) AS b, note_vector(body) AS c "
            "FROM notes ORDER BY i"
        ).to_pylist()
    from_sql = [np.array([r[column] for r in rows]) for column in "abc"]
    from_fresh = fresh_process_vectors(
        warehouse, "SELECT note_vector(body) AS v FROM notes ORDER BY i", [],
    )
    for got in (from_python, *from_sql, from_fresh):
        assert got.shape == (3, 384)
        assert float(np.abs(got - expected).max()) <= 1e-4


def test_in_memory_module_without_architecture_is_saved_as_torchscript(session, photos_dir):
    module = tiny_classifier(3)
    version = session.registry.log_model(module, "tiny", labels=["a", "b", "c"], input={"size": 32})
    assert version.artifact_path.name == "model.pt"
    batch = photo_batch(photos_dir, version.card.input)
    got = session.predictor("tiny").predict(batch)
    assert float(np.abs(got - eager_probabilities(module, batch)).max()) <= 1e-4


def _log_onnx(session, tmp_path, name="m", favour=0, **kwargs):
    path = write_onnx(tiny_classifier(2, favour=favour), tmp_path / f"{name}-{favour}.onnx")
    return session.registry.log_model(path, name, labels=["cat", "dog"], **kwargs)


def test_versions_number_themselves_and_references_resolve(session, tmp_path):
    v1 = _log_onnx(session, tmp_path, favour=0, metrics={"accuracy": 0.5}, description="first")
    v2 = _log_onnx(session, tmp_path, favour=1)
    assert (v1.version, v2.version) == ("v1", "v2")
    custom = _log_onnx(session, tmp_path, favour=1, version="2024-q1")
    with pytest.raises(RegistryError, match="already exists"):
        _log_onnx(session, tmp_path, version="2024-q1")
    model = session.registry.get_model("m")
    assert [v.version for v in model.versions()] == ["v1", "v2", "2024-q1"]
    assert model.version().version == "2024-q1" and model.version("latest").version == "2024-q1"
    model.set_default("v1")
    assert session.registry.resolve("m").version == "v1"
    model.set_alias("prod", "v2")
    assert session.registry.resolve("m@prod").version == "v2"
    assert model.version("prod").aliases == ["prod"]
    assert v1.metrics == {"accuracy": 0.5} and v1.card.labels == ("cat", "dog")
    v1.set_metric("accuracy", 0.75)
    v1.set_metric("f1", 0.7)
    assert v1.metrics == {"accuracy": 0.75, "f1": 0.7}
    assert v1.card.input.height == 32  # read from the ONNX file's static shape
    assert custom.ref == "m@2024-q1"
    shown = session.registry.show_models().to_pylist()
    assert shown[0]["versions"] == 3 and shown[0]["aliases"] == "prod=v2" and shown[0]["default_version"] == "v1"
    with pytest.raises(ModelNotFoundError, match="versions: v1, v2, 2024-q1; aliases: prod"):
        session.registry.resolve("m@staging")
    with pytest.raises(ModelNotFoundError, match="known models: m"):
        session.registry.get_model("other")
    with pytest.raises(ConfigError, match="would be read as a version"):
        model.set_alias("v7", "v1")
    model.remove_alias("prod")
    assert model.aliases() == {}


def test_deleting_versions_and_models(session, tmp_path):
    _log_onnx(session, tmp_path, favour=0)
    _log_onnx(session, tmp_path, favour=1)
    model = session.registry.get_model("m")
    model.set_alias("prod", "v1")
    with pytest.raises(RegistryError, match=r"alias prod points at m@v1; move it first, e.g. model.set_alias\('prod'"):
        model.delete_version("v1")
    model.set_alias("prod", "v2")
    model.delete_version("v1")
    assert [v.version for v in model.versions()] == ["v2"]
    assert not (session.home / "models/registry/m/v1").exists()
    session.registry.delete_model("m")
    assert session.registry.show_models().num_rows == 0
    assert session.sql("SELECT count(*) AS n FROM sightql_model_aliases").to_pylist() == [{"n": 0}]
    assert not (session.home / "models/registry/m").exists()


def test_labels_count_must_match_the_model_output(session, tmp_path):
    path = write_onnx(tiny_classifier(3), tmp_path / "three.onnx")
    with pytest.raises(ConfigError, match="the model gives 3 outputs but 2 labels were given"):
        session.registry.log_model(path, "m", labels=["a", "b"])
    with pytest.raises(ConfigError, match="needs labels="):
        session.registry.log_model(path, "m")
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\nb\nc\n")
    assert session.registry.log_model(path, "m", labels=labels_file).card.labels == ("a", "b", "c")
    # A failed log left nothing behind: one version, no staging folders.
    assert [p.name for p in (session.home / "models/registry/m").iterdir()] == ["v1"]


def test_size_limit_names_the_variable(warehouse, tmp_path):
    path = write_onnx(tiny_classifier(2), tmp_path / "m.onnx")
    with sightql.connect(warehouse, settings=Settings(max_model_bytes=100)) as session:
        with pytest.raises(ConfigError, match="SIGHTQL_MAX_MODEL_BYTES"):
            session.registry.log_model(path, "m", labels=["a", "b"])
        assert session.registry.show_models().num_rows == 0


def test_an_interrupted_log_registers_nothing(session, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(session.registry.store), "insert_version", crash)
    with pytest.raises(KeyboardInterrupt):
        _log_onnx(session, tmp_path)
    assert session.sql("SELECT count(*) AS n FROM sightql_model_versions").to_pylist() == [{"n": 0}]
    assert not (session.home / "models/registry/m").exists()


def test_a_pickled_module_needs_trust(session, photos_dir, tmp_path):
    import torch

    module = tiny_classifier(2)
    path = tmp_path / "whole.pth"
    torch.save(module, path)
    with pytest.raises(UnsafeModelError, match="trust=True"):
        session.registry.log_model(path, "pickled", labels=["a", "b"], input={"size": 32})
    version = session.registry.log_model(path, "pickled", labels=["a", "b"], input={"size": 32}, trust=True)
    assert version.trusted is True
    batch = photo_batch(photos_dir, version.card.input)
    assert float(np.abs(session.predictor("pickled").predict(batch) - eager_probabilities(module, batch)).max()) <= 1e-4


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_any_pickle_is_refused_with_one_sentence(session, tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps({"weights": Path("/etc/passwd")}))
    with pytest.raises(UnsafeModelError, match="trust=True"):
        session.registry.log_model(path, "evil", labels=["a"], architecture="resnet18")


def test_a_changed_artifact_is_never_loaded(session, tmp_path):
    version = _log_onnx(session, tmp_path)
    session.predictor("m")
    data = bytearray(version.artifact_path.read_bytes())
    data[-10] ^= 0xFF
    version.artifact_path.write_bytes(bytes(data))
    clear_cache()
    with pytest.raises(ArtifactIntegrityError, match=r"m@v1 .*changed since it was logged.*log the model again"):
        session.predictor("m")


def test_a_changed_derived_onnx_is_never_loaded(session, tmp_path):
    session.registry.log_model(tiny_classifier(2), "t", labels=["a", "b"], input={"size": 32})
    derived = session.home / session.sql("SELECT derived_onnx_path FROM sightql_model_versions").to_pylist()[0]["derived_onnx_path"]
    derived.write_bytes(derived.read_bytes() + b"\0")
    clear_cache()
    with pytest.raises(ArtifactIntegrityError, match="derived.onnx"):
        session.predictor("t@v1")


def test_a_model_loads_once_per_version_and_a_moved_alias_is_seen(session, tmp_path):
    _log_onnx(session, tmp_path, favour=0)
    _log_onnx(session, tmp_path, favour=1)
    model = session.registry.get_model("m")
    model.set_alias("prod", "v1")
    first = session.predictor("m@prod")
    assert session.predictor("m@v1") is first and first.model_version == "m@v1"
    model.set_alias("prod", "v2")
    assert session.predictor("m@prod").model_version == "m@v2"


def test_aliases_move_atomically_under_concurrent_readers(session, photos_dir, tmp_path):
    _log_onnx(session, tmp_path, favour=0)
    _log_onnx(session, tmp_path, favour=1)
    model = session.registry.get_model("m")
    model.set_alias("prod", "v1")
    batch = photo_batch(photos_dir, model.version("v1").card.input)
    expected = {"m@v1": 0, "m@v2": 1}
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []

    def mover() -> None:
        for i in range(200):
            model.set_alias("prod", "v2" if i % 2 == 0 else "v1")
        stop.set()

    def reader() -> None:
        while not stop.is_set() or len(seen) < 20:
            try:
                predictor = session.predictor("m@prod")
                answer = int(predictor.predict(batch).argmax(axis=1)[0])
            except Exception as exc:  # any failure is a finding, reported below
                failures.append(repr(exc))
                return
            if expected.get(predictor.model_version) != answer:
                failures.append(f"{predictor.model_version} answered {answer}")
            seen.append(predictor.model_version)

    threads = [threading.Thread(target=mover), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    assert set(seen) <= {"m@v1", "m@v2"} and len(seen) >= 20
    assert session.sql("SELECT count(*) AS n FROM sightql_model_aliases").to_pylist() == [{"n": 1}]


def test_builtin_names_and_bad_names_are_refused(session, tmp_path):
    path = write_onnx(tiny_classifier(2), tmp_path / "m.onnx")
    with pytest.raises(RegistryError, match="built-in"):
        session.registry.log_model(path, "imagenet", labels=["a", "b"])
    with pytest.raises(ConfigError, match="not allowed"):
        session.registry.log_model(path, "x'; DROP TABLE t; --", labels=["a", "b"])
    with pytest.raises(ConfigError, match="not allowed"):
        session.registry.resolve("m@../../etc")


def test_framework_detection_and_the_keras_dispatch(session, tmp_path):
    from sightql.registry.loading import LOADERS, load_keras, load_sentence_transformers
    from sightql.registry.intake import detect_framework

    assert detect_framework(Path("defects.h5"), trust=False) == "keras"
    assert detect_framework(Path("m.keras"), trust=False) == "keras"
    with pytest.raises(ConfigError, match="without modules.json"):
        detect_framework(tmp_path, trust=False)
    (tmp_path / "modules.json").write_text("[]")
    assert detect_framework(tmp_path, trust=False) == "sentence-transformers"
    assert LOADERS["keras"] is load_keras and LOADERS["sentence-transformers"] is load_sentence_transformers
    # A .h5 name reaches the Keras adapter, which reads the content and refuses what is not a model.
    h5 = tmp_path / "defects.h5"
    h5.write_text("not a model\n")
    with pytest.raises(ConfigError, match="defects.h5 is neither a .keras archive nor an HDF5 file"):
        session.registry.log_model(h5, "defects", labels=["a", "b"])
    assert session.registry.show_models().num_rows == 0
    assert not (session.home / "models/registry/defects").exists()  # no staging or empty folder left behind


@pytest.mark.slow
def test_in_memory_module_with_architecture_is_saved_as_safetensors(session, photos_dir):
    module = resnet18(seed=1)
    version = session.registry.log_model(module, "net", architecture="resnet18", labels=LABELS10, input=SIZE64)
    assert version.artifact_path.name == "model.safetensors"
    assert json.loads(version.record.load_options) == {"architecture": "resnet18", "format": "state_dict"}
    batch = photo_batch(photos_dir, version.card.input)
    got = session.predictor("net").predict(batch)
    assert float(np.abs(got - eager_probabilities(module, batch)).max()) <= 1e-4


# ---- messages and inputs (issue 10, item 7) -------------------------------------------------

def _files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_errors_name_the_users_file_and_a_refused_log_leaves_nothing_behind(session, tmp_path):
    import torch

    models = session.home / "models"
    before = _files_under(models)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weights": Path("/etc/passwd")}))
    with pytest.raises(UnsafeModelError, match=r"^evil\.pt is a pickle"):
        session.registry.log_model(evil, "evil", labels=["a"], architecture="resnet18")
    weights = tmp_path / "Pets_Weights.PTH"
    torch.save(resnet18(classes=2).state_dict(), weights)
    with pytest.raises(ConfigError, match=r"^Pets_Weights\.pth is a state dict, which needs its architecture"):
        session.registry.log_model(weights, "pets", labels=["cat", "dog"])
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx at all")
    with pytest.raises(ConfigError, match=r"^broken\.onnx is not a readable ONNX file"):
        session.registry.log_model(broken, "broken", labels=["a"])
    small = write_onnx(tiny_classifier(3), tmp_path / "small.onnx")
    with pytest.raises(ConfigError, match="3 outputs but 2 labels"):
        session.registry.log_model(small, "small", labels=["a", "b"])
    assert _files_under(models) == before  # no models/registry/<name>/ folder, no staging copy
    version = session.registry.log_model(small, "small", labels=["a", "b", "c"])
    assert version.artifact_path.name == "small.onnx"  # the stored copy keeps the user's name


def test_a_state_dict_saved_inside_data_parallel_fits_and_a_mismatch_is_one_short_sentence(photos_dir):
    import torch

    from sightql.models.torch.files import build_architecture

    module = resnet18(classes=4, seed=3)
    wrapped = torch.nn.DataParallel(module).state_dict()  # every key is 'module.<name>'
    assert all(key.startswith("module.") for key in wrapped)
    built = build_architecture("resnet18", wrapped)
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        assert torch.equal(built(torch.from_numpy(batch)), module(torch.from_numpy(batch)))

    import torchvision

    other = torchvision.models.mobilenet_v3_small(weights=None, num_classes=4).state_dict()
    with pytest.raises(ConfigError) as refused:
        build_architecture("resnet18", {f"module.{key}": value for key, value in other.items()})
    message = str(refused.value)
    assert message.startswith("the state dict does not fit architecture 'resnet18': 122 of the 122 tensors")
    assert f"{len(other)} of its {len(other)} keys are not in resnet18" in message
    assert message.endswith("pass the architecture it was trained with")
    assert "\n" not in message and len(message) < 400


@pytest.mark.slow
def test_a_data_parallel_state_dict_logs_and_answers_like_the_module(session, photos_dir, tmp_path):
    import torch

    module = resnet18(seed=2)
    path = tmp_path / "ddp_checkpoint.pth"
    torch.save({"state_dict": torch.nn.DataParallel(module).state_dict()}, path)
    version = session.registry.log_model(path, "net", architecture="resnet18", labels=LABELS10, input=SIZE64)
    batch = photo_batch(photos_dir, version.card.input)
    got = session.predictor("net").predict(batch)
    assert float(np.abs(got - eager_probabilities(module, batch)).max()) <= 1e-4


IMAGENET_STYLE = """{0: 'tench, Tinca tinca',
 1: 'goldfish, Carassius auratus',
 2: "carpenter's kit, tool kit"}
"""


@pytest.mark.parametrize("text, labels", [
    (IMAGENET_STYLE, ("tench, Tinca tinca", "goldfish, Carassius auratus", "carpenter's kit, tool kit")),
    ('{"2": "c", "0": "a", "1": "b"}', ("a", "b", "c")),
    ('["a", "b", "c"]\n', ("a", "b", "c")),
    ("\ufeffa\nb\n\nc\n", ("a", "b", "c")),
], ids=["python-dict", "json-dict", "json-list", "lines"])
def test_a_labels_file_may_be_lines_a_json_list_or_an_index_mapping(session, tmp_path, text, labels):
    path = write_onnx(tiny_classifier(3), tmp_path / "m.onnx")
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text(text, encoding="utf-8")
    assert session.registry.log_model(path, "m", labels=labels_file).card.labels == labels


@pytest.mark.parametrize("text, words", [
    ("{0: 'a', 2: 'c', 3: 'd'}", "has 3 labels but not index 1"),
    ("{0: 'a', 1: __import__('os').system('touch PWNED')}", "neither valid JSON nor a Python literal"),
    ("{'cat': 0, 'dog': 1}", "each key must be an index"),
    ("[1, 2]", "must list labels as non-empty strings"),
    ("{0: 'tench',\n 1: 'goldfish',\n", "neither valid JSON nor a Python literal"),
], ids=["gap", "code", "label-to-index", "numbers", "cut-short"])
def test_any_other_labels_file_is_refused_in_one_sentence(session, tmp_path, monkeypatch, text, words):
    monkeypatch.chdir(tmp_path)
    path = write_onnx(tiny_classifier(3), tmp_path / "m.onnx")
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text(text)
    with pytest.raises(ConfigError, match=words) as refused:
        session.registry.log_model(path, "m", labels=labels_file)
    assert str(refused.value).startswith("labels.txt ") and "\n" not in str(refused.value)
    assert not (tmp_path / "PWNED").exists()


def _dead_pid() -> int:
    import subprocess
    import sys

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # ended and reaped
    return done.pid


def test_a_staging_folder_of_a_killed_log_is_removed_by_the_next_log(session, tmp_path):
    import os

    model_dir = session.home / "models/registry/m"
    dead = model_dir / f"v1.partial-{_dead_pid()}-0123abcd"
    live = model_dir / f"v1.partial-{os.getpid()}-4567cdef"  # a log still under way in a live process
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "m.onnx").write_bytes(b"half a model")
    _log_onnx(session, tmp_path)
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["v1", live.name])
    with pytest.raises(ConfigError, match="unfinished copy"):
        session.registry.log_model(tmp_path / "m-0.onnx", "m", labels=["a", "b"], version="x.partial-1-0123abcd")


# A module whose forward blocks once the export is being checked (inference mode): by then the
# ONNX file is written under its temporary name and not yet renamed. The parent kills it there.
_EXPORT_THEN_HANG = """
import sys, time
from pathlib import Path
import torch
from sightql.images.spec import InputSpec
from sightql.models.card import ModelCard
from sightql.models.torch.export import export_onnx

class HangsInCheck(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        if torch.is_inference_mode_enabled():
            Path(sys.argv[2]).write_text("checking")
            time.sleep(600)
        return self.linear(x.flatten(1))

card = ModelCard(name="hang", task="classification", framework="torch", labels=("a", "b"),
                 input=InputSpec(height=8, width=8), output="logits")
export_onnx(HangsInCheck(), card, Path(sys.argv[1]))
"""


@pytest.mark.slow
def test_an_export_killed_outright_leaves_a_named_partial_that_the_next_export_removes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from sightql.images.spec import InputSpec
    from sightql.models.card import ModelCard
    from sightql.models.torch.export import export_onnx

    folder = tmp_path / "builtin"
    destination, checking = folder / "model.onnx", tmp_path / "checking"
    child = subprocess.Popen([sys.executable, "-c", _EXPORT_THEN_HANG, str(destination), str(checking)])
    try:
        while not checking.exists():
            assert child.poll() is None, "the export process ended before its check"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    left = [p.name for p in folder.iterdir()]
    assert len(left) == 1 and left[0].startswith(f"model.onnx.partial-{child.pid}-"), left
    assert (folder / left[0]).stat().st_size > 0  # the whole file was written; only the rename was missing

    card = ModelCard(name="tiny", task="classification", framework="torch", labels=("a", "b", "c"),
                     input=InputSpec(height=32, width=32), output="logits")
    export_onnx(tiny_classifier(3), card, destination)
    assert [p.name for p in folder.iterdir()] == ["model.onnx"]
