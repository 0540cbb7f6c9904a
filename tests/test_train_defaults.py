"""Settings chosen from the data (image size, resize mode, epochs, patience), ``lr='auto'``, early stopping.

Real textile JPEGs (and strips and thumbnails cut from them with Pillow), the bundled EfficientNet-Lite0.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sightql.train import auto_settings, lr_range

TINY = dict(epochs=1, batch_size=4, progress=False, seed=0)
CLI = [sys.executable, "-m", "sightql"]


def _textile(per_class: int) -> dict[str, list[bytes]]:
    import conformal_clip_data

    return {"local": [p.read_bytes() for p in sorted(conformal_clip_data.local_dir().glob("*.jpg"))[:per_class]],
            "nominal": [p.read_bytes() for p in sorted(conformal_clip_data.nominal_dir().glob("*.jpg"))[:per_class]]}


def _reshaped(data: bytes, box: tuple[int, int, int, int] | None = None, size: tuple[int, int] | None = None) -> bytes:
    """A real photo cut to ``box`` and/or resized to ``size``, saved as PNG."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if box is not None:
        image = image.crop(box)
    if size is not None:
        image = image.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _table(session, name: str, images: dict[str, list[bytes]]) -> str:
    import pyarrow as pa

    rows = [(label, data) for label, items in images.items() for data in items]
    table = pa.table({"image": pa.array([d for _, d in rows], pa.binary()), "label": [label for label, _ in rows]})
    session.con.register("incoming", table)
    session.sql(f"CREATE TABLE {name} AS SELECT * FROM incoming")
    session.con.unregister("incoming")
    return name


def _params(session, run_id: str) -> dict:
    (row,) = session.sql("SELECT params FROM training_runs WHERE run_id = ?", [run_id]).to_pylist()
    return json.loads(row["params"])


def _rows_and_reader(session, table: str):
    from sightql.train.sources import table_examples
    from sightql.train.splits import split_by_content

    examples, reader = table_examples(session.warehouse, table, "image", "label")
    return split_by_content(examples, 0.2, 0).train, reader


# ---- the rules --------------------------------------------------------------------------
def test_the_rules_give_the_documented_choices():
    assert auto_settings.choose_image_size(28, 224)[0] == 128  # Animal-MNIST
    assert auto_settings.choose_image_size(40, 224)[0] == 160 and auto_settings.choose_image_size(60, 224)[0] == 224
    assert auto_settings.choose_image_size(150, 224)[0] == 224 and auto_settings.choose_image_size(250, 224)[0] == 224
    assert auto_settings.choose_resize(1.33)[0] == "squash" and auto_settings.choose_resize(3.1)[0] == "pad"
    assert auto_settings.choose_epochs(1400, 32)[0] == 14  # textile: 44 steps an epoch
    assert auto_settings.choose_epochs(8000, 32)[0] == 3  # Animal-MNIST
    assert auto_settings.choose_epochs(20, 4)[0] == 30 and auto_settings.choose_epochs(1400, 32, world_size=4)[0] == 30
    assert [auto_settings.choose_patience(e)[0] for e in (3, 9, 14, 30)] == [3, 3, 5, 10]


def test_small_images_are_upscaled_to_128_px_and_an_explicit_size_wins(session):
    from sightql.images.spec import InputSpec
    from sightql.train.options import TrainOptions

    small = {label: [_reshaped(d, size=(28, 28)) for d in items] for label, items in _textile(6).items()}
    rows, reader = _rows_and_reader(session, _table(session, "small", small))
    options = TrainOptions(name="m", source="small")
    chosen_options, chosen = auto_settings.choose_settings(options, rows, reader, session.warehouse.limits, InputSpec())
    assert chosen_options.image_size == 128 and chosen["image_size"]["value"] == 128
    assert "28 px" in chosen["image_size"]["why"] and chosen_options.resize == "squash"
    assert chosen_options.epochs == 30 and chosen_options.patience == 10  # 10 images: 1 step an epoch
    given, chosen = auto_settings.choose_settings(TrainOptions(name="m", source="small", image_size=96, epochs=4,
                                                               patience=0), rows, reader,
                                                  session.warehouse.limits, InputSpec())
    assert (given.image_size, given.epochs, given.patience) == (96, 4, 0) and set(chosen) == {"resize"}


