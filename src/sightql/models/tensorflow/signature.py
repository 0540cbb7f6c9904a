"""Load a SavedModel and pick what SightQL calls: the signature, its one input and its output.

Found when not chosen: the ``serving_default`` signature (else the only one; with none, the
object's traced ``__call__``, as TF-Hub's reusable SavedModels have it); its only input,
which must be image-like (rank 4, float or uint8, 1 or 3 channels last (NHWC) or first (NCHW))
or a batch of strings (a text model); and its only float output with a batch axis. Anything
ambiguous or unfit is refused in one sentence that names the option to choose with
(``signature=``, ``input_name=``, ``output_name=``). The choice is kept in the version's
load options, so every later load runs the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from sightql.errors import ConfigError, UnsafeModelError
from sightql.models.tensorflow.backend import import_tensorflow

DEFAULT_SIGNATURE = "serving_default"
CALL = "__call__"  # the object's own traced call, for a SavedModel without signatures
CALL_OUTPUT = "output_0"  # the name a traced call's single (not dict) output goes by
# Ops that read, write or list files when run: a model's signature has no business with them.
FILE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "Save", "SaveV2", "SaveSlices", "Restore",
    "RestoreV2", "RestoreSlice", "MergeV2Checkpoints", "ImmutableConst", "FixedLengthRecordDataset",
    "TextLineDataset", "TFRecordDataset", "WriteSummary", "CreateSummaryFileWriter", "DebugIdentityV3",
})


@dataclass(frozen=True)
class SignatureInfo:
    """What SightQL calls in a SavedModel and what the input looks like."""

    signature: str
    input_name: str
    output_name: str
    modality: Literal["image", "text"]
    dtype: str  # the input's dtype, e.g. 'float32', 'uint8', 'string'
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    height: int | None = None
    width: int | None = None
    channels: int | None = None

    def options(self) -> dict[str, Any]:
        """What the version records, so a later load calls the same function."""
        return {"signature": self.signature, "input_name": self.input_name, "output_name": self.output_name,
                "modality": self.modality}

    def card_input(self) -> dict[str, Any]:
        """The card's input defaults for an image model: its own size, channels and layout (224 where the
        model takes any size), squashed to size, and pixels in [0, 1] (as TF-Hub image models take them),
        or 0-255 for a uint8 input. ``input=`` overrides any of it."""
        channels = self.channels or 3
        fields: dict[str, Any] = {"layout": self.layout, "channels": channels, "resize": "squash",
                                  "scale": 1.0 if self.dtype == "uint8" else 1.0 / 255.0,
                                  "mean": (0.0,) * channels, "std": (1.0,) * channels}
        if self.height is not None:
            fields["height"] = self.height
        if self.width is not None:
            fields["width"] = self.width
        return fields


def _dims(spec: Any) -> list[int | None] | None:
    return None if spec.shape.rank is None else [None if d is None else int(d) for d in spec.shape.as_list()]


def image_layout(spec: Any) -> tuple[str, int | None, int | None, int] | None:
    """(layout, height, width, channels) of an image-like input spec, else None."""
    dims = _dims(spec)
    if dims is None or len(dims) != 4 or not (spec.dtype.is_floating or spec.dtype.name == "uint8"):
        return None
    _, a, b, c = dims
    if c in (1, 3):
        return "NHWC", a, b, c
    if a in (1, 3) and c is not None:
        return "NCHW", b, c, a
    if c is None and a is None:  # any size and any channels: the common TF (channels-last) form
        return "NHWC", None, None, 3
    return None


def is_text_input(spec: Any) -> bool:
    dims = _dims(spec)
    return spec.dtype.name == "string" and (dims is None or len(dims) == 1)


def _shape_text(spec: Any) -> str:
    dims = _dims(spec)
    shown = "any shape" if dims is None else "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"
    return f"{spec.dtype.name} {shown}"


class SavedModel:
    """A loaded SavedModel and the one function SightQL calls in it; ``run`` calls it on a batch.

    The loaded object is kept: its variables live as long as it does.
    """

    def __init__(self, loaded: Any, function: Any, info: SignatureInfo):
        self._tf = import_tensorflow()
        self._loaded = loaded
        self.function = function
        self.info = info

    def __call__(self, tensor: Any) -> Any:
        """The chosen output for a TensorFlow tensor (float32 images, or strings), inside TensorFlow."""
        tf = self._tf
        if self.info.modality == "image" and self.info.dtype != "float32":
            dtype = tf.as_dtype(self.info.dtype)
            tensor = tf.saturate_cast(tf.round(tensor), dtype) if dtype.is_integer else tf.cast(tensor, dtype)
        return self.function(**{self.info.input_name: tensor})[self.info.output_name]

    def run(self, batch: np.ndarray | Sequence[str]) -> np.ndarray:
        tf = self._tf
        if self.info.modality == "text":
            tensor = tf.constant(list(batch), dtype=tf.string)
        else:
            tensor = tf.constant(np.ascontiguousarray(batch, dtype=np.float32))
        out = self(tensor)
        return np.asarray(out.numpy(), dtype=np.float32)


def load_saved_model(
    folder: Path, shown: str, *, signature: str | None = None, input_name: str | None = None,
    output_name: str | None = None, trust: bool = False,
) -> SavedModel:
    """Load the SavedModel in ``folder`` and pick its signature, input and output (``shown`` names it in messages)."""
    tf = import_tensorflow()
    try:
        loaded = tf.saved_model.load(str(folder))
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises many kinds for an unreadable model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(
            f"TensorFlow {tf.__version__} could not load the SavedModel in {shown} ({first}); save it again with "
            "tf.saved_model.save"
        ) from None
    name, function = _pick_signature(loaded, shown, signature)
    inputs = dict(function.structured_input_signature[1])
    info = _pick_input(inputs, name, shown, input_name)
    outputs = function.structured_outputs
    info = _with_output(info, outputs if isinstance(outputs, dict) else {}, shown, output_name)
    if not trust:
        _check_no_file_ops(function, name, shown)
    return SavedModel(loaded, function, info)


def _pick_signature(loaded: Any, shown: str, chosen: str | None) -> tuple[str, Any]:
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if chosen == CALL or (chosen is None and not signatures):
        return CALL, _call_function(loaded, shown)
    if chosen is not None:
        if chosen not in signatures:
            raise ConfigError(
                f"{shown} has no signature {chosen!r}; its signatures: {', '.join(sorted(signatures)) or 'none'}"
            )
        return chosen, signatures[chosen]
    if DEFAULT_SIGNATURE in signatures:
        return DEFAULT_SIGNATURE, signatures[DEFAULT_SIGNATURE]
    if len(signatures) == 1:
        return next(iter(signatures.items()))
    raise ConfigError(
        f"{shown} has {len(signatures)} signatures ({', '.join(sorted(signatures))}) and none is serving_default; "
        "choose one with signature= (CLI --signature)"
    )


def _call_function(loaded: Any, shown: str) -> "CallFunction":
    """The object's own ``__call__`` (TF-Hub's reusable SavedModels have it, often without signatures),
    traced for one tensor plus Python values such as ``training``; the trace with ``training=False`` first."""
    traced = list(getattr(getattr(loaded, "__call__", None), "concrete_functions", None) or [])
    tf = import_tensorflow()
    usable = [
        f for f in traced
        if f.structured_input_signature[0] and isinstance(f.structured_input_signature[0][0], tf.TensorSpec)
        and not any(isinstance(v, tf.TensorSpec) for v in (*f.structured_input_signature[0][1:],
                                                            *f.structured_input_signature[1].values()))
    ]
    if not usable:
        raise ConfigError(
            f"{shown} has no signatures, and no __call__ traced for one tensor, to call; save it with "
            "tf.saved_model.save(model, path, signatures=model.serve) or model.export(path)"
        )
    usable.sort(key=lambda f: True in (*f.structured_input_signature[0][1:], *f.structured_input_signature[1].values()))
    return CallFunction(loaded, usable[0])


class CallFunction:
    """A traced ``__call__`` dressed as a signature: its tensor by name in, a dict of outputs out."""

    def __init__(self, loaded: Any, traced: Any):
        args, kwargs = traced.structured_input_signature
        self._loaded, self._rest, self._kwargs = loaded, args[1:], kwargs
        name = args[0].name or "inputs"
        self.structured_input_signature = ((), {name: args[0]})
        outputs = traced.structured_outputs
        self.structured_outputs = outputs if isinstance(outputs, dict) else {CALL_OUTPUT: outputs}
        self.graph = traced.graph

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        (tensor,) = inputs.values()
        out = self._loaded(tensor, *self._rest, **self._kwargs)
        return out if isinstance(out, dict) else {CALL_OUTPUT: out}


def _pick_input(inputs: dict[str, Any], signature: str, shown: str, chosen: str | None) -> SignatureInfo:
    listed = ", ".join(f"{n} ({_shape_text(s)})" for n, s in sorted(inputs.items())) or "none"
    if chosen is not None and chosen not in inputs:
        raise ConfigError(f"signature {signature!r} of {shown} has no input {chosen!r}; its inputs: {listed}")
    if len(inputs) != 1:
        raise ConfigError(
            f"signature {signature!r} of {shown} takes {len(inputs)} inputs ({listed}); SightQL feeds one image "
            "or text input, so choose a signature with one input (signature=, CLI --signature)"
        )
    name, spec = next(iter(inputs.items()))
    if is_text_input(spec):
        return SignatureInfo(signature, name, "", "text", "string")
    image = image_layout(spec)
    if image is None:
        raise ConfigError(
            f"signature {signature!r} of {shown} takes {name} ({_shape_text(spec)}), which is neither images "
            "(float or uint8 [N, H, W, 1 or 3] or [N, 1 or 3, H, W]) nor a batch of strings; choose another "
            "signature with signature= (CLI --signature)"
        )
    layout, height, width, channels = image
    return SignatureInfo(signature, name, "", "image", spec.dtype.name, layout, height, width, channels)  # type: ignore[arg-type]


def _with_output(info: SignatureInfo, outputs: dict[str, Any], shown: str, chosen: str | None) -> SignatureInfo:
    listed = ", ".join(f"{n} ({_shape_text(s)})" for n, s in sorted(outputs.items())) or "none"
    if chosen is not None:
        if chosen not in outputs:
            raise ConfigError(f"signature {info.signature!r} of {shown} has no output {chosen!r}; its outputs: {listed}")
        return replace(info, output_name=chosen)
    fit = [n for n, s in outputs.items() if s.dtype.is_floating and (_dims(s) is None or len(_dims(s) or []) >= 2)]
    if len(fit) == 1:
        return replace(info, output_name=fit[0])
    if not fit:
        raise ConfigError(
            f"signature {info.signature!r} of {shown} gives no float output per input (its outputs: {listed}); "
            "choose another signature with signature= (CLI --signature)"
        )
    raise ConfigError(
        f"signature {info.signature!r} of {shown} gives {len(fit)} outputs ({listed}); choose one with "
        "output_name= (CLI --output-name)"
    )


def _check_no_file_ops(function: Any, signature: str, shown: str) -> None:
    graph = function.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for library_function in graph.library.function:
        ops.update(node.op for node in library_function.node_def)
    found = sorted(ops & FILE_OPS)
    if found:
        raise UnsafeModelError(
            f"signature {signature!r} of {shown} runs TensorFlow ops that read or write files ({', '.join(found)}); "
            "pass trust=True (CLI --trust) only if you trust its author"
        )
