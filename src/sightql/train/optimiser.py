"""The optimiser, learning-rate schedule and loss a run trains with, from its options."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from sightql.errors import ConfigError
from sightql.train.options import TrainOptions


def class_weights(option: Any, labels: list[str], train_labels: list[str]) -> list[float] | None:
    """The loss's weight per label for ``class_weights=`` (None, 'balanced' or {label: weight})."""
    if option is None:
        return None
    counts = Counter(train_labels)
    if option == "balanced":  # sklearn's n_samples / (n_classes * count)
        return [len(train_labels) / (len(labels) * max(counts[label], 1)) for label in labels]
    unknown = set(option) - set(labels)
    if unknown:
        raise ConfigError(f"class_weights names unknown label(s) {sorted(unknown)}; the labels are {labels}")
    return [float(option.get(label, 1.0)) for label in labels]


def scheduler(optimizer: Any, schedule: str, epochs: int) -> Any | None:
    import torch

    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(epochs / 3)), gamma=0.1)
    return None


def optimizer(base: Any, options: TrainOptions) -> Any:
    """AdamW: the new head at ``lr``, the pretrained body at ``lr * backbone_lr_factor``."""
    import torch

    head_ids = {id(p) for p in base.head.parameters()}
    body = [p for p in base.module.parameters() if id(p) not in head_ids]
    return torch.optim.AdamW(
        [{"params": list(base.head.parameters()), "lr": options.lr},
         {"params": body, "lr": options.lr * options.backbone_lr_factor}],  # pretrained layers move gently
        weight_decay=options.weight_decay,
    )


def loss_function(options: TrainOptions, labels: list[str], train_labels: list[str], device: str) -> Any:
    import torch

    weights = class_weights(options.class_weights, labels, train_labels)
    return torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, device=device) if weights else None)
