"""``session.train(...)``: one training run from examples to a registered, evaluated model version."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sightql.errors import ConfigError, SightQLError
from sightql.train import checkpoints
from sightql.train.options import TrainOptions
from sightql.train.progress_file import ProgressFile
from sightql.train.runs import RunStore, new_run_id

if TYPE_CHECKING:
    from sightql.session import Session


@dataclass
class TrainResult:
    run_id: str
    status: str
    best_epoch: int | None
    registered_version: str | None
    labels: list[str]
    history: list[dict[str, Any]]
    evaluation: dict[str, Any]  # the held-out split's report
    test_evaluation: dict[str, Any] | None = None
    train_images: int = 0

    def __repr__(self) -> str:
        acc = self.evaluation.get("accuracy")
        return (f"TrainResult(run_id={self.run_id!r}, status={self.status!r}, best_epoch={self.best_epoch}, "
                f"val_accuracy={acc}, registered_version={self.registered_version!r})")


def _class_weights(option: Any, labels: list[str], train_labels: list[str]) -> list[float] | None:
    if option is None:
        return None
    counts = Counter(train_labels)
    if option == "balanced":  # sklearn's n_samples / (n_classes * count)
        return [len(train_labels) / (len(labels) * max(counts[label], 1)) for label in labels]
    unknown = set(option) - set(labels)
    if unknown:
        raise ConfigError(f"class_weights names unknown label(s) {sorted(unknown)}; the labels are {labels}")
    return [float(option.get(label, 1.0)) for label in labels]


def _scheduler(optimizer: Any, schedule: str, epochs: int) -> Any | None:
    import torch

    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(epochs / 3)), gamma=0.1)
    return None


def _options_for_resume(store: RunStore, run_id: str, epochs: int | None) -> TrainOptions:
    row = store.get(run_id)
    params = json.loads(row["params"])
    if row["status"] == "completed" and (epochs is None or epochs <= params["epochs"]):
        raise ConfigError(
            f"run {run_id} already completed {params['epochs']} epoch(s); resume with more epochs= or start a new run"
        )
    if epochs is not None:
        params["epochs"] = epochs
    options = TrainOptions(**params)
    store.update_params(run_id, params)
    return options


def train(session: "Session", resume: str | None = None, progress: bool = True,
          progress_file: str | Path | None = None, **kwargs: Any) -> TrainResult:
    """See :meth:`sightql.session.Session.train`; ``progress_file`` is :class:`ProgressFile`'s JSON file."""
    reporter = ProgressFile(progress_file)
    try:
        result = _start(session, resume, progress, reporter, kwargs)
    except KeyboardInterrupt:
        run_id = reporter.data["run_id"]
        resume_hint = f"; resume with `sightql train --resume {run_id}`" if run_id else ""
        reporter.finish("interrupted", error="interrupted" + resume_hint)
        raise
    except BaseException as exc:
        reporter.finish("failed", error=_message(exc))
        raise
    reporter.finish("completed", registered_version=result.registered_version)
    return result


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SightQLError) else f"{type(exc).__name__}: {exc}"


def _start(session: "Session", resume: str | None, progress: bool, reporter: ProgressFile,
           kwargs: dict[str, Any]) -> TrainResult:
    store = RunStore(session)
    if resume is not None:
        options = _options_for_resume(store, resume, kwargs.get("epochs"))
        run_id = resume
        store.mark_running(run_id)
    else:
        if kwargs.get("name") is None or kwargs.get("source") is None:
            raise ConfigError("train needs name= (the model to register) and source= (a table or '@stage/prefix')")
        kwargs = {k: v for k, v in kwargs.items() if v is not None or k in ("image_size", "patience", "class_weights")}
        options = TrainOptions(**kwargs)
        from sightql.registry.refs import check_model_name

        check_model_name(options.name)
        run_id = new_run_id()
        store.start(run_id, options.name, options.to_json_dict())
    reporter.begin(run_id, options.name, options.epochs)
    try:
        return _train(session, store, run_id, options, resume is not None, progress, reporter)
    except KeyboardInterrupt:
        store.finish(run_id, "interrupted", "interrupted (Ctrl-C); resume with resume=" + repr(run_id))
        raise
    except BaseException as exc:
        store.finish(run_id, "failed", _message(exc))
        raise


