"""Training a warehouse's model from a process of its own: alone, or as one rank of a ``torchrun`` job.

``sightql train`` calls :func:`train_warehouse`. Alone, it opens the warehouse and runs
``session.train``. Under torchrun (``RANK`` and ``WORLD_SIZE`` > 1 in the environment), rank 0
alone opens the warehouse and leads the run (see :mod:`sightql.train.distributed`); the other
ranks follow its plan, which carries the options as JSON, without ever opening the DuckDB file,
which allows one writer process.

A process entry point like the CLI (it opens the warehouse with :func:`sightql.connect`), so it
lives with the adapters, above the Session; the training library below takes the warehouse, the
registry and the stages the Session composed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightql.config import Settings
from sightql.session import connect
from sightql.train.distributed import Group, distributed_env
from sightql.train.follower import train_worker
from sightql.train.options import TrainOptions
from sightql.train.result import TrainResult
from sightql.train.run import train


def train_warehouse(path: str | Path | None = None, options: TrainOptions | None = None, *, resume: str | None = None,
                    progress: bool = True, progress_file: str | Path | None = None,
                    **overrides: Any) -> TrainResult:
    """``sightql.connect(path).train(options=options, **overrides)``, and the same on every rank of a torchrun job.

    ``overrides`` are :class:`TrainOptions` fields, as for ``Session.train``. Under torchrun every
    rank calls this with the same arguments; rank 0's result is the full
    :class:`~sightql.train.result.TrainResult`, the others' carry ``rank`` and the registered version.
    A failure on any rank marks the run failed and raises on every rank.
    """
    env = distributed_env()
    if env is None:
        with connect(path) as session:
            return session.train(options=options, resume=resume, progress=progress, progress_file=progress_file,
                                 **overrides)
    if resume is None:
        options = TrainOptions.build(options, **overrides)  # checked on every rank; rank 0's travel in its plan
    group = Group.join(env, max(1.0, Settings.from_env().ddp_timeout))
    try:
        try:
            if group.is_lead:
                with connect(path) as session:
                    result = train(session.warehouse, session.registry, session.stages, options, resume=resume,
                                   epochs=overrides.get("epochs"), progress=progress, group=group,
                                   progress_file=progress_file)
            else:
                result = train_worker(group)
        except BaseException as exc:
            echo = group.explain(exc)
            if echo is None or group.is_lead:
                group.failed(echo or exc)
            if echo is not None and echo is not exc:
                raise echo from None
            raise
        if group.is_lead:
            group.send_outcome({
                "run_id": result.run_id, "best_epoch": result.best_epoch,
                "registered_version": result.registered_version, "val_accuracy": result.evaluation.get("accuracy"),
            })
        return result
    finally:
        group.close()
