"""PyTorch adapter: the GPU path, and the reference the ONNX export is checked against."""

from __future__ import annotations

from typing import Any

import numpy as np

from sightql.models.base import finish_output
from sightql.models.card import ModelCard


class TorchPredictor:
    def __init__(self, module: Any, card: ModelCard, device: str = "cpu"):
        import torch

        self._torch = torch
        self.device = device
        self.card = card
        self.model_version = card.name
        self._module = module.eval().to(device)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            raw = self._module(tensor)
        return finish_output(raw.float().cpu().numpy(), self.card)