# ---- resize: squash or pad, carried by the card -------------------------------------------
def test_square_photos_keep_the_base_size_and_are_squashed_not_cropped(session):
    from sightql.images.spec import InputSpec
    from sightql.train.options import TrainOptions

    rows, reader = _rows_and_reader(session, _table(session, "square", _textile(5)))  # 250x250 JPEGs
    options, chosen = auto_settings.choose_settings(TrainOptions(name="m", source="square"), rows, reader,
                                                    session.warehouse.limits, InputSpec())
    assert (options.image_size, options.resize) == (224, "squash") and "1.00:1" in chosen["resize"]["why"]


@pytest.mark.slow
def test_strips_are_letterboxed_and_the_card_carries_it_to_inference(session):
    from sightql.images.preprocess import preprocess

    strips = {label: [_reshaped(d, box=(0, 100, 250, 175)) for d in items] for label, items in _textile(5).items()}
    result = session.train("strip", _table(session, "strips", strips), label="label", image_size=64, **TINY)
    params = _params(session, result.run_id)
    assert params["resize"] == "pad" and params["extra"]["chosen"]["resize"]["value"] == "pad"
    assert "image_size" not in params["extra"]["chosen"] and params["image_size"] == 64  # given, so kept
    card = session.registry.get_model("strip").version().card.input
    assert (card.resize, card.height, card.width) == ("pad", 64, 64)

    # Inference letterboxes: a 250x75 strip fills the width, 19 rows in the middle; the rest is exactly 0.
    array = preprocess(strips["local"][0], card)
    assert array.shape == (3, 64, 64)
    top = (64 - 19) // 2
    assert not array[:, :top].any() and not array[:, top + 19:].any() and array[:, top:top + 19].std() > 0.1
    (row,) = session.sql("SELECT classify('strip', image) AS c FROM strips LIMIT 1").to_pylist()
    assert row["c"]["label"] in ("local", "nominal") and row["c"]["error"] is None


# ---- lr='auto' ------------------------------------------------------------------------------
def test_lr_auto_restores_the_model_and_is_the_same_for_the_same_seed(session):
    import torch

    from sightql.images.spec import InputSpec
    from sightql.train.bases import build_base
    from sightql.train.options import TrainOptions

    rows, reader = _rows_and_reader(session, _table(session, "tex", _textile(16)))
    options = TrainOptions(name="m", source="tex", batch_size=4)
    spec = InputSpec(height=64, width=64, resize="squash")
    picks = []
    for _ in range(2):
        torch.manual_seed(0)
        base = build_base(session.warehouse, session.registry, "efficientnet_lite0", 2)
        before = {k: v.clone() for k, v in base.module.state_dict().items()}
        rng = torch.get_rng_state()
        lr, why = lr_range.choose_learning_rate(base, options, ["local", "nominal"], rows, reader, spec,
                                                session.warehouse.limits, "cpu")
        after = base.module.state_dict()
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)  # BN stats too
        assert torch.equal(rng, torch.get_rng_state()) and base.module.training
        picks.append((lr, why))
    assert picks[0] == picks[1]
    lr = picks[0][0]
    assert math.isfinite(lr) and lr_range.SAFE_BAND[0] <= lr <= lr_range.SAFE_BAND[1] and "range test" in picks[0][1]


def test_lr_auto_is_the_default_and_the_run_stores_the_number(session):
    result = session.train("tex", _table(session, "tex", _textile(16)), label="label", image_size=64, **TINY)
    params = _params(session, result.run_id)
    assert isinstance(params["lr"], float) and lr_range.SAFE_BAND[0] <= params["lr"] <= lr_range.SAFE_BAND[1]
    assert params["extra"]["chosen"]["lr"]["value"] == params["lr"] and result.chosen["lr"]["value"] == params["lr"]
    assert set(result.chosen) == {"lr", "resize", "patience"}  # image_size and epochs were given
    # the probe's sentence may follow when epoch 0 stays best (tests/test_train_probe.py)
    assert result.status == "completed" and result.stop_reason.startswith("reached the epoch limit (1)")
    (logged,) = session.sql("SELECT lr FROM training_log WHERE run_id = ? AND epoch > 0", [result.run_id]).to_pylist()
    assert logged["lr"] == pytest.approx(params["lr"])


