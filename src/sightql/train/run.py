"""``session.train(...)``: one training run from examples to a registered, evaluated model version."""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sightql.errors import ConfigError, SightQLError
from sightql.train import checkpoints
from sightql.train.distributed import distributed_env, failure_text
from sightql.train.options import TrainOptions
from sightql.train.progress_file import ProgressFile
from sightql.train.runs import RunStore, new_run_id

if TYPE_CHECKING:
    from sightql.session import Session
    from sightql.train.distributed import Group


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
    rank: int = 0  # under torchrun, the process that returned it; rank 0 holds the full result

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


def train(session: "Session", resume: str | None = None, progress: bool = True, group: "Group | None" = None,
          progress_file: str | Path | None = None, **kwargs: Any) -> TrainResult:
    """See :meth:`sightql.session.Session.train`. ``group``: rank 0's place in a torchrun job
    (:func:`sightql.train.launch.train_warehouse` passes it); ``progress_file``: :class:`ProgressFile`'s JSON file."""
    reporter = ProgressFile(progress_file)
    try:
        result = _start(session, resume, progress, group, reporter, kwargs)
    except KeyboardInterrupt:
        run_id = reporter.data["run_id"]
        resume_hint = f"; resume with `sightql train --resume {run_id}`" if run_id else ""
        reporter.finish("interrupted", error="interrupted" + resume_hint)
        raise
    except BaseException as exc:
        reporter.finish("failed", error=failure_text(exc))
        raise
    reporter.finish("completed", registered_version=result.registered_version)
    return result


def _start(session: "Session", resume: str | None, progress: bool, group: "Group | None", reporter: ProgressFile,
           kwargs: dict[str, Any]) -> TrainResult:
    if group is None and distributed_env() is not None:
        raise ConfigError(
            "this process is one of several started by torchrun, and only rank 0 may open the warehouse; "
            "run `sightql train ...` under torchrun, or call sightql.train.train_warehouse(path, ...) on every rank"
        )
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
        return _train(session, store, run_id, options, resume is not None, progress, group, reporter)
    except KeyboardInterrupt:
        if group is not None:
            group.stop_listening()
        store.finish(run_id, "interrupted", "interrupted (Ctrl-C); resume with resume=" + repr(run_id))
        raise
    except BaseException as exc:
        echo = group.explain(exc) if group is not None else None  # another rank's failure, named
        store.finish(run_id, "failed", failure_text(echo or exc))
        if echo is not None and echo is not exc:
            raise echo from None
        raise


@dataclass
class _RunWriter:
    """What only the process holding the warehouse does each epoch: the log, checkpoints, the best weights."""

    session: "Session"
    store: RunStore
    run_id: str
    reporter: ProgressFile  # the JSON progress file other processes read (a no-op without a path)

    def checkpoint(self, epoch: int, state: dict[str, Any]) -> None:
        path, sha = checkpoints.save_checkpoint(self.session.home, self.run_id, epoch, state)
        self.store.add_checkpoint(self.run_id, epoch, path, sha)

    def epoch(self, result: Any) -> None:
        self.store.log_epoch(self.run_id, result.row())
        if result.images_per_rank is not None:  # under torchrun: how the epoch's rows were shared out
            params = json.loads(self.store.get(self.run_id)["params"])
            shares = params["extra"].setdefault("distributed", {}).setdefault("train_images_per_rank", {})
            shares[str(result.epoch)] = result.images_per_rank
            self.store.update_params(self.run_id, params)

    def best(self, result: Any, module: Any) -> None:
        checkpoints.save_best_weights(self.session.home, self.run_id, module)
        self.store.set_best(self.run_id, result.epoch)

    def resumed(self, epoch: int) -> None:
        self.store.forget_epochs_after(self.run_id, epoch)


