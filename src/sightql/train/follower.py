"""A torchrun rank other than 0: rank 0's plan, the shared rows, the same epochs; never the warehouse."""

from __future__ import annotations

from pathlib import Path

from sightql.images.decode import ImageLimits
from sightql.images.spec import InputSpec
from sightql.models.device import resolve_device
from sightql.train.bases import build_unweighted
from sightql.train.distributed import Group
from sightql.train.fit import fit
from sightql.train.options import TrainOptions
from sightql.train.probe import probe_from_plan
from sightql.train.result import TrainResult
from sightql.train.shared_rows import SharedRowsReader


def train_worker(group: Group) -> TrainResult:
    """A rank other than 0: the plan from rank 0, the shared rows, the same epochs; no warehouse."""
    import torch

    plan = group.receive_plan()
    options = TrainOptions.from_json_dict(plan["options"])  # JSON inside the JSON plan
    torch.manual_seed(options.seed)
    labels = plan["labels"]
    spec = InputSpec(**{**plan["input"], "mean": tuple(plan["input"]["mean"]), "std": tuple(plan["input"]["std"])})
    base = build_unweighted(plan["base_kind"], len(labels), spec)
    resume_from = None if plan["resume"] is None else (plan["resume"][0], Path(plan["resume"][1]), plan["resume"][2])
    reader = SharedRowsReader(Path(plan["rows"]), plan["source"])
    try:
        train_rows, val_rows = reader.split()
        state = fit(options, labels, base, spec, group.device(resolve_device(options.device)), train_rows, val_rows,
                    reader, ImageLimits(**plan["limits"]), group, None, False, resume_from,
                    probe_from_plan(plan.get("probe")))
    finally:
        reader.close()
    outcome = group.receive_outcome()
    return TrainResult(plan["run_id"], "completed", state.best_epoch, outcome["registered_version"], labels, [],
                       {"accuracy": outcome["val_accuracy"]}, rank=group.rank)