def _train(session: "Session", store: RunStore, run_id: str, options: TrainOptions, resuming: bool,
           show_progress: bool, reporter: ProgressFile) -> TrainResult:
    import torch

    from sightql.models.device import resolve_device
    from sightql.train import evaluate
    from sightql.train.bases import apply_freeze, build_base, train_input
    from sightql.train.dataset import ImageRowsDataset, make_loader
    from sightql.train.loop import Loop, LoopState, Progress, init_distributed, wrap_distributed
    from sightql.train.sources import load_examples
    from sightql.train.splits import split_by_column, split_by_content

    torch.manual_seed(options.seed)
    examples, reader = load_examples(session, options.source, options.image, options.label, options.split_column)
    split = (split_by_column(examples, options.split_column) if options.split_column
             else split_by_content(examples, options.val_fraction, options.seed))
    if not split.val:
        raise ConfigError("no image is left for validation; give each label at least 2 distinct images")
    labels = sorted({e.label for e in examples})
    if len(labels) < 2:
        raise ConfigError(f"only one label ({labels[0]!r}) was found; a classifier needs at least 2")
    class_index = {label: i for i, label in enumerate(labels)}

    device, rank = init_distributed(resolve_device(options.device))
    base = build_base(session, options.base, len(labels), options.weights_path)
    spec = train_input(base, options.image_size, options.resize)
    apply_freeze(base, options.freeze)
    model = wrap_distributed(base.module.to(device), device)

    if not resuming:  # what the run learned about its data, for `runs show`
        params = options.to_json_dict()
        params["extra"] = {
            **params["extra"], "base_kind": base.kind, "labels": labels, "device": device,
            "train_images": len(split.train), "val_images": len(split.val),
            "input": json.loads(json.dumps(spec.__dict__)),
        }
        store.update_params(run_id, params)

    threads = options.decode_threads
    train_set = ImageRowsDataset(split.train, reader, class_index, spec, session.limits, options.augment, options.seed, threads)
    val_set = ImageRowsDataset(split.val, reader, class_index, spec, session.limits, "none", options.seed, threads)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    train_loader = make_loader(train_set, options.batch_size, True, options.seed, distributed)
    val_loader = make_loader(val_set, options.batch_size, False, options.seed)

    head_ids = {id(p) for p in base.head.parameters()}
    body = [p for p in base.module.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [{"params": list(base.head.parameters()), "lr": options.lr},
         {"params": body, "lr": options.lr * options.backbone_lr_factor}],  # pretrained layers move gently
        weight_decay=options.weight_decay,
    )
    scheduler = _scheduler(optimizer, options.schedule, options.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=options.amp and device.startswith("cuda"))
    weights = _class_weights(options.class_weights, labels, [e.label for e in split.train])
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, device=device) if weights else None)
    is_writer = rank == 0

    def save_checkpoint(epoch: int, state: dict[str, Any]) -> None:
        if is_writer:
            path, sha = checkpoints.save_checkpoint(session.home, run_id, epoch, state)
            store.add_checkpoint(run_id, epoch, path, sha)

    def on_epoch(result: Any) -> None:
        if is_writer:
            store.log_epoch(run_id, result.row())

    def on_best(result: Any) -> None:
        if is_writer:
            checkpoints.save_best_weights(session.home, run_id, getattr(model, "module", model))
            store.set_best(run_id, result.epoch)

    loop = Loop(
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, loss_fn=loss_fn,
        train_loader=train_loader, val_loader=val_loader, train_dataset=train_set, device=device, amp=options.amp,
        epochs=options.epochs, seed=options.seed, patience=options.patience, checkpoint_every=options.checkpoint_every,
        save_checkpoint=save_checkpoint, on_epoch=on_epoch, on_best=on_best,
        progress=Progress(show_progress and is_writer, reporter if is_writer else None),
        unfreeze_after=options.unfreeze_after, unfreeze=lambda: apply_freeze(base, "none"),
    )
    state = LoopState()
    if resuming:
        last = store.last_checkpoint(run_id)
        if last is None:
            raise SightQLError(f"run {run_id} has no checkpoint to resume from; start a new run")
        epoch, path, sha = last
        if options.unfreeze_after is not None and epoch >= options.unfreeze_after:
            apply_freeze(base, "none")
        state = loop.load_state_dict(checkpoints.load_checkpoint(path, sha))
        store.forget_epochs_after(run_id, epoch)
        loop.progress.say(f"resuming {run_id} at epoch {state.start_epoch}")
    try:
        state = loop.run(state)
    finally:
        train_set.close()
    if not is_writer:
        val_set.close()
        return TrainResult(run_id, "completed", state.best_epoch, None, labels, [], {})

    # The best epoch's weights are the model: evaluated, then registered.
    reporter.phase("evaluating")
    inner = getattr(model, "module", model)
    inner.load_state_dict(checkpoints.load_best_weights(session.home, run_id))
    targets, probabilities, val_loss = evaluate.predict(inner, val_loader, device, options.amp)
    val_report = evaluate.report(targets, probabilities, labels) | {"loss": val_loss, "dataset": "validation"}
    val_set.close()
    test_report = None
    if options.test:
        test_report = _evaluate_test(session, inner, options, spec, class_index, labels, device, examples)

    registered = None
    if options.register:
        reporter.phase("registering")
        registered = _register(session, inner, base.kind, options, labels, spec, run_id, val_report, test_report)
        store.set_registered(run_id, registered)
    store.add_evaluation(run_id, "validation", registered, val_report)
    if test_report is not None:
        store.add_evaluation(run_id, "test", registered, test_report)
    store.finish(run_id, "completed")
    history = store.epochs(run_id).to_pylist()
    return TrainResult(run_id, "completed", state.best_epoch, registered, labels, history, val_report, test_report,
                       len(split.train))


