"""A zero-shot dual encoder's card and record at log time: load it once from the staging folder, check
that its two towers give vectors of one width, and record its preprocessing, logit scale and templates."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from sightql.errors import ConfigError
from sightql.models.card import ModelCard
from sightql.models.zero_shot.encoder import DEFAULT_TEMPLATES, check_templates
from sightql.models.zero_shot.layouts import layout_templates
from sightql.registry.artifacts import check_size, sha256_of
from sightql.registry.intake import Intake
from sightql.registry.loading import load_version
from sightql.registry.records import VersionRecord

ZERO_SHOT = "zero-shot"
HOW_TO_LOG = (
    "sightql models log ./clip-folder --name clip --task zero-shot "
    "(Python: session.registry.log_model('./clip-folder', 'clip', task='zero-shot'))"
)


def zero_shot_record(
    intake: Intake, home: Path, name: str, version: str, templates: Sequence[str] | None, description: str,
    trust: bool, limit: int,
) -> VersionRecord:
    """The version's record (pointing into the staging folder), its card checked by one probe of both towers."""
    artifact = intake.artifact
    chosen = check_templates(templates or layout_templates(artifact, intake.framework) or DEFAULT_TEMPLATES)
    card = ModelCard(name=name, task=ZERO_SHOT, framework=intake.framework, input=intake.spec, output="embedding",
                     description=description, templates=chosen)
    record = VersionRecord(
        name=name, version=version, framework=intake.framework, task=ZERO_SHOT, card_json=card.to_json(),
        artifact_path=artifact.relative_to(home).as_posix(), sha256=sha256_of(artifact), size_bytes=0,
        derived_onnx_path=None, derived_onnx_sha256=None, trusted=bool(trust), description=description,
        load_options=json.dumps(intake.options, sort_keys=True),
    )
    probe = load_version(record, home, "cpu")
    images = probe.embed_images(np.zeros(intake.spec.shape(2), dtype=np.float32))  # type: ignore[union-attr]
    texts = probe.embed_texts(["probe"])  # type: ignore[union-attr]
    if images.shape[0] != 2 or images.shape[1] != texts.shape[1]:
        raise ConfigError(
            f"{artifact.name}: the image encoder gives {images.shape[1]}-number vectors and the text encoder "
            f"{texts.shape[1]}; a dual encoder's two towers must map into one space of the same width"
        )
    card = replace(card, logit_scale=float(probe.logit_scale))  # type: ignore[union-attr]
    return replace(record, card_json=card.to_json(), size_bytes=check_size(artifact, limit))


__all__ = ["HOW_TO_LOG", "ZERO_SHOT", "zero_shot_record"]
