"""Build a logged version's card and record: run the opened model once on zeros to check its outputs
against the labels and to tell logits from probabilities."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sightql.errors import ConfigError
from sightql.models.card import ModelCard
from sightql.models.keras.runtime import KerasPredictor
from sightql.models.tensorflow.runtime import text_card, wrap
from sightql.registry.artifacts import check_size, sha256_of
from sightql.registry.intake import Intake
from sightql.registry.loading import load_version
from sightql.registry.records import VersionRecord

OUTPUTS = ("logits", "probabilities", "embedding")


def output_kind(raw: np.ndarray, task: str, requested: str | None) -> str:
    if requested is not None:
        if requested not in OUTPUTS:
            raise ConfigError(f"output={requested!r} is not valid; use one of {', '.join(OUTPUTS)}")
        return requested
    if task == "embedding":
        return "embedding"
    looks_like_probabilities = (
        np.all(raw >= 0) and np.all(raw <= 1) and np.allclose(raw.sum(axis=1), 1.0, atol=1e-3)
    )
    return "probabilities" if looks_like_probabilities else "logits"


def build_record(
    intake: Intake, home: Path, name: str, version: str, task: str, labels: tuple[str, ...], description: str,
    trust: bool, limit: int,
) -> tuple[VersionRecord, ModelCard]:
    """The version's record (pointing into the staging folder) and its card, checked by one probe."""
    framework, artifact, spec = intake.framework, intake.artifact, intake.spec
    card = ModelCard(name=name, task=task, framework=framework, labels=labels, input=spec,  # type: ignore[arg-type]
                     output="embedding", description=description)
    record = VersionRecord(
        name=name, version=version, framework=framework, task=task, card_json=card.to_json(),
        artifact_path=artifact.relative_to(home).as_posix(), sha256=sha256_of(artifact), size_bytes=0,
        derived_onnx_path=None, derived_onnx_sha256=None, trusted=bool(trust), description=description,
        load_options=json.dumps(intake.options, sort_keys=True),
    )
    zeros = np.zeros(spec.shape(2), dtype=np.float32)
    if framework == "torch":
        raw = _torch_raw(intake.model, spec.shape(2))
    elif framework == "keras":
        raw = KerasPredictor(intake.model, card).predict(zeros)  # checks the card against the model, as loading does
    else:
        probe = _saved_model(intake, card) if framework == "tensorflow" else load_version(record, home, "cpu")
        if probe.card.modality == "text":  # a text model: its card comes from its own config
            card = replace(probe.card, name=name, description=description)
            task = "embedding"
            raw = np.asarray(probe.embed_texts(["probe"]), dtype=np.float32)  # type: ignore[union-attr]
        else:
            raw = probe.predict(zeros)  # type: ignore[union-attr]
    raw = np.asarray(raw, dtype=np.float32)
    raw = raw.reshape(raw.shape[0], -1)
    if task == "classification" and raw.shape[1] != len(labels):
        raise ConfigError(
            f"the model gives {raw.shape[1]} outputs but {len(labels)} labels were given; pass exactly one label per output"
        )
    card = replace(card, task=task, output=output_kind(raw, task, intake.output))  # type: ignore[arg-type]
    record = replace(record, task=task, card_json=card.to_json(), size_bytes=check_size(artifact, limit))
    return record, card


def _saved_model(intake: Intake, card: ModelCard) -> Any:
    """The SavedModel opened at intake, as its predictor (a text model's card comes from its signature)."""
    if intake.options.get("modality") == "text":
        card = text_card(card.name, card.description)
    return wrap(intake.model, card)


def _torch_raw(module: Any, shape: tuple[int, ...]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = module(torch.zeros(*shape))
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the model returned a {type(out).__name__}, not a tensor; wrap it to return one tensor")
    return out.float().numpy()
