"""``registry.quantize``: a registered classifier's ONNX file to an int8 version, or the built-in's int8 variant."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError
from sightql.models.builtin import INT8_REF, cached_imagenet_int8, imagenet_int8_gate
from sightql.models.quantized import build_quantized
from sightql.quantize.sample import draw_sample
from sightql.registry import Registry
from sightql.registry.artifacts import verify
from sightql.registry.loading import derived_onnx_file
from sightql.registry.records import VersionRecord
from sightql.stages.catalog import StageCatalog

STORED_FIGURES = ("held_out_images", "int8_top1_agreement", "int8_top5_contains_fp32_top1", "fp32_accuracy",
                  "int8_accuracy", "labelled_held_out_images", "calibration_images", "int8_speedup_batch32")


def fp32_onnx(record: VersionRecord, home: Path) -> Path:
    """The ONNX file a version runs on the CPU (its own, or the one derived at log time), its hash checked."""
    if record.card.runtime == "int8":
        raise ConfigError(f"{record.ref} is already int8; quantize the version it was made from")
    if record.framework == "onnx":
        return verify(record.artifact(home), record.sha256, record.ref)
    derived = derived_onnx_file(record, home)
    if derived is None:
        raise ConfigError(f"{record.ref} has no ONNX file ({record.runtime}); only models that run on ONNX Runtime can be quantized")
    return derived


def quantize_builtin(home: Path, calibrate: str | None, force: bool) -> dict[str, Any]:
    if calibrate is not None:
        raise ConfigError(
            "the built-in's int8 variant is calibrated on the bundled photos; to calibrate on your images, "
            "fine-tune it on them with sightql train, then quantize that model"
        )
    cached_imagenet_int8(home / "models", force=force)
    gate = imagenet_int8_gate(home / "models")
    return {"ref": INT8_REF, **(gate or {})}


def quantize_with_stages(stages: StageCatalog, registry: Registry, ref: str, **options: Any) -> Any:
    """``registry.quantize`` as the Session wires it: calibration images are read through ``stages``."""
    return quantize_model(registry, stages, ref, **options)


def quantize_model(registry: Registry, stages: StageCatalog, ref: str, *, calibrate: str | None, n: int, image: str,
                   label: str | None, held_out: int, threshold: float, force: bool, seed: int, method: str) -> Any:
    """Quantize ``ref`` (see :meth:`sightql.registry.Registry.quantize`); returns the new ModelVersion, or the
    built-in variant's gate report for 'imagenet'."""
    home = registry.home
    if ref in ("imagenet", INT8_REF):
        return quantize_builtin(home, calibrate, force)
    record = registry.resolve(ref)
    source = fp32_onnx(record, home)
    if calibrate is None:
        raise ConfigError(
            f"quantizing {record.ref} needs images like the ones it will see: pass calibrate= (CLI: --calibrate) "
            "a table, '@stage/prefix' or a table of FILE values"
        )
    sample = draw_sample(registry.warehouse, stages, calibrate, image, label, n, held_out, seed)
    with tempfile.TemporaryDirectory(prefix="sightql-int8-") as folder:
        out = Path(folder) / f"{record.name}-{record.version}-int8.onnx"
        report = build_quantized(
            source, record.card, out, sample.calibration, sample.held_out, sample.held_out_labels,
            threshold=threshold, force=force, name=record.ref, method=method,
        )
        metrics = {k: float(report[k]) for k in STORED_FIGURES if k in report}
        provenance = {
            "quantized_from": record.ref, "calibrated_on": calibrate, "seed": seed, "forced": report["forced"],
            "threshold": threshold, "weights": report["weights"], "activations": report["activations"],
            "kept_fp32": report["kept_fp32"],
        }
        card = record.card
        return registry.log_model(
            out, record.name, framework="onnx", task=card.task, labels=list(card.labels), input=card.input,
            output=card.output, metrics=metrics, runtime="int8",
            description=f"{record.ref} in int8 ({report['sentence']})" + ("; kept with force" if report["forced"] else ""),
            provenance=provenance,
        )
