"""What a training run returns: :class:`TrainResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    probe_val_acc: float | None = None  # epoch 0, the linear probe (None with probe=False)
    probe_val_loss: float | None = None
    best_val_acc: float | None = None  # the best epoch's, as logged (epoch 0 included)
    chosen: dict[str, Any] = field(default_factory=dict)  # settings chosen from the data: {name: {value, why}}
    stop_reason: str = ""  # why training stopped; says so when the probe head stayed best

    def __repr__(self) -> str:
        acc = self.evaluation.get("accuracy")
        return (f"TrainResult(run_id={self.run_id!r}, status={self.status!r}, best_epoch={self.best_epoch}, "
                f"val_accuracy={acc}, probe_val_accuracy={self.probe_val_acc}, registered_version={self.registered_version!r})")
