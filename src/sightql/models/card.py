"""The model card: everything needed to feed a model and read its answer.

Preprocessing travels with the model. Inference and training derive their
transforms from :class:`~sightql.images.spec.InputSpec` and never hard-code sizes or statistics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from sightql.images.spec import InputSpec

Task = Literal["classification", "embedding", "zero-shot"]
Modality = Literal["image", "text"]
# How the model's numbers are computed: 'fp32'; 'int8' (a quantized ONNX file, run by ONNX Runtime on the CPU);
# 'fp16' (half precision where a CUDA GPU runs it; the CPU, which gains nothing from fp16, runs it in fp32).
Runtime = Literal["fp32", "int8", "fp16"]
RUNTIMES: tuple[str, ...] = ("fp32", "int8", "fp16")


@dataclass(frozen=True)
class ModelCard:
    name: str
    task: Task = "classification"
    framework: str = "onnx"
    labels: tuple[str, ...] = ()
    input: InputSpec = field(default_factory=InputSpec)
    output: Literal["probabilities", "logits", "embedding"] = "probabilities"
    description: str = ""
    # What the model reads: images (preprocessed by ``input``) or text (its own tokenizer).
    modality: Modality = "image"
    # A zero-shot dual encoder (task 'zero-shot'): the scale of its cosine similarities before the softmax,
    # and the prompt templates ('a photo of a {}.') whose label texts are averaged per label.
    logit_scale: float | None = None
    templates: tuple[str, ...] = ()
    runtime: Runtime = "fp32"

    def with_name(self, name: str) -> "ModelCard":
        return replace(self, name=name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelCard":
        spec = dict(raw.get("input", {}))
        for key in ("mean", "std"):
            if key in spec:
                spec[key] = tuple(spec[key])
        return cls(
            name=raw["name"],
            task=raw.get("task", "classification"),
            framework=raw.get("framework", "onnx"),
            labels=tuple(raw.get("labels", ())),
            input=InputSpec(**spec),
            output=raw.get("output", "probabilities"),
            description=raw.get("description", ""),
            modality=raw.get("modality", "image"),
            logit_scale=raw.get("logit_scale"),
            templates=tuple(raw.get("templates", ())),
            runtime=raw.get("runtime", "fp32"),
        )

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        return cls.from_dict(json.loads(text))
