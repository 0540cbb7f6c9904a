"""The model chosen in the sidebar stays chosen when the user moves to another page of the app."""

from __future__ import annotations

from pathlib import Path

import sightql
import sightql.app
from tests.registry_models import tiny_classifier, write_onnx

MAIN = Path(sightql.app.__file__).parent / "main.py"


def test_the_chosen_model_stays_chosen_on_every_page(warehouse, photos_dir, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    with sightql.connect(warehouse) as s:
        s.registry.log_model(write_onnx(tiny_classifier(2, seed=3), tmp_path / "tiny.onnx"), "tiny", labels=["a", "b"])
        s.create_stage("pics").write_bytes("coffee.jpg", (photos_dir / "coffee.jpg").read_bytes())
    monkeypatch.setenv("SIGHTQL_HOME", str(warehouse))
    at = AppTest.from_file(str(MAIN), default_timeout=120).run()
    assert not at.exception
    at.sidebar.selectbox[0].select("tiny").run()
    assert at.sidebar.selectbox[0].value == "tiny"
    at.switch_page("views/stage_explorer.py").run()
    assert not at.exception and at.sidebar.selectbox[0].value == "tiny"
    # A page without a picker in between is where Streamlit drops a widget's own state.
    at.switch_page("views/models.py").run()
    assert not at.exception and not at.sidebar.selectbox
    at.switch_page("views/recognize.py").run()
    assert not at.exception and at.sidebar.selectbox[0].value == "tiny"
