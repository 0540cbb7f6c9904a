"""One registered model version, as stored in ``sightql_model_versions``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sightql.models.card import ModelCard

VERSION_COLUMNS = (
    "name", "version", "framework", "task", "card_json", "artifact_path", "sha256", "size_bytes",
    "derived_onnx_path", "derived_onnx_sha256", "trusted", "description", "created_at", "load_options",
)

_FRAMEWORK_NAMES = {"tensorflow": "TensorFlow", "keras": "Keras", "torch": "PyTorch", "transformers": "transformers (PyTorch)",
                   "open_clip": "open_clip (PyTorch)"}


@dataclass(frozen=True)
class VersionRecord:
    name: str
    version: str
    framework: str
    task: str
    card_json: str
    artifact_path: str  # relative to the warehouse folder
    sha256: str
    size_bytes: int
    derived_onnx_path: str | None
    derived_onnx_sha256: str | None
    trusted: bool
    description: str
    created_at: datetime | None = None
    load_options: str = "{}"

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> "VersionRecord":
        return cls(*row)

    @property
    def ref(self) -> str:
        """The exact reference, e.g. 'defects@v3'."""
        return f"{self.name}@{self.version}"

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.load_options or "{}")

    @property
    def card(self) -> ModelCard:
        return ModelCard.from_json(self.card_json)

    @property
    def runtime(self) -> str:
        """What runs this version on the CPU, and why (``models show``), and its precision where not fp32."""
        engine = self._engine()
        precision = self.card.runtime
        if precision == "int8":
            made = self.options.get("provenance", {})
            source = f" (quantized from {made['quantized_from']})" if made.get("quantized_from") else ""
            return f"{engine}, int8{source}"
        if precision == "fp16":
            return f"{engine}; fp16 on a CUDA GPU"
        return engine

    def _engine(self) -> str:
        if self.framework in ("onnx", "onnx-dual"):
            return "ONNX Runtime"
        shown = _FRAMEWORK_NAMES.get(self.framework, self.framework)
        if self.derived_onnx_path:
            return f"ONNX Runtime (converted from {shown} at log time and checked against it)"
        if self.framework == "sentence-transformers":
            return "sentence-transformers (PyTorch)"
        note = self.options.get("onnx_note")
        return f"runs through {shown}" + (f": {note}" if note else "")

    def artifact(self, home: Path) -> Path:
        return home / self.artifact_path

    def derived_onnx(self, home: Path) -> Path | None:
        return home / self.derived_onnx_path if self.derived_onnx_path else None
