"""``train(warehouse, registry, stages, options)``, what ``session.train(...)`` calls: a run's lifecycle on the
process holding the warehouse, start or resume to the end.

The steps live in modules of their own: :mod:`~sightql.train.setup` (examples, split, base, shared
rows), :mod:`~sightql.train.fit` (the epochs, on every rank), :mod:`~sightql.train.writer` (each
epoch's writes), :mod:`~sightql.train.assessment` (the final reports), :mod:`~sightql.train.register`
and, for the other torchrun ranks, :mod:`~sightql.train.follower`.

No long lock: the run holds the warehouse released (``warehouse.released()``). The run's record,
each epoch's ``training_log`` row, each checkpoint's record and the registration are short
transactions, and each batch's image bytes are read on a cursor of their own, so between them
other processes (``sightql sql "SELECT * FROM training_log"``, the app, the API, a predict job)
open the warehouse while the model trains.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError, SightQLError
from sightql.registry import Registry
from sightql.registry.refs import check_model_name
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.train import checkpoints, speed
from sightql.train.assessment import evaluate_rows, evaluate_test
from sightql.train.auto_settings import settle_learning_rate
from sightql.train.distributed import Group
from sightql.train.distributed import distributed_env, failure_text
from sightql.train.fit import fit
from sightql.train.image_cache import image_cache
from sightql.train.loop import Progress
from sightql.train.options import TrainOptions
from sightql.train.probe import probe_epoch, summary
from sightql.train.progress_file import ProgressFile
from sightql.train.register import register_model
from sightql.train.result import TrainResult
from sightql.train.runs import RunStore, new_run_id
from sightql.train.setup import prepare, share_with_ranks
from sightql.train.shared_rows import SharedRowsReader
from sightql.train.writer import RunWriter


__all__ = ["TrainResult", "train"]


def options_for_resume(store: RunStore, run_id: str, epochs: int | None) -> TrainOptions:
    """The stored options of run ``run_id``, with ``epochs`` raised when given."""
    row = store.get(run_id)
    params = json.loads(row["params"])
    if row["status"] == "completed" and (epochs is None or epochs <= params["epochs"]):
        raise ConfigError(
            f"run {run_id} already completed {params['epochs']} epoch(s); resume with more epochs= or start a new run"
        )
    if epochs is not None:
        params["epochs"] = epochs
    options = TrainOptions.from_json_dict(params)
    store.update_params(run_id, params)
    return options


def train(warehouse: Warehouse, registry: Registry, stages: StageCatalog, options: TrainOptions | None = None,
          *, resume: str | None = None, epochs: int | None = None, progress: bool = True, group: Group | None = None,
          progress_file: str | Path | None = None) -> TrainResult:
    """What ``session.train`` runs (its docstring describes the settings): a new run with ``options``, or
    ``resume=RUN_ID`` (``epochs`` extends it), reading from ``warehouse``'s tables and ``stages``, registering
    in ``registry``.
    ``group``: rank 0's place in a torchrun job (:func:`sightql.cli.train_launch.train_warehouse` passes it);
    ``progress_file``: :class:`ProgressFile`'s JSON file."""
    reporter = ProgressFile(progress_file)
    try:
        with warehouse.released():  # each catalog write and each batch's read opens the file for that step only
            result = start(warehouse, registry, stages, options, resume, epochs, progress, group, reporter)
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


def start(warehouse: Warehouse, registry: Registry, stages: StageCatalog, options: TrainOptions | None,
          resume: str | None, epochs: int | None, progress: bool, group: Group | None,
          reporter: ProgressFile) -> TrainResult:
    """Record the run (or take up ``resume``), train it, and mark it completed, interrupted or failed."""
    if group is None and distributed_env() is not None:
        raise ConfigError(
            "this process is one of several started by torchrun, and only rank 0 may open the warehouse; "
            "run `sightql train ...` under torchrun, or call sightql.cli.train_launch.train_warehouse(path, ...) "
            "on every rank"
        )
    store = RunStore(warehouse)
    if resume is not None:
        options = options_for_resume(store, resume, epochs)
        run_id = resume
        store.mark_running(run_id)
    else:
        if options is None:
            raise ConfigError("train needs name= (the model to register) and source= (a table or '@stage/prefix')")
        check_model_name(options.name)
        run_id = new_run_id()
        store.start(run_id, options.name, options.to_json_dict())
    reporter.begin(run_id, options.name, options.epochs)
    try:
        return lead_run(warehouse, registry, stages, store, run_id, options, resume is not None, progress, group,
                        reporter)
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


