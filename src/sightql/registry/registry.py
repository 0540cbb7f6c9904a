"""The model registry's public facade: ``session.registry``, its models and versions.

Storage SQL lives in :mod:`sightql.registry.store`, reference resolution in
:mod:`sightql.registry.resolve`; this module says what the user may do and checks it.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from sightql.errors import ConfigError, ModelNotFoundError, RegistryError, SightQLError
from sightql.models.base import LoadedModel
from sightql.models.card import ModelCard
from sightql.registry.artifacts import REGISTRY_DIR
from sightql.registry.inputs import InputArg, LabelsArg
from sightql.registry.log import log_model
from sightql.registry.records import VersionRecord
from sightql.registry.refs import ModelRef, check_alias, parse_ref
from sightql.registry.resolve import known_model, resolve
from sightql.registry.saved_models import SignatureChoice
from sightql.registry.specs import ModelSpec, load_model, spec_for
from sightql.registry.store import RegistryStore
from sightql.sql.warehouse import Warehouse


# Copies a staged file or folder ('@stage/path') into a local folder, within a byte limit; returns its local path.
FetchStaged = Callable[[str, Path, int], Path]
# Quantizes a version to int8 on images from a source (sightql.quantize, given by the Session): called with the
# registry, the reference and Registry.quantize's options.
Quantizer = Callable[..., Any]


class Registry:
    """``session.registry``: log models, list them, and resolve references such as 'defects@prod'.

    ``fetch_staged`` lets ``log_model('@stage/path', ...)`` read a stage: the Session passes one over its
    stage catalog (the registry and the stages stand side by side, so neither imports the other).
    """

    def __init__(self, warehouse: Warehouse, fetch_staged: FetchStaged | None = None, quantizer: Quantizer | None = None):
        self.warehouse = warehouse
        self.store = RegistryStore(warehouse)
        self._fetch_staged = fetch_staged
        self._quantizer = quantizer

    # ---- plumbing -----------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.warehouse.home

    @property
    def settings(self) -> Any:
        return self.warehouse.settings

    # ---- public API ---------------------------------------------------------------
    def log_model(
        self,
        model_or_path: Any,
        name: str,
        version: str | None = None,
        framework: str = "auto",
        task: str = "classification",
        labels: LabelsArg = None,
        input: InputArg = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
        trust: bool = False,
        architecture: str | None = None,
        output: str | None = None,
        signature: str | None = None,
        input_name: str | None = None,
        output_name: str | None = None,
        templates: Sequence[str] | None = None,
        runtime: str = "fp32",
        provenance: Mapping[str, Any] | None = None,
    ) -> "ModelVersion":
        """Register a model file or folder (or an in-memory ``torch.nn.Module``) as the next version of ``name``.

        ``model_or_path`` may be ``'@stage/path'``: a file, folder or archive in a stage, copied out first.
        ``framework``: 'auto' (told from the file) or one of onnx, torch, keras, sentence-transformers, tensorflow.
        ``labels``: a list or a text file, one per line (classification). ``input``: an
        ``InputSpec`` or a dict of its fields plus ``size`` and ``rescale`` ('1/255').
        ``output``: 'logits', 'probabilities' or 'embedding'; guessed when None.
        ``signature``, ``input_name``, ``output_name``: what to call in a TensorFlow SavedModel (found when None).
        ``task='zero-shot'``: a CLIP-style dual encoder folder (Hugging Face CLIP, or ONNX encoders named by
        ``zero_shot.json``); ``templates``: its default prompt templates (``["a photo of a {}."]``).
        ``runtime``: 'fp32', or 'fp16' to run in half precision where a CUDA GPU runs it (int8 versions come from
        :meth:`quantize`). ``provenance``: how the file was made, kept with the version. Pickles are refused unless ``trust=True``. Returns the new :class:`ModelVersion`.
        """
        choice = SignatureChoice(signature, input_name, output_name)
        options: dict[str, Any] = dict(
            version=version, framework=framework, task=task, labels=labels, input=input, metrics=metrics,
            description=description, trust=trust, architecture=architecture, output=output, choice=choice,
            templates=templates, runtime=runtime, provenance=provenance,
        )
        if isinstance(model_or_path, str) and model_or_path.startswith("@"):
            record = self._log_staged(model_or_path, name, options)
        else:
            record = log_model(self.warehouse, self.store, model_or_path, name, **options)
        return self.get_model(name).version(record.version)

    def _log_staged(self, ref: str, name: str, options: dict[str, Any]) -> VersionRecord:
        """Copy ``'@stage/path'`` into a temporary folder and log that; messages name ``ref``, not the copy."""
        if self._fetch_staged is None:
            raise ConfigError(f"{ref} names a stage, which this registry cannot read; log it through a session (session.registry)")
        with tempfile.TemporaryDirectory(prefix="sightql-staged-model-") as folder:
            local = Path(folder)
            try:
                local = self._fetch_staged(ref, local, self.settings.max_model_bytes)
                return log_model(self.warehouse, self.store, local, name, **options)
            except SightQLError as exc:
                exc.args = tuple(a.replace(str(local), ref) if isinstance(a, str) else a for a in exc.args)
                raise

    def quantize(
        self, ref: str, calibrate: str | None = None, n: int = 300, image: str = "image", label: str | None = None,
        held_out: int = 1000, threshold: float = 0.98, force: bool = False, seed: int = 0, method: str = "minmax",
    ) -> "ModelVersion | dict[str, Any]":
        """A new version of ``ref`` in int8, calibrated on a seeded sample of ``n`` images of ``calibrate`` (a table,
        '@stage/prefix', or a table of FILE values) and gated on up to ``held_out`` other images of it: refused (with
        the figures) when fewer than ``threshold`` of them keep the fp32 top-1 label, unless ``force``.

        ``label``: a label column (or 'folder' for a stage's class folders), to also measure both accuracies.
        The gate's figures are stored as the new version's metrics. ``ref='imagenet'`` (no ``calibrate``) builds
        the built-in's int8 variant, 'imagenet@int8', from the bundled photos and returns its gate report.
        """
        if self._quantizer is None:
            raise ConfigError("this registry cannot read images to calibrate on; quantize through a session (session.registry)")
        return self._quantizer(self, ref, calibrate=calibrate, n=n, image=image, label=label, held_out=held_out,
                               threshold=threshold, force=force, seed=seed, method=method)

    def model_names(self) -> list[str]:
        return self.store.model_names()

    def refs(self, task: str | None = None) -> list[str]:
        """Each model as 'name' and 'name@alias', keeping those whose version does ``task`` (e.g. 'classification')."""
        refs: list[str] = []
        for name in self.model_names():
            for ref in [name, *(f"{name}@{alias}" for alias in self.get_model(name).aliases())]:
                try:
                    if task is None or self.resolve(ref).task == task:
                        refs.append(ref)
                except ModelNotFoundError:  # a model whose versions were all removed
                    continue
        return refs

    def show_models(self) -> pa.Table:
        """One row per model: default and latest version, how many versions, its aliases."""
        return self.store.models_table()

    def describe(self) -> list[dict[str, Any]]:
        """Every model with its default and latest version, aliases, and each version's card summary and metrics."""
        described = []
        for row in self.show_models().to_pylist():
            model = Model(self, row["name"], row["description"] or "")
            aliases = model.aliases()
            versions = [
                {
                    "version": v.version, "ref": v.ref, "framework": v.framework, "task": v.task,
                    "input": v.card.modality, "runtime": v.runtime,
                    "created_at": v.created_at.isoformat() if v.created_at else None,
                    "aliases": sorted(a for a, target in aliases.items() if target == v.version), "metrics": v.metrics,
                }
                for v in model.versions()
            ]
            described.append({
                "name": model.name, "description": model.description,
                "default_version": row["default_version"] or row["latest_version"],
                "latest_version": row["latest_version"], "aliases": aliases, "versions": versions,
            })
        return described

    def get_model(self, name: str) -> "Model":
        name, description = known_model(self.store, name)
        return Model(self, name, description)

    def delete_model(self, name: str) -> None:
        """Remove a model, all its versions, aliases and metrics, and its files."""
        model = self.get_model(name)
        users = [
            fn for fn, ref, _ in self.store.functions() if parse_ref(ref).name == model.name
        ]
        if users:
            raise RegistryError(
                f"SQL function(s) {', '.join(users)} use {name}; drop them first with session.drop_function(name)"
            )
        self.store.delete_model(name)
        shutil.rmtree(self.home / REGISTRY_DIR / name, ignore_errors=True)

    def resolve(self, ref: str | ModelRef) -> VersionRecord:
        """The exact version a reference names: 'name' (default, else latest), 'name@v3', '@latest', '@alias'."""
        return resolve(self.store, ref)

    def spec(self, ref: str, device: str | None = None) -> ModelSpec:
        """The small picklable description of the exact model ``ref`` names now: a built-in ('imagenet',
        'minilm') or a registry version; ``device`` defaults to the warehouse's."""
        return spec_for(self.resolve, self.home, ref, device or self.warehouse.device)

    def predictor(self, ref: str) -> LoadedModel:
        """The loaded model ``ref`` names now (a built-in or a registry version), through the one model cache:
        loaded once per process per exact version and device."""
        return load_model(self.spec(ref))


class Model:
    """A registered model name and its versions."""

    def __init__(self, registry: Registry, name: str, description: str = ""):
        self.registry = registry
        self.name = name
        self.description = description

    def __repr__(self) -> str:
        return f"Model({self.name!r})"

    @property
    def default_version(self) -> str | None:
        return self.registry.store.default_version(self.name)

    def versions(self) -> list["ModelVersion"]:
        return [ModelVersion(self.registry, record) for record in self.registry.store.versions(self.name)]

    def version(self, selector: str | None = None) -> "ModelVersion":
        """'v2', 'latest', an alias such as 'prod', or None for the default version."""
        ref = ModelRef(self.name, selector) if selector is None else parse_ref(f"{self.name}@{selector}")
        return ModelVersion(self.registry, self.registry.resolve(ref))

    def aliases(self) -> dict[str, str]:
        return self.registry.store.aliases(self.name)

    def _existing_version(self, version: str) -> str:
        versions = self.registry.store.version_names(self.name)
        if version not in versions:
            raise ModelNotFoundError(f"{self.name} has no version {version!r}; versions: {', '.join(versions)}")
        return version

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` in one statement, so readers see the old or the new target."""
        check_alias(alias)
        if alias in self.registry.store.version_names(self.name):
            raise RegistryError(f"{alias!r} is a version of {self.name}; pick an alias that is not a version name")
        version = self._existing_version(version)
        self.registry.store.set_alias(self.name, alias, version)

    def remove_alias(self, alias: str) -> None:
        if alias not in self.aliases():
            raise RegistryError(f"{self.name} has no alias {alias!r}; its aliases: {', '.join(self.aliases()) or 'none'}")
        self.registry.store.remove_alias(self.name, alias)

    def set_default(self, version: str | None) -> None:
        """The version plain 'name' resolves to; None means the latest."""
        if version is not None:
            self._existing_version(version)
        self.registry.store.set_default(self.name, version)

    def delete_version(self, version: str) -> None:
        """Remove one version, its metrics and files; refused while an alias or the default points at it."""
        self._existing_version(version)
        pointing = sorted(a for a, v in self.aliases().items() if v == version)
        if pointing:
            raise RegistryError(
                f"alias {', '.join(pointing)} points at {self.name}@{version}; move it first, "
                f"e.g. model.set_alias({pointing[0]!r}, '<other version>') or remove_alias({pointing[0]!r})"
            )
        if self.default_version == version:
            raise RegistryError(
                f"{self.name}@{version} is the default version; set another first with model.set_default('<version>')"
            )
        self.registry.store.delete_version(self.name, version)
        shutil.rmtree(self.registry.home / REGISTRY_DIR / self.name / version, ignore_errors=True)


class ModelVersion:
    """One exact, immutable model version: its card, artifact, metrics and aliases."""

    def __init__(self, registry: Registry, record: VersionRecord):
        self.registry = registry
        self.record = record

    def __repr__(self) -> str:
        return f"ModelVersion({self.ref!r}, framework={self.framework!r}, task={self.task!r})"

    name = property(lambda self: self.record.name)
    version = property(lambda self: self.record.version)
    framework = property(lambda self: self.record.framework)
    task = property(lambda self: self.record.task)
    sha256 = property(lambda self: self.record.sha256)
    size_bytes = property(lambda self: self.record.size_bytes)
    trusted = property(lambda self: self.record.trusted)
    description = property(lambda self: self.record.description)

    @property
    def ref(self) -> str:
        return self.record.ref

    @property
    def created_at(self) -> datetime | None:
        return self.record.created_at

    @property
    def card(self) -> ModelCard:
        return self.record.card

    @property
    def runtime(self) -> str:
        """What runs this version on the CPU and why, e.g. 'runs through TensorFlow: tf2onnx could not convert: ...'."""
        return self.record.runtime

    @property
    def artifact_path(self) -> Path:
        return self.record.artifact(self.registry.home)

    @property
    def metrics(self) -> dict[str, float]:
        return self.registry.store.metrics(self.name, self.version)

    @property
    def aliases(self) -> list[str]:
        return sorted(a for a, v in self.registry.get_model(self.name).aliases().items() if v == self.version)

    def set_metric(self, name: str, value: float) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a metric needs a name, e.g. set_metric('accuracy', 0.93)")
        self.registry.store.set_metric(self.name, self.version, name, float(value))

    def predictor(self) -> LoadedModel:
        return self.registry.predictor(self.ref)
