"""Checkpoints inside the warehouse: ``training/<run_id>/epoch-NNNN.pt`` and ``best.pt``.

They hold tensors, numbers and dicts only (state dicts, epoch, RNG state), written with
``torch.save`` and read back with ``torch.load(weights_only=True)``: no pickled objects.
Writes are atomic (a partial file of :mod:`sightql.partial_files`, then a rename). Only the newest
epoch checkpoint is kept.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from sightql.errors import SightQLError
from sightql.partial_files import partial_path, remove_dead_partials

TRAINING_DIR = "training"


def run_dir(home: Path, run_id: str) -> Path:
    return home / TRAINING_DIR / run_id


def _atomic_save(obj: Any, destination: Path) -> str:
    import torch

    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(destination.parent)  # left by a run that was killed outright
    tmp = partial_path(destination)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with open(destination, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cpu_state(module: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(home: Path, run_id: str, epoch: int, state: dict[str, Any]) -> tuple[Path, str]:
    """``state``: model/optimizer/scheduler/scaler state dicts, epoch, best metric, RNG state."""
    path = run_dir(home, run_id) / f"epoch-{epoch:04d}.pt"
    return path, _atomic_save(state, path)


def save_best_weights(home: Path, run_id: str, module: Any) -> Path:
    path = run_dir(home, run_id) / "best.pt"
    _atomic_save(_cpu_state(module), path)
    return path


def load_best_weights(home: Path, run_id: str) -> dict[str, Any]:
    return _load(run_dir(home, run_id) / "best.pt")


def load_checkpoint(path: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    if expected_sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected_sha256:
            raise SightQLError(f"checkpoint {path.name} changed since it was written (sha256 differs); resume from a fresh run")
    return _load(path)


def _load(path: Path) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise SightQLError(f"checkpoint {path} is missing; start a new run instead of resuming")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_state(module: Any) -> dict[str, Any]:
    """The state dict of a module, unwrapping DistributedDataParallel."""
    inner = getattr(module, "module", module)
    return _cpu_state(inner)


def rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
