"""Every training setting in one checked, JSON-serialisable record (stored with the run)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sightql.errors import ConfigError

Schedule = Literal["cosine", "step", "none"]
Augment = Literal["none", "light", "standard"]
SCHEDULES = ("cosine", "step", "none")
AUGMENTS = ("none", "light", "standard")


@dataclass(frozen=True)
class TrainOptions:
    name: str
    source: str
    image: str = "image"
    label: str = "label"
    base: str = "efficientnet_lite0"
    weights_path: str | None = None
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    schedule: Schedule = "cosine"
    weight_decay: float = 1e-4
    backbone_lr_factor: float = 0.1
    freeze: str | int = "none"
    unfreeze_after: int | None = None
    image_size: int | None = None
    resize: str | None = None
    augment: Augment = "light"
    val_fraction: float = 0.2
    split_column: str | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    patience: int | None = None
    class_weights: str | dict[str, float] | None = None
    checkpoint_every: int = 1
    test: str | None = None
    register: bool = True
    decode_threads: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} is not valid; train for at least 1 epoch")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} is not valid; use 1 or more")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr} is not valid; use a positive learning rate such as 1e-3")
        if not 0 < self.backbone_lr_factor <= 1:
            raise ConfigError(f"backbone_lr_factor={self.backbone_lr_factor} is not valid; use a value in (0, 1]")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r} is not known; use one of {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"augment={self.augment!r} is not known; use one of {', '.join(AUGMENTS)}")
        if isinstance(self.freeze, bool) or not (
            self.freeze in ("backbone", "none") or (isinstance(self.freeze, int) and self.freeze >= 0)
        ):
            raise ConfigError(f"freeze={self.freeze!r} is not valid; use 'backbone', 'none' or a number of blocks")
        if self.split_column is None and not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction} is not valid; use a fraction between 0 and 1, e.g. 0.2")
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"image_size={self.image_size} is too small; use 16 pixels or more")
        if self.resize not in (None, "shorter", "squash"):
            raise ConfigError(f"resize={self.resize!r} is not valid; use 'shorter' (centre crop), 'squash' (whole image) or None")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every} is not valid; use 1 or more epochs")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience={self.patience} is not valid; use 1 or more epochs, or None")
        if not (self.class_weights is None or self.class_weights == "balanced" or isinstance(self.class_weights, dict)):
            raise ConfigError(
                f"class_weights={self.class_weights!r} is not valid; use 'balanced', None or a dict of label -> weight"
            )

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)
