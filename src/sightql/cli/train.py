"""``sightql train`` and ``sightql runs ls|show``: training from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from sightql.cli.common import WarehouseOpt, open_session, print_table
from sightql.train.options import Augment, Schedule

runs_app = typer.Typer(help="Training runs: their status, epochs and evaluations.", no_args_is_help=True)


def _freeze(raw: str) -> str | int:
    from sightql.errors import ConfigError

    if raw in ("backbone", "none"):
        return raw
    if raw.isdigit():
        return int(raw)
    raise ConfigError(f"--freeze {raw!r} is not valid; use backbone, none or a number of blocks")


def _class_weights(raw: str | None) -> str | dict[str, float] | None:
    from sightql.cli.models import parse_metrics

    if raw is None or raw == "balanced":
        return raw
    return parse_metrics(raw.split(","))  # 'label=weight,label=weight'


def train_command(
    source: Annotated[Optional[str], typer.Option("--from", help="A table, or '@stage/prefix' of class folders.")] = None,
    register: Annotated[Optional[str], typer.Option("--register", help="Model name the best epoch is registered under.")] = None,
    label: Annotated[str, typer.Option(help="Label column, or 'folder' for a stage.")] = "label",
    image: Annotated[str, typer.Option(help="Image BLOB column (tables).")] = "image",
    base: Annotated[str, typer.Option(help="efficientnet_lite0, a torchvision architecture, or a registry reference.")] = "efficientnet_lite0",
    weights: Annotated[Optional[str], typer.Option(help="Pretrained .pth state dict for a torchvision base (offline).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default 5; on --resume: extend to this many).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (AdamW).")] = 1e-3,
    schedule: Annotated[Schedule, typer.Option(help="Learning-rate schedule.")] = "cosine",
    freeze: Annotated[str, typer.Option(help="backbone, none, or a number of first blocks.")] = "none",
    unfreeze_after: Annotated[Optional[int], typer.Option(help="Unfreeze everything after this many epochs.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Input size in pixels (default: the base's).")] = None,
    resize: Annotated[Optional[str], typer.Option(help="shorter (centre crop) or squash (whole image); default the base's.")] = None,
    augment: Annotated[Augment, typer.Option(help="Training-time augmentation.")] = "light",
    val_fraction: Annotated[float, typer.Option(help="Held-out fraction, split by content hash.")] = 0.2,
    split_column: Annotated[Optional[str], typer.Option(help="Column with 'train'/'val' per row instead.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split, shuffling and augmentation.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = True,
    patience: Annotated[Optional[int], typer.Option(help="Stop after this many epochs without a better val accuracy.")] = None,
    class_weights: Annotated[Optional[str], typer.Option(help="balanced, or label=weight,label=weight.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Save a checkpoint every N epochs.")] = 1,
    resume: Annotated[Optional[str], typer.Option(help="RUN_ID to continue from its last checkpoint.")] = None,
    test: Annotated[Optional[str], typer.Option(help="Table or '@stage/prefix' evaluated at the end.")] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Train and evaluate without registering.")] = False,
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

        sightql train --from '@xray/train' --label folder --register xray --progress-file xray-progress.json

        torchrun --standalone --nproc_per_node=4 -m sightql train --from '@xray/train' --label folder --register xray

    Under torchrun only rank 0 opens the warehouse; see docs/training.md.
    """
    from sightql.errors import ConfigError

    if source is None and resume is None:
        raise ConfigError("say what to train on with --from TABLE or --from '@stage/prefix', or continue a run with --resume RUN_ID")
    if register is None and not no_register and resume is None:
        raise ConfigError("name the model with --register NAME, or pass --no-register to only train and evaluate")
    name = register if register is not None else ("unregistered" if no_register else None)
    from sightql.train.launch import train_warehouse

    result = train_warehouse(
        warehouse, name=name, source=source, image=image, label=label, base=base, weights_path=weights, epochs=epochs,
        batch_size=batch_size, lr=lr, schedule=schedule, freeze=_freeze(freeze), unfreeze_after=unfreeze_after,
        image_size=image_size, resize=resize, augment=augment, val_fraction=val_fraction, split_column=split_column, seed=seed,
        device=device, amp=amp, patience=patience, class_weights=_class_weights(class_weights),
        checkpoint_every=checkpoint_every, resume=resume, test=test, register=not no_register,
        progress_file=progress_file,
    )
    if result.rank != 0:  # under torchrun, rank 0 reports for the job
        return
    typer.echo(f"run {result.run_id} completed; best epoch {result.best_epoch}, "
               f"validation accuracy {result.evaluation['accuracy']:.4f}")
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
    from sightql.train.runs import RunStore

    with open_session(warehouse) as session:
        print_table(RunStore(session).list_runs())


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
    from sightql.train.runs import RunStore

    with open_session(warehouse) as session:
        store = RunStore(session)
        run = store.get(run_id)
        for key in ("run_id", "name", "status", "started_at", "finished_at", "best_epoch", "registered_version", "error"):
            typer.echo(f"{key + ':':20} {run[key] if run[key] is not None else '-'}")
        typer.echo(f"{'params:':20} {json.dumps(json.loads(run['params']), sort_keys=True)}")
        print_table(store.epochs(run_id))
        for evaluation in store.evaluations(run_id):
            report = evaluation["report"]
            auc = report.get("roc_auc")
            typer.echo(f"{evaluation['dataset']}: accuracy {report['accuracy']:.4f} on {report['images']} image(s)"
                       + (f", ROC-AUC {auc:.4f}" if auc is not None else "")
                       + f"; confusion matrix {report['confusion_matrix']} (rows true, columns predicted: {report['labels']})")
