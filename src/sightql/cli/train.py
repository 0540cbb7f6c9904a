"""``sightql train`` and ``sightql runs ls|show``: training from the shell."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sightql.cli.common import WarehouseOpt, as_background_job, open_session, print_table, read_text
from sightql.cli.train_launch import train_warehouse
from sightql.errors import ConfigError
from sightql.train.auto_settings import describe
from sightql.train.options import DEFAULTS as D
from sightql.train.options import Augment, Precision, Schedule, TrainOptions
from sightql.train.runs import RunStore

runs_app = typer.Typer(help="Training runs: their status, epochs and evaluations.")


def _freeze(raw: str) -> str | int:
    if raw in ("backbone", "none"):
        return raw
    if raw.isdigit():
        return int(raw)
    raise ConfigError(f"--freeze {raw!r} is not valid; use backbone, none or a number of blocks")


def _lr(raw: str) -> float | str:
    if raw == "auto":
        return raw
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ConfigError(f"--lr {raw!r} is not valid; use a positive number such as 0.001, or auto")
    return value


def _patience(raw: str) -> int:
    if raw.lower() == "none":
        return 0
    if raw.isdigit():
        return int(raw)
    raise ConfigError(f"--patience {raw!r} is not valid; use a number of epochs, or 0 (or none) to never stop early")


def _class_weights(raw: str | None) -> str | dict[str, float] | None:
    from sightql.cli.models import parse_metrics

    if raw is None or raw == "balanced":
        return raw
    return parse_metrics(raw.split(","))  # 'label=weight,label=weight'


# Parameters of `sightql train` that are not TrainOptions fields, flags named differently, and flags parsed first.
_NOT_SETTINGS = ("register", "no_register", "resume", "progress_file", "options_json", "warehouse")
_FIELD_OF_FLAG = {"weights": "weights_path"}
_PARSE = {"freeze": _freeze, "class_weights": _class_weights, "lr": _lr, "patience": _patience}
CHOSEN = "default: chosen from the data"


def _given_settings(ctx: typer.Context) -> dict[str, Any]:
    """The TrainOptions fields set by flags typed on the command line (not left at their default)."""
    settings: dict[str, Any] = {}
    for param, value in ctx.params.items():  # typer's own click copy: its ParameterSource enum, compared by name
        if param in _NOT_SETTINGS or getattr(ctx.get_parameter_source(param), "name", None) != "COMMANDLINE":
            continue
        settings[_FIELD_OF_FLAG.get(param, param)] = _PARSE[param](value) if param in _PARSE else value
    register, no_register = ctx.params["register"], ctx.params["no_register"]
    if register is not None:
        settings |= {"name": register, "register": True}
    if no_register:
        settings |= {"register": False}
    return settings


def train_command(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Option("--from", help="A table, or '@stage/prefix' of class folders.")] = None,
    register: Annotated[Optional[str], typer.Option("--register", help="Model name the best epoch is registered under.")] = None,
    label: Annotated[str, typer.Option(help="Label column, or 'folder' for a stage.")] = D["label"],
    image: Annotated[str, typer.Option(help="Image BLOB column (tables).")] = D["image"],
    base: Annotated[str, typer.Option(help="efficientnet_lite0, a torchvision architecture, or a registry reference.")] = D["base"],
    weights: Annotated[Optional[str], typer.Option(help="Pretrained .pth state dict for a torchvision base (offline).")] = D["weights_path"],
    epochs: Annotated[Optional[int], typer.Option(help=f"Most epochs to train; early stopping may end sooner ({CHOSEN}; on --resume: extend to this many).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = D["batch_size"],
    lr: Annotated[str, typer.Option(help=f"The new head's learning rate (AdamW; the body learns at a tenth): a number such as 0.001, or auto for a short range test ({CHOSEN}).")] = D["lr"],
    schedule: Annotated[Schedule, typer.Option(help="Learning-rate schedule.")] = D["schedule"],
    warmup_epochs: Annotated[int, typer.Option(help="Epochs over which the rate rises linearly to the schedule's, step by step; 0: none.")] = D["warmup_epochs"],
    freeze: Annotated[str, typer.Option(help="backbone, none, or a number of first blocks.")] = str(D["freeze"]),
    unfreeze_after: Annotated[Optional[int], typer.Option(help="Unfreeze everything after this many epochs.")] = D["unfreeze_after"],
    image_size: Annotated[Optional[int], typer.Option(help=f"Input size in pixels ({CHOSEN}: the base's, or about 4x small images' shorter side, at least 128).")] = D["image_size"],
    resize: Annotated[Optional[str], typer.Option(help=f"squash (whole image), pad (whole image, aspect kept, letterboxed) or shorter (centre crop) ({CHOSEN}: squash, pad for images longer than 2:1).")] = D["resize"],
    augment: Annotated[Augment, typer.Option(help="Training-time augmentation.")] = D["augment"],
    val_fraction: Annotated[float, typer.Option(help="Held-out fraction, split by content hash.")] = D["val_fraction"],
    split_column: Annotated[Optional[str], typer.Option(help="Column with 'train'/'val' per row instead.")] = D["split_column"],
    seed: Annotated[int, typer.Option(help="Seed for the split, shuffling and augmentation.")] = D["seed"],
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = D["device"],
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = D["amp"],
    precision: Annotated[Precision, typer.Option(help="CPU arithmetic: auto (bfloat16 only on a CPU with AVX-512 BF16 or AMX), fp32 or bf16.")] = D["precision"],
    patience: Annotated[Optional[str], typer.Option(help=f"Stop after this many epochs without a lower validation loss or a better accuracy; 0 or none: never stop early ({CHOSEN}).")] = D["patience"],
    class_weights: Annotated[Optional[str], typer.Option(help="balanced, or label=weight,label=weight.")] = D["class_weights"],
    probe: Annotated[bool, typer.Option(help="Epoch 0: fit the new head as a linear probe on the frozen body first; fine-tuning starts from it.")] = D["probe"],
    checkpoint_every: Annotated[int, typer.Option(help="Save a checkpoint every N epochs.")] = D["checkpoint_every"],
    resume: Annotated[Optional[str], typer.Option(help="RUN_ID to continue from its last checkpoint.")] = None,
    test: Annotated[Optional[str], typer.Option(help="Table or '@stage/prefix' evaluated at the end.")] = D["test"],
    no_register: Annotated[bool, typer.Option("--no-register", help="Train and evaluate without registering.")] = False,
    options_json: Annotated[Optional[Path], typer.Option(help="A JSON file of TrainOptions (TrainOptions.to_json); flags given as well override it.")] = None,
    progress_file: Annotated[Optional[Path], typer.Option(help="Keep this JSON file current with the run's progress (the app reads it).")] = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Fine-tune a model on labelled images and register the best epoch.

    Validation images are held out by content hash (no exact copy on both sides), stratified
    by label. Each epoch is a row of training_log; the run is a row of training_runs.

    **Examples**

        sightql train --from '@xray/train' --label folder --base efficientnet_lite0 --epochs 5 --register xray

        sightql train --from photos --label species --base resnet18 --weights resnet18.pth --freeze backbone --register pets

        sightql train --from '@xray/train' --label folder --register xray --test '@xray/test' --class-weights balanced

        sightql train --resume run-20250101-120000-abc123 --epochs 10

        sightql train --options-json xray-options.json --epochs 8

        sightql train --from '@xray/train' --label folder --register xray --progress-file xray-progress.json

        torchrun --standalone --nproc_per_node=4 -m sightql train --from '@xray/train' --label folder --register xray

    Under torchrun only rank 0 opens the warehouse; see docs/training.md.
    """
    as_background_job()
    if progress_file is not None and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A job the app started: its Stop button sends SIGINT, which a server started in the background
        # (`sightql app &`, nohup) would have passed on ignored; stopping must work as Ctrl-C does.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if resume is not None:
        result = train_warehouse(warehouse, resume=resume, epochs=epochs, progress_file=progress_file)
    else:
        start = TrainOptions.from_json(read_text(options_json, "--options-json", "a JSON file")) if options_json is not None else None
        if start is None and source is None:
            raise ConfigError("say what to train on with --from TABLE or --from '@stage/prefix', or continue a run with --resume RUN_ID")
        if start is None and register is None and not no_register:
            raise ConfigError("name the model with --register NAME, or pass --no-register to only train and evaluate")
        settings = _given_settings(ctx)
        if start is None and no_register:
            settings.setdefault("name", "unregistered")
        result = train_warehouse(warehouse, start, progress_file=progress_file, **settings)
    if result.rank != 0:  # under torchrun, rank 0 reports for the job
        return
    for line in describe(result.chosen):
        typer.echo(line)
    typer.echo(f"run {result.run_id} completed; best epoch {result.best_epoch}, "
               f"validation accuracy {result.evaluation['accuracy']:.4f}")
    if result.probe_val_acc is not None:
        typer.echo(f"probe (epoch 0) validation accuracy {result.probe_val_acc:.4f}; "
                   f"best epoch's {result.best_val_acc:.4f}")
    if result.stop_reason:
        typer.echo(f"stopped: {result.stop_reason}")
    if result.test_evaluation is not None:
        typer.echo(f"test accuracy {result.test_evaluation['accuracy']:.4f} on {result.test_evaluation['images']} image(s)")
    if result.registered_version:
        typer.echo(f"registered {result.registered_version}")


