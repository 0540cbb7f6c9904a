"""Export a torch module to ONNX once, and prove the export agrees with torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sightql.errors import SightQLError
from sightql.models import quiet
from sightql.models.base import finish_output
from sightql.models.card import ModelCard
from sightql.partial_files import partial_path, remove_dead_partials

EXPORT_TOLERANCE = 1e-4


class ExportCheckError(SightQLError):
    """The ONNX export does not reproduce the torch model's outputs."""


def export_onnx(module: Any, card: ModelCard, destination: Path) -> float:
    """Write ``destination`` (atomically) and return the max abs difference found.

    The file is written as ``<destination>.partial-<pid>-<hex>`` and renamed into place once
    checked; a partial file whose writer was killed is removed by the next export into the folder.

    The check runs the same random batch through torch and ONNX Runtime and
    compares the card's outputs (probabilities or vectors).
    """
    import torch

    module = module.eval().cpu()
    example = torch.randn(*card.input.shape(2))
    batch = torch.export.Dim("batch", min=1, max=4096)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(destination.parent)  # left by an export that was killed outright
    tmp = partial_path(destination)
    try:
        if isinstance(module, torch.jit.ScriptModule):
            # torch.export cannot trace TorchScript; the TorchScript exporter can.
            with quiet.legacy_onnx_exporter():
                torch.onnx.export(
                    module, (example,), str(tmp), dynamo=False, input_names=["input"], output_names=["output"],
                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, verbose=False,
                )
        else:
            program = torch.onnx.export(
                module, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                input_names=["input"], output_names=["output"], verbose=False,
            )
            program.save(str(tmp), external_data=False)
        diff = check_export(module, tmp, card)
        os.replace(tmp, destination)
        return diff
    finally:
        tmp.unlink(missing_ok=True)


def check_export(module: Any, onnx_path: Path, card: ModelCard, batch: int = 3) -> float:
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    sample = rng.standard_normal(card.input.shape(batch)).astype(np.float32)
    with torch.inference_mode():
        expected = finish_output(module(torch.from_numpy(sample)).numpy(), card)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = finish_output(session.run(None, {session.get_inputs()[0].name: sample})[0], card)
    diff = float(np.abs(expected - got).max())
    if diff > EXPORT_TOLERANCE:
        raise ExportCheckError(
            f"the ONNX export of {card.name!r} differs from torch by {diff:.2e} "
            f"(limit {EXPORT_TOLERANCE:.0e}); run it with device='cuda' or report the model"
        )
    return diff
