"""The model's files for Dask workers on other machines: the driver ships them, once per worker.

A :class:`~sightql.registry.specs.ModelSpec` names its files relative to the driver's warehouse
folder, which a worker on another machine cannot see. For a cluster at a scheduler address the
driver reads the files the spec loads (a registry version's artifact and derived ONNX file; the
bundled model's exported ONNX file and card) and registers a worker plugin that writes them into
each worker's local directory (workers that join later get it too). The scheduler keeps the
plugin, named by the files' hashes, so a later run of the same model reads and sends nothing again. On the worker,
:func:`worker_spec` points the spec at that copy; loading it re-hashes the artifact as always, so
a damaged copy is refused, never run. A local cluster's workers share the driver's disk: nothing
is shipped. Imported only when the Dask runner runs (it imports distributed).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from sightql.models.builtin import INT8_REF, cached_imagenet_int8, cached_imagenet_onnx
from sightql.registry.specs import ModelSpec

_shipped: dict[str, str] = {}  # in a worker process: model key -> the folder its files were written under


def model_key(spec: ModelSpec) -> str:
    """Which exact files ``spec`` loads: its version and, for a registry version, the recorded hashes."""
    record = spec.record
    hashes = (record.sha256, record.derived_onnx_sha256 or "") if record is not None else ("", "")
    return hashlib.sha256("\0".join((spec.model_version, *hashes)).encode()).hexdigest()[:32]


def model_files(spec: ModelSpec) -> dict[str, bytes]:
    """The files ``spec`` loads, by their path relative to the warehouse folder (read on the driver)."""
    home = Path(spec.home)
    paths: list[Path] = []
    if spec.builtin == "imagenet":
        onnx_path, _ = cached_imagenet_onnx(home / "models")  # exported already: predict read its card
        paths += [onnx_path, onnx_path.with_name("card.json")]
    elif spec.builtin == INT8_REF:
        int8_path, _ = cached_imagenet_int8(home / "models")  # built and gated already: predict read its card
        paths += [int8_path, int8_path.with_name("card.json")]
    elif spec.record is not None:
        for found in (spec.record.artifact(home), spec.record.derived_onnx(home)):
            if found is not None and found.is_dir():
                paths += sorted(p for p in found.rglob("*") if p.is_file())
            elif found is not None:
                paths.append(found)
    return {p.relative_to(home).as_posix(): p.read_bytes() for p in paths}


class ShipModel(WorkerPlugin):
    """Writes one model's files into the worker's local directory when the worker sets the plugin up."""

    def __init__(self, key: str, files: dict[str, bytes]) -> None:
        self.key, self.files = key, files
        self.name = self.name_of(key)
        self.idempotent = True  # registered again by a later run of the same model: the workers keep their copy

    @staticmethod
    def name_of(key: str) -> str:
        return f"sightql-model-{key}"

    def setup(self, worker: Any) -> None:
        home = Path(worker.local_directory) / "sightql-models" / self.key
        for relative, data in self.files.items():
            target = home / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(partial, target)
        _shipped[self.key] = str(home)


def ship_model(client: Any, spec: ModelSpec) -> bool:
    """Register :class:`ShipModel` for ``spec`` on ``client``'s cluster, unless the scheduler has it from an
    earlier run (then the files are neither read nor sent again); returns whether it was shipped now."""
    name = ShipModel.name_of(model_key(spec))
    if client.run_on_scheduler(_has_worker_plugin, name):
        return False
    plugin = ShipModel(model_key(spec), model_files(spec))
    client.register_plugin(plugin, name=plugin.name)
    return True


def _has_worker_plugin(name: str, dask_scheduler: Any = None) -> bool:
    """On the scheduler: whether a worker plugin of this name is registered."""
    return name in dask_scheduler.worker_plugins


def shipped_models() -> dict[str, str]:
    """On a worker: the models shipped to it (key -> folder), for diagnostics."""
    return dict(_shipped)


def worker_spec(spec: ModelSpec) -> ModelSpec:
    """On a worker: ``spec`` pointed at the copy the driver shipped here, or as it is when none was."""
    home = _shipped.get(model_key(spec))
    return spec if home is None else replace(spec, home=home)
