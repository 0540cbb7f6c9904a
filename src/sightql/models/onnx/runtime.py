"""ONNX Runtime adapter: the CPU path for every image model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sightql.config import onnx_threads
from sightql.models.base import finish_output
from sightql.models.card import ModelCard


class OnnxPredictor:
    device = "cpu"

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or onnx_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads would spin on the cores the decode threads need between batches;
        # measured here, not spinning gave 10-20% more img/s on the SQL path.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.card = card
        self.model_version = card.name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        (raw,) = self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[:1]
        return finish_output(raw, self.card)
