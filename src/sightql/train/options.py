"""Every training setting in one checked, JSON-serialisable record (stored with the run).

:class:`TrainOptions` is the one place the settings, their defaults and their checks are written.
``session.train``, ``sightql train``, the app's Training page, a background job and the ranks of a
torchrun job all build or receive one; a process hands it to another as JSON
(:meth:`TrainOptions.to_json` / :meth:`TrainOptions.from_json`), never as rebuilt flags.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, Literal

from sightql.errors import ConfigError
from sightql.images.spec import RESIZE_MODES

Schedule = Literal["cosine", "step", "none"]
Augment = Literal["none", "light", "standard"]
Precision = Literal["auto", "fp32", "bf16"]
SCHEDULES = ("cosine", "step", "none")
PRECISIONS = ("auto", "fp32", "bf16")
AUGMENTS = ("none", "light", "standard")
_WHOLE = ("batch_size", "seed", "checkpoint_every", "decode_threads", "image_cache_mb", "warmup_epochs")
_WHOLE_OR_NONE = ("epochs", "unfreeze_after", "image_size", "patience")
_NUMBERS = ("weight_decay", "backbone_lr_factor", "val_fraction")
_SWITCHES = ("amp", "register", "probe")


@dataclass(frozen=True)
class TrainOptions:
    """One field per training setting, with its default; docs/training.md explains each. Checked when made.

    ``epochs``, ``image_size``, ``resize`` and ``patience`` left None, and ``lr='auto'``, are chosen from
    the data when the run starts (:mod:`sightql.train.auto_settings`); the run's params keep the values chosen.
    """

    name: str
    source: str
    image: str = "image"
    label: str = "label"
    base: str = "efficientnet_lite0"
    weights_path: str | None = None
    epochs: int | None = None  # an upper bound: early stopping may end the run sooner
    batch_size: int = 32
    lr: float | Literal["auto"] = "auto"
    schedule: Schedule = "cosine"
    warmup_epochs: int = 1  # the rate rises linearly, step by step, over the first fine-tuning epochs; 0: none
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
    probe: bool = True  # epoch 0: a linear probe on the frozen body's features (sightql.train.probe)
    decode_threads: int = 0
    precision: Precision = "auto"
    image_cache_mb: int = 512
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_types()
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} is not valid; train for at least 1 epoch")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} is not valid; use 1 or more")
        if self.lr != "auto" and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                  or not 0 < self.lr < math.inf):
            raise ConfigError(f"lr={self.lr!r} is not valid; use a positive learning rate such as 1e-3, or 'auto'")
        if not 0 < self.backbone_lr_factor <= 1:
            raise ConfigError(f"backbone_lr_factor={self.backbone_lr_factor} is not valid; use a value in (0, 1]")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs={self.warmup_epochs} is not valid; use 0 (no warm-up) or more epochs")
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
        if self.resize is not None and self.resize not in RESIZE_MODES:
            raise ConfigError(f"resize={self.resize!r} is not valid; use 'squash' (whole image), 'pad' (whole image, "
                              "aspect kept), 'shorter' (centre crop) or None (chosen from the data)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} is not known; use one of {', '.join(PRECISIONS)}")
        if self.image_cache_mb < 0:
            raise ConfigError(f"image_cache_mb={self.image_cache_mb} is not valid; use 0 (no cache) or more megabytes")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every} is not valid; use 1 or more epochs")
        if self.patience is not None and self.patience < 0:
            raise ConfigError(f"patience={self.patience} is not valid; use 1 or more epochs, 0 to never stop early, "
                              "or None (chosen from the data)")
        if not (self.class_weights is None or self.class_weights == "balanced" or isinstance(self.class_weights, dict)):
            raise ConfigError(
                f"class_weights={self.class_weights!r} is not valid; use 'balanced', None or a dict of label -> weight"
            )

    def _check_types(self) -> None:
        """Numbers and switches of the right kind, so a value from JSON or a form fails in one sentence."""
        for name in _WHOLE + _WHOLE_OR_NONE + _NUMBERS + _SWITCHES:
            value = getattr(self, name)
            if value is None and name in _WHOLE_OR_NONE:
                continue
            if name in _SWITCHES:
                ok, kind = isinstance(value, bool), "True or False"
            elif name in _NUMBERS:
                ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
            else:
                ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
            if not ok:
                raise ConfigError(f"{name}={value!r} is not valid; use {kind}" + (" or None" if name in _WHOLE_OR_NONE else ""))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def check_names(cls, names: Any) -> None:
        """A ConfigError naming the close match for the first name that is not a setting."""
        known = cls.field_names()
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]}=?" if close else "see TrainOptions in docs/training.md for the settings"
                raise ConfigError(f"{name}= is not a training setting; {hint}")

    @classmethod
    def build(cls, options: "TrainOptions | None" = None, **overrides: Any) -> "TrainOptions":
        """``options`` (or the defaults) with ``overrides`` applied, checked again.

        An override of None leaves a setting whose default is not None as it was (``lr=None``
        keeps ``'auto'``); for a setting that may be None (``epochs``, ``image_size``, ``patience``, ...) it sets None.
        """
        cls.check_names(overrides)
        given = {k: v for k, v in overrides.items() if v is not None or DEFAULTS.get(k, MISSING) is None}
        if options is not None:
            return replace(options, **given)
        if given.get("name") is None or given.get("source") is None:
            raise ConfigError("training needs name= (the model to register) and source= (a table or '@stage/prefix')")
        return cls(**given)

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), sort_keys=True)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> "TrainOptions":
        if not isinstance(data, dict):
            raise ConfigError("training options JSON must be an object of setting -> value, as TrainOptions.to_json writes")
        return cls.build(**data)

    @classmethod
    def from_json(cls, text: str) -> "TrainOptions":
        """The options :meth:`to_json` wrote; an unknown setting or a bad value is a ConfigError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"training options are not valid JSON ({exc.msg} at line {exc.lineno}); "
                              "write them with TrainOptions.to_json") from None
        return cls.from_json_dict(data)


# Each setting's default, for the places that show them (``sightql train --help``); settings without one are absent.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainOptions) if f.default is not MISSING}