def lead_run(warehouse: Warehouse, registry: Registry, stages: StageCatalog, store: RunStore, run_id: str,
             options: TrainOptions, resuming: bool, show_progress: bool, group: Group | None,
             reporter: ProgressFile) -> TrainResult:
    """The recorded run from setup to registration, on the process holding the warehouse (rank 0 under torchrun)."""
    import torch

    torch.manual_seed(options.seed)
    prepared = prepare(warehouse, registry, stages, store, run_id, options, resuming, group, show_progress)
    options = prepared.options or options  # with the settings chosen from the data
    probe = None
    cache = image_cache(options.image_cache_mb)  # one per process: the probe's pass fills it for the epochs
    with speed.fast_cpu(prepared.base.module.to(prepared.device), prepared.device):  # as fast as the epochs
        if options.probe and not resuming:  # epoch 0, on rank 0 before the plan: its head reaches the others (DDP)
            reporter.phase("linear probe (epoch 0)")
            probe = probe_epoch(prepared.base, prepared.spec, prepared.train_rows, prepared.val_rows, prepared.reader,
                                prepared.labels, warehouse.limits, options, prepared.device,
                                Progress(show_progress).say, cache)
            store.set_probe(run_id, probe.val_acc, probe.val_loss)
        # the range test starts from the probe's head, so it measures the fine-tuning that follows
        options = settle_learning_rate(store, run_id, options, prepared.base, prepared.labels, prepared.train_rows,
                                       prepared.reader, prepared.spec, warehouse.limits, prepared.device,
                                       show_progress, cache)
    train_images = len(prepared.train_rows)
    resume_from = None
    if resuming:
        resume_from = store.last_checkpoint(run_id)
        if resume_from is None:
            raise SightQLError(f"run {run_id} has no checkpoint to resume from; start a new run")
    if group is not None:
        prepared = share_with_ranks(warehouse, run_id, options, prepared, group, resume_from,
                                    None if probe is None else probe.row())
    labels, spec, device, reader = prepared.labels, prepared.spec, prepared.device, prepared.reader
    writer = RunWriter(warehouse, store, run_id, reporter)
    try:
        state = fit(options, labels, prepared.base, spec, device, prepared.train_rows, prepared.val_rows, reader,
                    warehouse.limits, group, writer, show_progress, resume_from, probe, cache)
        writer.stopped(state.stop_reason)
        if group is not None:
            group.phase = "final"

        # The best epoch's weights are the model: evaluated, then registered.
        reporter.phase("evaluating")
        inner = prepared.base.module
        inner.load_state_dict(checkpoints.load_best_weights(warehouse.home, run_id))
        class_index = {label: i for i, label in enumerate(labels)}
        val_report = evaluate_rows(inner, prepared.val_rows, reader, class_index, labels, spec, warehouse.limits,
                                   device, options, cache)
        val_report |= {"dataset": "validation"}
    finally:
        if isinstance(reader, SharedRowsReader) and prepared.rows_path is not None:
            reader.close()
            prepared.rows_path.unlink(missing_ok=True)
    test_report = None
    if options.test:
        test_report = evaluate_test(warehouse, stages, inner, options, spec, class_index, labels, device,
                                    prepared.examples)

    registered = None
    if options.register:
        reporter.phase("registering")
        registered = register_model(registry, inner, prepared.base.kind, options, labels, spec, run_id, val_report,
                                    test_report)
        store.set_registered(run_id, registered)
    store.add_evaluation(run_id, "validation", registered, val_report)
    if test_report is not None:
        store.add_evaluation(run_id, "test", registered, test_report)
    history = store.epochs(run_id).to_pylist()
    probe_row = next((row for row in history if row["epoch"] == 0), None)  # also after a resume
    best_row = next((row for row in history if row["epoch"] == state.best_epoch), None)
    stop_reason = summary(state.best_epoch, probe_row, state.stop_reason, registered is not None)
    store.set_stop_reason(run_id, stop_reason)
    store.finish(run_id, "completed")
    if prepared.rows_path is not None:
        with contextlib.suppress(OSError):  # a failed run keeps it for the ranks' error notes
            prepared.rows_path.parent.rmdir()
    chosen = json.loads(store.get(run_id)["params"]).get("extra", {}).get("chosen", {})
    return TrainResult(run_id, "completed", state.best_epoch, registered, labels, history, val_report, test_report,
                       train_images, probe_val_acc=probe_row["val_acc"] if probe_row else None,
                       probe_val_loss=probe_row["val_loss"] if probe_row else None,
                       best_val_acc=best_row["val_acc"] if best_row else None, chosen=chosen, stop_reason=stop_reason)
