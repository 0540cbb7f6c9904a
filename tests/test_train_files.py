"""Training on a table whose image column holds FILE values (the images in a stage).

Real textile JPEGs in a real stage, a table made with ``to_file``, the real training loop; what is
checked: such a table trains like a BLOB table, labels come from its label column, and files gone or
changed before or during the run are left out with a warning while the run completes.
"""

from __future__ import annotations

import json

import pytest

from sightql.errors import SightQLError

TINY = dict(epochs=1, image_size=64, batch_size=4, progress=False, seed=0)


@pytest.fixture
def textile_files(session):
    """``@tex`` holds 6 textile JPEGs per class; ``textile`` is (relative_path, image file, defect)."""
    import conformal_clip_data

    stage = session.create_stage("tex")
    for label, folder in (("local", conformal_clip_data.local_dir()), ("nominal", conformal_clip_data.nominal_dir())):
        for path in sorted(folder.glob("*.jpg"))[:6]:
            stage.write_bytes(f"{label}/{path.name}", path.read_bytes())
    session.sql("CREATE TABLE textile (relative_path VARCHAR, image file, defect VARCHAR)")
    session.sql("INSERT INTO textile SELECT relative_path, to_file('@tex', relative_path), "
                "split_part(relative_path, '/', 1) FROM directory('@tex')")
    return stage


def _params(session, run_id: str) -> dict:
    (row,) = session.sql("SELECT params FROM training_runs WHERE run_id = ?", [run_id]).to_pylist()
    return json.loads(row["params"])["extra"]


def test_a_file_table_trains_registers_and_classifies(session, textile_files):
    result = session.train("texfile", "textile", label="defect", **TINY)
    assert result.status == "completed" and result.registered_version == "texfile@v1"
    extra = _params(session, result.run_id)
    assert extra["labels"] == ["local", "nominal"] and extra["train_images"] + extra["val_images"] == 12
    rows = session.sql("SELECT classify('texfile', image) AS c FROM textile").to_pylist()
    assert len(rows) == 12 and all(r["c"]["label"] in ("local", "nominal") and r["c"]["error"] is None for r in rows)


def test_a_file_gone_before_the_run_is_left_out_with_a_warning(session, textile_files):
    (gone,) = session.sql("SELECT relative_path FROM textile ORDER BY relative_path LIMIT 1").to_pylist()
    textile_files.remove(gone["relative_path"])
    with pytest.warns(UserWarning, match=r"1 file\(s\) of textile are left out: .*" + gone["relative_path"]):
        result = session.train("texfile", "textile", label="defect", register=False, **TINY)
    extra = _params(session, result.run_id)
    assert result.status == "completed" and extra["train_images"] + extra["val_images"] == 11


def test_a_file_changed_during_the_run_is_left_out_of_its_batch(session, textile_files, monkeypatch):
    from sightql.train.loop import Loop

    paths = [r["relative_path"] for r in session.sql("SELECT relative_path FROM textile").to_pylist()]
    original = Loop._train_one_epoch

    def change_files_then_train(self, epoch):
        for path in paths[:3]:  # planned, then rewritten: their FILE values no longer match
            textile_files.write_bytes(path, textile_files.read_bytes(path) + b"\0")
        return original(self, epoch)

    monkeypatch.setattr(Loop, "_train_one_epoch", change_files_then_train)
    with pytest.warns(UserWarning, match="is left out of this batch: .*changed since this FILE value was made"):
        # no image cache: the probe pass would have kept every image, and epoch 1 would read no file
        result = session.train("texfile", "textile", label="defect", register=False, image_cache_mb=0, **TINY)
    assert result.status == "completed"


def test_a_batch_whose_files_are_all_gone_fails_the_run_with_one_sentence(session, textile_files, monkeypatch):
    from sightql.train.loop import Loop

    paths = [r["relative_path"] for r in session.sql("SELECT relative_path FROM textile").to_pylist()]
    original = Loop._train_one_epoch

    def delete_all_then_train(self, epoch):
        for path in paths:
            textile_files.remove(path)
        return original(self, epoch)

    monkeypatch.setattr(Loop, "_train_one_epoch", delete_all_then_train)
    with pytest.warns(UserWarning), pytest.raises(SightQLError, match="no file of a batch of textile could be read"):
        session.train("texfile", "textile", label="defect", register=False, image_cache_mb=0, **TINY)  # reads every epoch
    (run,) = session.sql("SELECT status FROM training_runs").to_pylist()
    assert run["status"] == "failed"