def _train(session: "Session", store: RunStore, run_id: str, options: TrainOptions, resuming: bool,
           show_progress: bool, group: "Group | None", reporter: ProgressFile) -> TrainResult:
    import torch

    from sightql.models.device import resolve_device
    from sightql.train.bases import build_base, train_input
    from sightql.train.shared_rows import ROWS_FILE, SharedRowsReader, fresh_shared_dir, write_rows
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

    device = resolve_device(options.device)
    if group is not None:
        device = group.device(device)
    base = build_base(session, options.base, len(labels), options.weights_path)
    spec = train_input(base, options.image_size, options.resize)

    if not resuming:  # what the run learned about its data, for `runs show`
        params = options.to_json_dict()
        params["extra"] = {
            **params["extra"], "base_kind": base.kind, "labels": labels, "device": device,
            "train_images": len(split.train), "val_images": len(split.val),
            "input": json.loads(json.dumps(spec.__dict__)),
        }
        if group is not None:
            params["extra"]["distributed"] = {"world_size": group.world_size, "backend": group.backend}
        store.update_params(run_id, params)
    resume_from = None
    if resuming:
        resume_from = store.last_checkpoint(run_id)
        if resume_from is None:
            raise SightQLError(f"run {run_id} has no checkpoint to resume from; start a new run")

    train_rows, val_rows = split.train, split.val
    rows_path = None
    if group is not None:  # copy the rows for every rank, then tell the others the plan
        shared = fresh_shared_dir(checkpoints.run_dir(session.home, run_id))
        rows_path = shared / ROWS_FILE
        write_rows(rows_path, split.train, split.val, reader)
        reader = SharedRowsReader(rows_path, reader.description)
        train_rows, val_rows = reader.split()
        group.share_plan({
            "run_id": run_id, "options": options.to_json_dict(), "labels": labels, "base_kind": base.kind,
            "input": json.loads(json.dumps(spec.__dict__)), "limits": session.limits.__dict__,
            "shared_dir": str(shared), "rows": str(rows_path), "source": reader.description,
            "resume": None if resume_from is None else [resume_from[0], str(resume_from[1]), resume_from[2]],
        })
    try:
        state = _fit(options, labels, base, spec, device, train_rows, val_rows, reader, session.limits, group,
                     _RunWriter(session, store, run_id, reporter), show_progress, resume_from)
        if group is not None:
            group.phase = "final"

        # The best epoch's weights are the model: evaluated, then registered.
        reporter.phase("evaluating")
        inner = base.module
        inner.load_state_dict(checkpoints.load_best_weights(session.home, run_id))
        class_index = {label: i for i, label in enumerate(labels)}
        val_report = _evaluation(inner, val_rows, reader, class_index, labels, spec, session.limits, device, options)
        val_report |= {"dataset": "validation"}
    finally:
        if isinstance(reader, SharedRowsReader) and rows_path is not None:
            reader.close()
            rows_path.unlink(missing_ok=True)
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
    if rows_path is not None:
        with contextlib.suppress(OSError):  # a failed run keeps it for the ranks' error notes
            rows_path.parent.rmdir()
    history = store.epochs(run_id).to_pylist()
    return TrainResult(run_id, "completed", state.best_epoch, registered, labels, history, val_report, test_report,
                       len(split.train))