def test_a_data_set_too_small_for_a_range_test_gets_the_default_and_says_so():
    assert lr_range.sweep_plan(23, 32) is None and lr_range.sweep_plan(24, 32) == (2, 12)
    assert lr_range.sweep_plan(1400, 32) == (32, 43) and lr_range.sweep_plan(8000, 32) == (32, 50)


def test_the_rate_stands_well_below_where_the_loss_diverged_clamped_to_the_band():
    lrs = [1e-6 * 10 ** (i / 5) for i in range(31)]  # 1e-6 .. 1
    # textile's shape: a noisy plateau, a fall, a chaotic floor, divergence at the last rates
    loss = [2.5, 2.0, 2.8, 2.2, 1.9, 1.8, 1.7, 2.9, 2.6, 2.7] + [2.4 - 0.2 * i for i in range(1, 11)] + \
        [0.5, 1.5, 0.6, 1.2, 0.7, 0.9, 0.8, 1.1, 0.9, 2.0, 9.0]
    found, why = lr_range.pick(lr_range.Sweep(lrs, loss, loss, 32, diverged_at=lrs[-1]))
    assert found == lr_range.SAFE_BAND[1] and "diverged at 1, 1/100 of it 0.01, clamped to the safe band" in why
    # a model that cannot bear much: the loss blows up at 0.025, so the rate drops to 2.5e-4
    early = loss[:22] + [20.0]
    found, why = lr_range.pick(lr_range.Sweep(lrs[:23], early, early, 32, diverged_at=lrs[22]))
    assert found == pytest.approx(lrs[22] / 100) and lr_range.SAFE_BAND[0] < found < lr_range.SAFE_BAND[1]
    assert "diverged at 0.025" in why and "clamped" not in why
    # a sweep that ended without diverging: its last rate bounds the divergence from below
    calm = loss[:25]
    found, why = lr_range.pick(lr_range.Sweep(lrs[:25], calm, calm, 32))
    assert found == pytest.approx(lrs[24] / 100) and "did not diverge up to 0.063" in why


# ---- warm-up -------------------------------------------------------------------------------
def test_warmup_factor_rises_linearly_to_one_over_the_warmup_epochs():
    from sightql.train.loop import warmup_factor

    assert [warmup_factor(1, step, 4, 1) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert [warmup_factor(e, s, 2, 2) for e in (1, 2) for s in range(2)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_factor(3, 0, 2, 2) == 1.0 and warmup_factor(1, 0, 0, 1) == 1.0


def test_the_first_epoch_warms_up_step_by_step_and_the_schedule_keeps_its_own_rates(session, monkeypatch):
    import torch

    seen: list[float] = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    table = _table(session, "tex", _textile(6))  # 12 images: 10 train in 3 steps of 4, 2 validate
    result = session.train("tex", table, label="label", **{**TINY, "epochs": 2, "lr": 1e-3, "probe": False,
                                                          "image_size": 64, "patience": 0})
    cosine_epoch_2 = 1e-3 * (1 + math.cos(math.pi / 2)) / 2
    assert seen == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3] + [cosine_epoch_2] * 3)
    logged = session.sql("SELECT epoch, lr FROM training_log WHERE run_id = ? ORDER BY epoch", [result.run_id]).to_pylist()
    assert [row["lr"] for row in logged] == pytest.approx([1e-3, cosine_epoch_2])  # the schedule's, not the warm-up's
    seen.clear()
    session.train("tex", table, label="label", **{**TINY, "epochs": 1, "lr": 1e-3, "probe": False, "image_size": 64,
                                                  "warmup_epochs": 0})
    assert seen == pytest.approx([1e-3] * 3)


# ---- early stopping on validation loss -------------------------------------------------------
def _scripted_validation(monkeypatch, figures: list[tuple[float, float]]) -> None:
    """Loop._validate gives these (loss, accuracy) figures, one per epoch (training itself is real)."""
    from sightql.train.loop import Loop

    script = iter(figures)
    monkeypatch.setattr(Loop, "_validate", lambda self: next(script))


