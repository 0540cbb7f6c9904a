"""Take in a TensorFlow SavedModel for ``log_model``: unpack or copy it into the staging folder, open
it once, and build its card's input from the signature (``input=`` overriding).

The warehouse keeps the SavedModel folder itself (an archive is unpacked once, here), so loading a
version never unpacks anything. Messages name the path the user gave.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sightql.errors import ConfigError
from sightql.images.spec import InputSpec
from sightql.models.tensorflow.archive import archive_kind, archive_stem, extract
from sightql.models.tensorflow.files import saved_model_root
from sightql.models.tensorflow.signature import SavedModel, SignatureInfo, load_saved_model
from sightql.registry.artifacts import DERIVED_ONNX, artifact_name, check_size
from sightql.registry.inputs import InputArg, build_input_spec

_UNPACKING = ".unpacking"


@dataclass(frozen=True)
class SignatureChoice:
    """What the caller chose in a SavedModel (None: found automatically)."""

    signature: str | None = None
    input_name: str | None = None
    output_name: str | None = None

    def given(self) -> list[str]:
        return [k for k in ("signature", "input_name", "output_name") if getattr(self, k) is not None]


def place_saved_model(staging: Path, source: Path, limit: int) -> Path:
    """The SavedModel folder of ``source`` (a folder, .zip or .tar.gz) copied into ``staging``, within ``limit`` bytes."""
    if source.is_dir():
        root = saved_model_root(source, str(source))
        check_size(root, limit)
        target = staging / artifact_name(source)  # TF Serving's model/1/ is kept as model/
        shutil.copytree(root, target, symlinks=False)
        return target
    if archive_kind(source) is None:
        raise ConfigError(
            f"{source} is neither a SavedModel folder nor a .zip/.tar.gz of one; give the folder tf.saved_model.save wrote"
        )
    check_size(source, limit)
    unpacked = staging / _UNPACKING
    try:
        extract(source, unpacked, limit)
        root = saved_model_root(unpacked, str(source))
        name = archive_stem(source)
        target = staging / (name if name not in (_UNPACKING, DERIVED_ONNX) else "model")
        shutil.move(str(root), str(target))
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    return target


def open_saved_model(folder: Path, source: Path, choice: SignatureChoice, trust: bool) -> SavedModel:
    return load_saved_model(
        folder, str(source), signature=choice.signature, input_name=choice.input_name,
        output_name=choice.output_name, trust=trust,
    )


def saved_model_input(info: SignatureInfo, user: InputArg, source: Path) -> InputSpec:
    """The card's input: the signature's own size, channels and layout, pixels in [0, 1]; ``user`` overrides,
    but a size, channel count or layout the model cannot take is refused naming both."""
    if info.modality == "text":
        return build_input_spec(None)
    spec = build_input_spec(user, info.card_input())
    for field, model_value in (("height", info.height), ("width", info.width), ("channels", info.channels)):
        if model_value is not None and getattr(spec, field) != model_value:
            raise ConfigError(
                f"input {field} {getattr(spec, field)} does not fit {source}, whose signature takes {field} {model_value}; "
                "leave it out of input= or give the model's own"
            )
    if spec.layout != info.layout:
        raise ConfigError(f"input layout {spec.layout} does not fit {source}, whose signature takes {info.layout}; leave layout out of input=")
    return spec