def _fit(options: TrainOptions, labels: list[str], base: Any, spec: Any, device: str, train_rows: list[Any],
         val_rows: list[Any], reader: Any, limits: Any, group: "Group | None", writer: _RunWriter | None,
         show_progress: bool, resume_from: tuple[int, Path, str] | None) -> Any:
    """The epochs, the same on every rank: returns the final LoopState; ``writer`` is None on ranks other than 0."""
    import torch

    from sightql.train.bases import apply_freeze
    from sightql.train.dataset import ImageRowsDataset, make_loader
    from sightql.train.loop import Loop, LoopState, Progress

    class_index = {label: i for i, label in enumerate(labels)}
    unfrozen = resume_from is not None and options.unfreeze_after is not None and resume_from[0] >= options.unfreeze_after
    apply_freeze(base, "none" if unfrozen else options.freeze)  # settled before DDP sees which weights train
    model = base.module.to(device)
    if group is not None:
        model = group.wrap(model, device)

    threads = options.decode_threads
    train_set = ImageRowsDataset(train_rows, reader, class_index, spec, limits, options.augment, options.seed, threads)
    val_set = ImageRowsDataset(val_rows, reader, class_index, spec, limits, "none", options.seed, threads)
    shard = None if group is None else (group.rank, group.world_size)
    train_loader = make_loader(train_set, options.batch_size, True, options.seed, shard)
    val_loader = make_loader(val_set, options.batch_size, False, options.seed, shard)

    head_ids = {id(p) for p in base.head.parameters()}
    body = [p for p in base.module.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [{"params": list(base.head.parameters()), "lr": options.lr},
         {"params": body, "lr": options.lr * options.backbone_lr_factor}],  # pretrained layers move gently
        weight_decay=options.weight_decay,
    )
    scheduler = _scheduler(optimizer, options.schedule, options.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=options.amp and device.startswith("cuda"))
    weights = _class_weights(options.class_weights, labels, [e.label for e in train_rows])
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, device=device) if weights else None)

    def ignore(*_: Any) -> None:
        return None

    loop = Loop(
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, loss_fn=loss_fn,
        train_loader=train_loader, val_loader=val_loader, train_dataset=train_set, device=device, amp=options.amp,
        epochs=options.epochs, seed=options.seed, patience=options.patience, checkpoint_every=options.checkpoint_every,
        save_checkpoint=writer.checkpoint if writer else ignore, on_epoch=writer.epoch if writer else ignore,
        on_best=(lambda result: writer.best(result, base.module)) if writer else ignore,
        progress=Progress(show_progress and writer is not None, writer.reporter if writer else None),
        unfreeze_after=options.unfreeze_after, unfreeze=lambda: apply_freeze(base, "none"), group=group,
    )
    state = LoopState()
    if resume_from is not None:
        epoch, path, sha = resume_from
        state = loop.load_state_dict(checkpoints.load_checkpoint(path, sha))
        if writer is not None:
            writer.resumed(epoch)
            loop.progress.say(f"resuming {writer.run_id} at epoch {state.start_epoch}")
    try:
        return loop.run(state)
    finally:
        train_set.close()
        val_set.close()


def train_worker(group: "Group") -> TrainResult:
    """A rank other than 0: the plan from rank 0, the shared rows, the same epochs; no warehouse."""
    import torch

    from sightql.images.decode import ImageLimits
    from sightql.models.card import InputSpec
    from sightql.models.device import resolve_device
    from sightql.train.bases import build_unweighted
    from sightql.train.shared_rows import SharedRowsReader

    plan = group.receive_plan()
    options = TrainOptions(**plan["options"])
    torch.manual_seed(options.seed)
    labels = plan["labels"]
    spec = InputSpec(**{**plan["input"], "mean": tuple(plan["input"]["mean"]), "std": tuple(plan["input"]["std"])})
    base = build_unweighted(plan["base_kind"], len(labels), spec)
    resume_from = None if plan["resume"] is None else (plan["resume"][0], Path(plan["resume"][1]), plan["resume"][2])
    reader = SharedRowsReader(Path(plan["rows"]), plan["source"])
    try:
        train_rows, val_rows = reader.split()
        state = _fit(options, labels, base, spec, group.device(resolve_device(options.device)), train_rows, val_rows,
                     reader, ImageLimits(**plan["limits"]), group, None, False, resume_from)
    finally:
        reader.close()
    outcome = group.receive_outcome()
    return TrainResult(plan["run_id"], "completed", state.best_epoch, outcome["registered_version"], labels, [],
                       {"accuracy": outcome["val_accuracy"]}, rank=group.rank)


def _evaluation(model: Any, rows: list[Any], reader: Any, class_index: dict[str, int], labels: list[str], spec: Any,
                limits: Any, device: str, options: TrainOptions) -> dict[str, Any]:
    """The report on ``rows`` (accuracy, per class, confusion matrix, ...) plus the mean loss."""
    from sightql.train import evaluate
    from sightql.train.dataset import ImageRowsDataset, make_loader

    dataset = ImageRowsDataset(rows, reader, class_index, spec, limits, "none", options.seed, options.decode_threads)
    try:
        targets, probabilities, loss = evaluate.predict(model, make_loader(dataset, options.batch_size, False, 0),
                                                        device, options.amp)
    finally:
        dataset.close()
    return evaluate.report(targets, probabilities, labels) | {"loss": loss}


def _evaluate_test(session: "Session", model: Any, options: TrainOptions, spec: Any, class_index: dict[str, int],
                   labels: list[str], device: str, training_examples: list[Any]) -> dict[str, Any]:
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
    report = _evaluation(model, test_examples, reader, class_index, labels, spec, session.limits, device, options)
    return report | {"dataset": options.test, "left_out_copies_of_training_images": len(overlap)}


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
