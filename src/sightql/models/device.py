"""Choose where a model runs. A GPU is looked for without importing torch when none exists."""

from __future__ import annotations

import glob
import os

from sightql.errors import ConfigError


def _nvidia_driver_present() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.isdir("/proc/driver/nvidia/gpus")


def cuda_available() -> bool:
    if not _nvidia_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a CUDA GPU is usable, else 'cpu'. 'cuda' without one is an error."""
    if requested == "cpu":
        return "cpu"
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested.startswith("cuda"):
        if not cuda_available():
            raise ConfigError("device='cuda' was asked for but no CUDA GPU is usable here; use device='cpu' or 'auto'")
        return requested
    raise ConfigError(f"device {requested!r} is not valid; use 'auto', 'cpu' or 'cuda'")
