"""Each epoch's writes by the process holding the warehouse: the log, checkpoints, the best weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sightql.sql.warehouse import Warehouse
from sightql.train import checkpoints
from sightql.train.progress_file import ProgressFile
from sightql.train.runs import RunStore


@dataclass
class RunWriter:
    """What only the process holding the warehouse does each epoch: the log, checkpoints, the best weights."""

    warehouse: Warehouse
    store: RunStore
    run_id: str
    reporter: ProgressFile  # the JSON progress file other processes read (a no-op without a path)

    def checkpoint(self, epoch: int, state: dict[str, Any]) -> None:
        path, sha = checkpoints.save_checkpoint(self.warehouse.home, self.run_id, epoch, state)
        self.store.add_checkpoint(self.run_id, epoch, path, sha)

    def epoch(self, result: Any) -> None:
        self.store.log_epoch(self.run_id, result.row())
        if result.images_per_rank is not None:  # under torchrun: how the epoch's rows were shared out
            params = json.loads(self.store.get(self.run_id)["params"])
            shares = params["extra"].setdefault("distributed", {}).setdefault("train_images_per_rank", {})
            shares[str(result.epoch)] = result.images_per_rank
            self.store.update_params(self.run_id, params)

    def best(self, result: Any, module: Any) -> None:
        checkpoints.save_best_weights(self.warehouse.home, self.run_id, module)
        self.store.set_best(self.run_id, result.epoch, result.val_acc)

    def stopped(self, reason: str) -> None:
        """Why the epochs ended (early stop or the epoch limit), in ``training_runs.stop_reason`` as soon as they
        end; the finished run adds the probe's sentence there when epoch 0 stayed best (:func:`probe.summary`)."""
        self.store.set_stop_reason(self.run_id, reason)

    def resumed(self, epoch: int) -> None:
        self.store.forget_epochs_after(self.run_id, epoch)
