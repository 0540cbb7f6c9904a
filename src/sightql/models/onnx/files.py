"""Read an ONNX file's input shape without running it (the file is data: no code runs when loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightql.errors import ConfigError


def static_onnx_input(path: Path) -> dict[str, Any]:
    """Height, width, channels and layout from an ONNX file's first input, where its shape is fixed."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ConfigError(f"{path.name} is not a readable ONNX file ({type(exc).__name__}); export it again") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        return {}
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or any(d is None or d <= 0 for d in dims[1:]):
        return {}
    if dims[1] in (1, 3):
        return {"layout": "NCHW", "channels": dims[1], "height": dims[2], "width": dims[3]}
    if dims[3] in (1, 3):
        return {"layout": "NHWC", "channels": dims[3], "height": dims[1], "width": dims[2]}
    return {}
