"""What a built Keras model's own shapes say: input size, channels, layout, outputs, last activation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sightql.errors import ConfigError
from sightql.images.spec import InputSpec
from sightql.models.keras.backend import import_keras
from sightql.models.keras.load import load_model


@dataclass(frozen=True)
class KerasInfo:
    """What a Keras model's own shapes say about how to feed it and read it."""

    height: int | None
    width: int | None
    channels: int | None
    outputs: int
    softmax: bool
    layout: Literal["NCHW", "NHWC"] = "NHWC"

    @property
    def output(self) -> Literal["probabilities", "logits"]:
        """A softmax last layer already gives probabilities; otherwise SightQL applies softmax."""
        return "probabilities" if self.softmax else "logits"

    def card_input(self) -> dict[str, Any]:
        """The card's input defaults for this model: its own size, channels and layout; squash to
        size, pixels * 1/255.

        That is what ``ImageDataGenerator(rescale=1/255)`` / ``Rescaling(1/255)`` training feeds a model:
        no mean or std. A caller's ``input`` overrides any of it; the adapter then refuses a card
        whose size, channels or layout disagree with the model.
        """
        fields: dict[str, Any] = {"layout": self.layout, "resize": "squash", "scale": 1.0 / 255.0}
        for key in ("height", "width", "channels"):
            if getattr(self, key) is not None:
                fields[key] = getattr(self, key)
        channels = self.channels or 3
        fields.update(mean=(0.0,) * channels, std=(1.0,) * channels)
        return fields

    def input_spec(self, **overrides: Any) -> InputSpec:
        """An InputSpec with the model's size, channels and layout; mean/std/scale etc. from ``overrides``."""
        if self.height is None or self.width is None or self.channels is None:
            raise ConfigError(
                "the Keras model accepts inputs of any size; give height, width and channels explicitly in its card"
            )
        values: dict[str, Any] = {
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "layout": self.layout,
        }
        if self.channels == 1:
            values.update(mean=(0.0,), std=(1.0,))
        values.update(overrides)
        return InputSpec(**values)


def _output_layer(model: Any) -> Any:
    history = getattr(model.outputs[0], "_keras_history", None) if getattr(model, "outputs", None) else None
    return history[0] if history else model.layers[-1]


def _is_softmax(layer: Any, keras: Any) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def describe_model(model: Any) -> KerasInfo:
    """Read input size, output width and last activation from a built Keras model."""
    keras = import_keras()
    try:
        in_shape = tuple(model.inputs[0].shape)
        out_shape = tuple(model.outputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        raise ConfigError("the Keras model has no defined input or output; save it after calling it once or with an Input layer") from None
    if len(in_shape) != 4:
        raise ConfigError(f"the Keras model takes inputs of shape {in_shape}, not images (batch, height, width, channels)")
    _, a, b, c = in_shape
    channels_first = c not in (1, 3, None) and a in (1, 3)
    height, width, channels = (b, c, a) if channels_first else (a, b, c)
    outputs = int(np.prod([d for d in out_shape[1:] if d is not None])) if len(out_shape) > 1 else 1
    return KerasInfo(
        height=height,
        width=width,
        channels=channels,
        outputs=outputs,
        softmax=_is_softmax(_output_layer(model), keras),
        layout="NCHW" if channels_first else "NHWC",
    )


def inspect_keras(path: Path, *, trust: bool = False) -> KerasInfo:
    """Build the model (after the safety check) and report its shapes, to fill a card's defaults."""
    return describe_model(load_model(Path(path), trust, "cpu"))
