"""Rank 0's setup of a run: the examples and their split, the device, the base, the input, the shared rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError
from sightql.models.device import resolve_device
from sightql.registry import Registry
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.train import checkpoints
from sightql.train.auto_settings import choose_settings, say_chosen
from sightql.train.bases import BaseModel, build_base, train_input
from sightql.train.distributed import Group
from sightql.train.options import TrainOptions
from sightql.train.runs import RunStore
from sightql.train.shared_rows import ROWS_FILE, SharedRowsReader, fresh_shared_dir, write_rows
from sightql.train.sources import load_examples
from sightql.train.splits import split_by_column, split_by_content


@dataclass
class Prepared:
    """What a run trains on and with, once rank 0 has read the source."""

    examples: list[Any]  # every example of the source
    train_rows: list[Any]
    val_rows: list[Any]
    reader: Any  # reads the rows' image bytes
    labels: list[str]
    device: str
    base: BaseModel
    spec: Any  # the training InputSpec
    rows_path: Path | None = None  # under torchrun: the rows copied for every rank
    options: TrainOptions | None = None  # the run's options, with the settings chosen from the data resolved


def prepare(warehouse: Warehouse, registry: Registry, stages: StageCatalog, store: RunStore, run_id: str,
            options: TrainOptions, resuming: bool, group: Group | None, show_progress: bool = False) -> Prepared:
    """Read the source, split it, choose the unset settings from it, build the base; record what the run learned
    about its data, and the settings as resolved, in its params (a resume's options are resolved already)."""
    examples, reader = load_examples(warehouse, stages, options.source, options.image, options.label,
                                     options.split_column)
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
    base = build_base(warehouse, registry, options.base, len(labels), options.weights_path)
    chosen: dict[str, Any] = {}
    if not resuming:
        options, chosen = choose_settings(options, split.train, reader, warehouse.limits, base.input,
                                          group.world_size if group is not None else 1)
        if show_progress:
            say_chosen(chosen)
    spec = train_input(base, options.image_size, options.resize)

    if not resuming:  # what the run learned about its data, for `runs show`
        params = options.to_json_dict()
        params["extra"] = {
            **params["extra"], "chosen": chosen, "base_kind": base.kind, "labels": labels, "device": device,
            "train_images": len(split.train), "val_images": len(split.val),
            "input": json.loads(json.dumps(spec.__dict__)),
        }
        if group is not None:
            params["extra"]["distributed"] = {"world_size": group.world_size, "backend": group.backend}
        store.update_params(run_id, params)
    return Prepared(examples, split.train, split.val, reader, labels, device, base, spec, options=options)


def share_with_ranks(warehouse: Warehouse, run_id: str, options: TrainOptions, prepared: Prepared, group: Group,
                     resume_from: tuple[int, Path, str] | None, probe: dict[str, Any] | None = None) -> Prepared:
    """Copy the rows for every rank, then tell the others the plan (options as JSON, and epoch 0's row when
    rank 0 ran the probe, so every rank starts from the same loop state); returns the rows as shared."""
    shared = fresh_shared_dir(checkpoints.run_dir(warehouse.home, run_id))
    rows_path = shared / ROWS_FILE
    write_rows(rows_path, prepared.train_rows, prepared.val_rows, prepared.reader)
    reader = SharedRowsReader(rows_path, prepared.reader.description)
    train_rows, val_rows = reader.split()
    group.share_plan({
        "run_id": run_id, "options": options.to_json_dict(), "labels": prepared.labels, "base_kind": prepared.base.kind,
        "input": json.loads(json.dumps(prepared.spec.__dict__)), "limits": warehouse.limits.__dict__,
        "shared_dir": str(shared), "rows": str(rows_path), "source": reader.description,
        "resume": None if resume_from is None else [resume_from[0], str(resume_from[1]), resume_from[2]],
        "probe": probe,
    })
    return replace(prepared, train_rows=train_rows, val_rows=val_rows, reader=reader, rows_path=rows_path)