@runs_app.command("ls")
def runs_ls(warehouse: WarehouseOpt = None) -> None:
    """List training runs, newest first: status, best epoch, registered version, error.

    **Example**

        sightql runs ls
    """
    with open_session(warehouse) as session:
        print_table(RunStore(session.warehouse).list_runs())


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run's id, from `sightql runs ls`.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Show one run: its parameters, one row per epoch, and its evaluation reports.

    **Examples**

        sightql runs show run-20250101-120000-abc123

        sightql sql "SELECT * FROM training_log WHERE run_id = ?" -p run-20250101-120000-abc123
    """
    with open_session(warehouse) as session:
        store = RunStore(session.warehouse)
        run = store.get(run_id)
        for key in ("run_id", "name", "status", "started_at", "finished_at", "best_epoch", "best_val_acc",
                    "probe_val_acc", "probe_val_loss", "stop_reason", "registered_version", "error"):
            value = run.get(key)  # a read-only session of an older warehouse lacks the newer columns
            typer.echo(f"{key + ':':20} {value if value not in (None, '') else '-'}")
        typer.echo(f"{'params:':20} {json.dumps(json.loads(run['params']), sort_keys=True)}")
        print_table(store.epochs(run_id))
        for evaluation in store.evaluations(run_id):
            report = evaluation["report"]
            auc = report.get("roc_auc")
            typer.echo(f"{evaluation['dataset']}: accuracy {report['accuracy']:.4f} on {report['images']} image(s)"
                       + (f", ROC-AUC {auc:.4f}" if auc is not None else "")
                       + f"; confusion matrix {report['confusion_matrix']} (rows true, columns predicted: {report['labels']})")