def test_a_plateau_in_accuracy_with_a_falling_loss_does_not_stop_the_run(session, monkeypatch):
    table = _table(session, "tex", _textile(5))
    # Accuracy flat while the loss falls, then accuracy rising while the loss rises: patience 2 never runs out.
    _scripted_validation(monkeypatch, [(1.0, 0.6), (0.9, 0.6), (0.8, 0.6), (0.95, 0.7), (1.0, 0.75), (1.01, 0.7),
                                       (0.7, 0.9)])
    result = session.train("tex", table, label="label", **{**TINY, "epochs": 7, "patience": 2, "image_size": 64,
                                                          "lr": 1e-3, "probe": False})  # the loop's rule alone
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5, 6, 7] and result.best_epoch == 7
    assert result.stop_reason == "reached the epoch limit (7)"


@pytest.mark.slow
def test_early_stop_on_validation_loss_says_why_and_a_resume_keeps_it(session, monkeypatch):
    import torch

    from sightql.train.writer import RunWriter

    table = _table(session, "tex", _textile(5))
    _scripted_validation(monkeypatch, [(1.0, 0.6), (1.2, 0.5), (0.9995, 0.55), (1.1, 0.6), (2.0, 0.1)])

    def interrupted(self, reason):  # Ctrl-C after the last epoch, before the run is evaluated
        raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "stopped", interrupted)
    with pytest.raises(KeyboardInterrupt):
        session.train("tex", table, label="label", **{**TINY, "epochs": 6, "patience": 2, "image_size": 64,
                                                      "probe": False})  # the loop's rule alone
    (run,) = session.sql("SELECT run_id, status FROM training_runs").to_pylist()
    assert run["status"] == "interrupted"
    (kept,) = session.sql("SELECT epoch, path FROM training_checkpoints").to_pylist()
    reason = "early stop: validation loss did not improve for 2 epochs (nor validation accuracy)"
    assert kept["epoch"] == 3 and torch.load(session.home / kept["path"], weights_only=True)["stop_reason"] == reason

    monkeypatch.undo()
    result = session.train(resume=run["run_id"], progress=False)  # nothing left to train: evaluated and registered
    assert result.status == "completed" and result.stop_reason == reason and result.best_epoch == 1
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    stored = session.sql("SELECT stop_reason FROM training_runs WHERE run_id = ?", [run["run_id"]]).to_pylist()
    assert stored == [{"stop_reason": reason}]


# ---- the command line -----------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def test_cli_lr_takes_a_number_or_auto_and_refuses_anything_else(warehouse, session):
    session.close()
    bad = _cli("train", "--from", "t", "--register", "m", "--lr", "bad", "-w", str(warehouse))
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr == "error: --lr 'bad' is not valid; use a positive number such as 0.001, or auto\n"
    for given, stored in (("0.01", 0.01), ("auto", "auto")):  # the source is missing: the run fails once recorded
        result = _cli("train", "--from", "no_such_table", "--register", "m", "--lr", given, "-w", str(warehouse))
        assert result.returncode == 2 and "no_such_table" in result.stderr
    import sightql

    with sightql.connect(warehouse) as again:
        params = [json.loads(r["params"]) for r in again.sql("SELECT params FROM training_runs ORDER BY started_at")
                  .to_pylist()]
    assert [p["lr"] for p in params] == [0.01, "auto"]


@pytest.mark.slow
def test_cli_prints_the_settings_it_chose_and_why_it_stopped(warehouse, session):
    _table(session, "tex", _textile(16))
    session.close()
    result = _cli("train", "--from", "tex", "--label", "label", "--epochs", "1", "--batch-size",
                  "4", "--patience", "none", "--image-size", "64", "--no-register", "-w", str(warehouse))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("chosen from the data: lr ") for line in lines)
    assert any(line.startswith("chosen from the data: resize squash ") for line in lines)
    assert any(line.startswith("stopped: reached the epoch limit (1)") for line in lines)
    assert not any("patience" in line for line in lines)


def test_an_old_runs_params_still_read():
    from sightql.train.options import DEFAULTS, TrainOptions

    old = {"name": "m", "source": "t", "epochs": 5, "lr": 0.001, "patience": None, "image_size": None, "resize": None,
           "extra": {"labels": ["a", "b"]}}
    options = TrainOptions.from_json_dict(old)
    assert (options.epochs, options.lr, options.patience, options.image_size) == (5, 0.001, None, None)
    assert (DEFAULTS["epochs"], DEFAULTS["lr"], DEFAULTS["patience"]) == (None, "auto", None)
    assert TrainOptions.from_json(options.to_json()) == options
