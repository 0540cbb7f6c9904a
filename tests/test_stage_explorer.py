"""Stage sampling (sightql.explore.sampling) and the Stage explorer page, on real photos and the real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import sightql
from sightql.errors import ConfigError, StageError
from sightql.explore.sampling import MAX_SAMPLE, SampledImage, sample_stage, summarize
from tests.registry_models import tiny_classifier, write_onnx

PAGE = Path(sightql.__file__).parent / "app" / "views" / "stage_explorer.py"
XRAY = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
# Folders named after ImageNet labels. The bundled model's top label for each photo is the
# folder's name, except the astronaut, which it calls a bobsled.
FOLDERS = {"tripod": "camera.png", "espresso": "coffee.jpg", "tiger cat": "chelsea.jpg", "palace": "china.jpg",
           "daisy": "flower.jpg", "missile": "rocket.jpg", "football helmet": "astronaut.jpg"}


def sample_of(session, *args, **kwargs):
    return sample_stage(session.warehouse, session.registry, session.stages, *args, **kwargs)


@pytest.fixture
def labelled_stage(session, photos_dir):
    stage = session.create_stage("pics")
    for folder, name in FOLDERS.items():
        stage.write_bytes(f"set/{folder}/{name}", (photos_dir / name).read_bytes())
    return stage


def _page(warehouse: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("SIGHTQL_HOME", str(warehouse))
    return AppTest.from_file(str(PAGE), default_timeout=300).run()


def _sample(at: AppTest, stage: str, prefix: str, n: int, model: str = "imagenet") -> AppTest:
    at.selectbox(key="model").set_value(model)
    at.selectbox(key="explorer_stage").set_value(stage)
    at.text_input(key="explorer_prefix").set_value(prefix)
    at.number_input(key="explorer_n").set_value(n)
    at.button[0].click()
    return at.run()


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ---- library ------------------------------------------------------------------------
def test_sample_classifies_staged_files_and_scores_them_against_their_folders(session, labelled_stage):
    sample = sample_of(session, "@pics/set", n=MAX_SAMPLE, seed=0, model="imagenet")
    assert sample.files_under_prefix == 7 and len(sample.rows) == 7
    by_folder = {r.truth: r for r in sample.rows}
    assert by_folder["espresso"].label == "espresso" and by_folder["espresso"].score > 0.5
    assert by_folder["football helmet"].label == "bobsled" and by_folder["football helmet"].correct is False
    assert all(r.thumbnail is not None and r.thumbnail[:2] == b"\xff\xd8" for r in sample.rows)  # JPEG thumbnails
    summary = sample.summary
    assert (summary.n, summary.judged, summary.correct, summary.errors) == (7, 7, 6, 0)
    assert summary.accuracy == pytest.approx(6 / 7) and summary.unmatched_folders == []
    assert summary.predicted["bobsled"] == 1 and sum(summary.predicted.values()) == 7
    assert {c.folder: c.correct for c in summary.per_class}["football helmet"] == 0


def test_sample_is_reproducible_with_a_seed_and_bounded(session, labelled_stage):
    first = [r.relative_path for r in sample_of(session, "@pics/set", 3, seed=1).rows]
    assert first == [r.relative_path for r in sample_of(session, "@pics/set", 3, seed=1).rows]
    assert len(first) == 3 and first == sorted(first)
    others = {tuple(r.relative_path for r in sample_of(session, "@pics/set", 3, seed=s).rows) for s in range(2, 6)}
    assert len(others | {tuple(first)}) > 1  # other seeds pick other files
    with pytest.raises(ConfigError, match=f"between 1 and {MAX_SAMPLE}"):
        sample_of(session, "@pics/set", MAX_SAMPLE + 1)
    with pytest.raises(ConfigError, match="between 1"):
        sample_of(session, "@pics/set", 0)
    with pytest.raises(StageError, match="no files under @pics/nothing"):
        sample_of(session, "@pics/nothing", 3)
    with pytest.raises(StageError, match="no stage named 'nope'"):
        sample_of(session, "@nope/set", 3)


def test_bad_files_get_their_error_and_the_others_are_classified(session, labelled_stage, photos_dir):
    good = (photos_dir / "coffee.jpg").read_bytes()
    labelled_stage.write_bytes("set/espresso/truncated.jpg", good[: len(good) // 3])
    labelled_stage.write_bytes("set/espresso/notes.txt", b"not an image")
    sample = sample_of(session, "@pics/set", 9, seed=0)
    errors = {r.relative_path: r.error for r in sample.rows if r.error}
    assert set(errors) == {"set/espresso/truncated.jpg", "set/espresso/notes.txt"}
    assert "truncated" in errors["set/espresso/truncated.jpg"] and "not an image" in errors["set/espresso/notes.txt"]
    assert sum(r.label is not None for r in sample.rows) == 7
    assert (sample.summary.errors, sample.summary.judged, sample.summary.correct) == (2, 7, 6)
    assert "2 image(s)" in sample.summary.note and "left out" in sample.summary.note


def _row(path: str, label: str | None, error: str | None = None, correct: bool | None = None) -> SampledImage:
    return SampledImage(path, path.split("/")[-2] if "/" in path else None, label, 0.9, error, correct, None)


def test_summary_claims_no_accuracy_when_folders_are_not_labels():
    rows = [_row("a/NORMAL/1.jpg", "tabby"), _row("a/PNEUMONIA/2.jpg", "tabby")]
    summary = summarize(rows, ["tabby", "tiger cat"])
    assert summary.accuracy is None and summary.judged == 0
    assert summary.unmatched_folders == ["NORMAL", "PNEUMONIA"]
    assert "do not include the folder names (NORMAL, PNEUMONIA)" in summary.note and "no accuracy" in summary.note
    loose = summarize([_row("1.jpg", "tabby")], ["tabby"])
    assert loose.accuracy is None and "not in class folders" in loose.note


def test_summary_counts_only_folders_that_are_labels():
    rows = [_row("NORMAL/1.jpg", "normal", correct=True), _row("NORMAL/2.jpg", "pneumonia", correct=False),
            _row("other/3.jpg", "normal"), _row("NORMAL/4.jpg", None, error="corrupt")]
    summary = summarize(rows, ["normal", "pneumonia"])
    assert (summary.n, summary.judged, summary.correct, summary.accuracy) == (4, 2, 1, 0.5)
    assert summary.unmatched_folders == ["other"] and "other are not among the model's labels" in summary.note
    counts = {c.folder: (c.images, c.errors, c.correct) for c in summary.per_class}
    assert counts == {"NORMAL": (3, 1, 1), "other": (1, 0, None)}


# ---- the page -------------------------------------------------------------------------
def test_page_shows_labels_confidences_and_accuracy(warehouse, session, labelled_stage, photos_dir, monkeypatch):
    labelled_stage.write_bytes("set/espresso/broken.jpg", b"\xff\xd8\xff\xe0 truncated")
    session.close()
    at = _sample(_page(warehouse, monkeypatch), "pics", "set/", 8)
    assert not at.exception
    cells = [m.value for m in at.markdown if m.value.startswith("**")]
    assert "**espresso** 90.1% — folder *espresso* :green[right]" in cells
    assert any(c.startswith("**bobsled**") and ":red[wrong]" in c for c in cells)
    assert len(cells) == 7 and len(at.image) == 7  # every readable photo, with its thumbnail
    assert len(at.error) == 1 and at.error[0].value.startswith("set/espresso/broken.jpg: ")  # its own cell
    assert _metrics(at) == {"Images": "8", "Errors": "1", "Correct": "6 / 7", "Accuracy": "85.7%"}
    per_folder = at.dataframe[0].value
    assert per_folder.set_index("folder").loc["espresso", "errors"] == 1
    assert any("Accuracy over 7 image(s)" in i.value for i in at.info)


def test_page_without_stages_says_how_to_make_one(warehouse, monkeypatch):
    at = _page(warehouse, monkeypatch)
    assert not at.exception and "sightql stage create" in at.info[0].value


@pytest.fixture
def xray_warehouse(warehouse, session, tmp_path):
    if not XRAY.is_dir():
        pytest.skip("the shared chest X-ray sample is absent")
    session.create_stage("xray").put(str(XRAY))
    onnx = write_onnx(tiny_classifier(2, seed=3), tmp_path / "xray_tiny.onnx")
    session.registry.log_model(onnx, "xray_tiny", labels=["normal", "pneumonia"])  # lower case on purpose
    session.close()
    return warehouse


def test_chest_xray_folders_match_a_model_with_those_labels(xray_warehouse, monkeypatch):
    at = _sample(_page(xray_warehouse, monkeypatch), "xray", "test/", 10, model="xray_tiny")
    assert not at.exception and not at.error
    metrics = _metrics(at)
    assert metrics["Images"] == "10" and metrics["Correct"].endswith(" / 10")
    correct = int(metrics["Correct"].split(" / ")[0])
    assert metrics["Accuracy"] == f"{correct / 10:.1%}"
    cells = [m.value for m in at.markdown if m.value.startswith("**")]
    assert len(cells) == 10 and all(c.startswith(("**normal**", "**pneumonia**")) for c in cells)
    assert sum(":green[right]" in c for c in cells) == correct
    assert all("folder *NORMAL*" in c or "folder *PNEUMONIA*" in c for c in cells)


def test_chest_xray_with_imagenet_claims_no_accuracy(xray_warehouse, monkeypatch):
    at = _sample(_page(xray_warehouse, monkeypatch), "xray", "train/", 4)
    assert not at.exception and not at.error
    assert _metrics(at)["Accuracy"] == "none claimed"
    assert "do not include the folder names" in at.warning[0].value and "no accuracy is claimed" in at.warning[0].value