def _evaluate_test(session: "Session", model: Any, options: TrainOptions, spec: Any, class_index: dict[str, int],
                   labels: list[str], device: str, training_examples: list[Any]) -> dict[str, Any]:
    from sightql.train import evaluate
    from sightql.train.dataset import ImageRowsDataset, make_loader
    from sightql.train.sources import load_examples

    assert options.test is not None
    test_examples, reader = load_examples(session, options.test, options.image, options.label)
    unknown = sorted({e.label for e in test_examples} - set(labels))
    if unknown:
        raise ConfigError(f"the test set has label(s) {unknown} the model was not trained on; remove them from {options.test}")
    seen = {e.sha256 for e in training_examples}
    overlap = [e for e in test_examples if e.sha256 in seen]
    if overlap:
        warnings.warn(f"{len(overlap)} test image(s) are exact copies of training images; they are left out", stacklevel=3)
        test_examples = [e for e in test_examples if e.sha256 not in seen]
    dataset = ImageRowsDataset(test_examples, reader, class_index, spec, session.limits, "none", options.seed,
                               options.decode_threads)
    try:
        targets, probabilities, loss = evaluate.predict(model, make_loader(dataset, options.batch_size, False, 0),
                                                        device, options.amp)
    finally:
        dataset.close()
    return evaluate.report(targets, probabilities, labels) | {
        "loss": loss, "dataset": options.test, "left_out_copies_of_training_images": len(overlap),
    }


def _register(session: "Session", model: Any, kind: str, options: TrainOptions, labels: list[str], spec: Any,
              run_id: str, val_report: dict[str, Any], test_report: dict[str, Any] | None) -> str:
    from sightql.train.bases import BUNDLED

    metrics = {"val_accuracy": val_report["accuracy"], "val_loss": val_report["loss"], "val_macro_f1": val_report["macro_f1"]}
    if val_report.get("roc_auc") is not None:
        metrics["val_roc_auc"] = val_report["roc_auc"]
    if test_report is not None:
        metrics["test_accuracy"] = test_report["accuracy"]
        if test_report.get("roc_auc") is not None:
            metrics["test_roc_auc"] = test_report["roc_auc"]
    model = model.eval().cpu()
    version = session.registry.log_model(
        model, options.name, labels=labels, input=replace(spec), output="logits",
        architecture=None if kind == BUNDLED else kind,
        description=f"trained by session.train, run {run_id}, base {options.base}, from {options.source}",
    )
    for metric, value in metrics.items():
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            version.set_metric(metric, value)
    return version.ref
