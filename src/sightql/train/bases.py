"""Base networks for transfer learning: a pretrained body, a new head, blocks to freeze, a card input.

``efficientnet_lite0`` is bundled (offline). A torchvision architecture reads the weights file
the user gives (``weights_path=``) or torchvision's own download when online. A registry
reference continues from a registered torchvision state dict, or from a version that
``session.train`` registered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError
from sightql.images.spec import InputSpec
from sightql.models.torch import efficientnet_lite
from sightql.models.torch.files import build_architecture, last_linear_name, read_state_dict, torchvision_architectures
from sightql.registry import Registry
from sightql.sql.warehouse import Warehouse
from sightql.train import checkpoints
from sightql.train.runs import RunStore


BUNDLED = "efficientnet_lite0"
TORCHVISION_INPUT = InputSpec()  # ImageNet mean/std, resize shorter side, centre crop


@dataclass
class BaseModel:
    module: Any  # torch.nn.Module with a fresh head of num_classes outputs
    blocks: list[Any]  # ordered feature blocks (stem first) that freeze=N counts
    head: Any  # the new classifier layer
    input: InputSpec  # preprocessing the base expects, before image_size is applied
    kind: str  # 'efficientnet_lite0' or a torchvision architecture name (rebuilds the module)


def _set_submodule(root: Any, dotted: str, new: Any) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _replace_head(module: Any, num_classes: int) -> Any:
    import torch

    head_name = last_linear_name(module)
    if head_name is None:
        raise ConfigError("the base has no final linear layer to replace; pick a classification architecture")
    old = module.get_submodule(head_name)
    head = torch.nn.Linear(old.in_features, num_classes)
    _set_submodule(module, head_name, head)
    return head


def _torchvision_blocks(module: Any, head: Any) -> list[Any]:
    features = getattr(module, "features", None)
    if features is not None and len(list(features.children())) > 1:
        return list(features.children())
    return [child for child in module.children() if head not in list(child.modules())]


def _bundled(module: Any, num_classes: int) -> BaseModel:
    """An EfficientNet-Lite0 module with a fresh head of ``num_classes``, its blocks, set up for fine-tuning."""
    import torch

    module._fc = torch.nn.Linear(module._fc.in_features, num_classes)
    track_batch_statistics(module)
    stem = torch.nn.ModuleList([module._conv_stem, module._bn0])
    blocks = [stem, *module._blocks, torch.nn.ModuleList([module._conv_head, module._bn1])]
    return BaseModel(module.train(), blocks, module._fc, efficientnet_lite.INPUT_SPEC, BUNDLED)


def _efficientnet_lite0(num_classes: int) -> BaseModel:
    return _bundled(efficientnet_lite.build(num_classes=1000, pretrained=True), num_classes)


def track_batch_statistics(module: Any) -> None:
    """The package's BatchNorm momentum is TF's 0.99 (0.01 in torch terms): too slow for fine-tuning, where
    the running statistics then lag the changing weights and evaluation falls apart. Use torch's 0.1."""
    import torch

    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.momentum = 0.1


def rebuild(kind: str, num_classes: int) -> Any:
    """The architecture alone (no pretrained weights), with a head of ``num_classes``: for loading a state dict."""
    import torch
    import torchvision

    if kind == BUNDLED:
        return efficientnet_lite.build(num_classes=num_classes, pretrained=False)
    module = torchvision.models.get_model(kind, weights=None)
    _replace_head(module, num_classes)
    return module


def _torchvision(arch: str, num_classes: int, weights_path: str | None) -> BaseModel:
    import torch
    import torchvision

    if arch not in torchvision_architectures():
        raise ConfigError(
            f"base {arch!r} is not known; use 'efficientnet_lite0', a torchvision architecture such as 'resnet18', "
            "or a registry reference such as 'xray@prod'"
        )
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights file {weights_path} does not exist; pass the path of {arch}'s .pth state dict")
        state = read_state_dict(path)
        if state is None:
            raise ConfigError(f"{path.name} holds no state dict; pass torchvision's {arch} .pth weights file")
        module = torchvision.models.get_model(arch, weights=None)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{path.name} does not fit {arch} ({str(exc).splitlines()[0]}); pass {arch}'s own weights") from None
    else:
        try:
            module = torchvision.models.get_model(arch, weights="DEFAULT")
        except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
            raise ConfigError(
                f"cannot download the pretrained {arch} weights ({type(exc).__name__}); pass weights_path= "
                f"(CLI: --weights) with the .pth file, or use base='efficientnet_lite0' which is bundled"
            ) from None
    head = _replace_head(module, num_classes)
    assert isinstance(module, torch.nn.Module)
    return BaseModel(module.train(), _torchvision_blocks(module, head), head, TORCHVISION_INPUT, arch)


def _from_registry(warehouse: Warehouse, registry: Registry, ref: str, num_classes: int) -> BaseModel:
    """A registered torchvision state dict, or a version registered by a training run."""
    record = registry.resolve(ref)
    trained = RunStore(warehouse).run_that_registered(record.ref)
    if trained is not None:
        params = json.loads(trained["params"])
        kind = params["extra"]["base_kind"]
        state = checkpoints.load_best_weights(warehouse.home, trained["run_id"])
        old_classes = len(json.loads(record.card_json)["labels"])
        module = rebuild(kind, old_classes)
        module.load_state_dict(state, strict=True)
    elif record.framework == "torch" and record.options.get("format") == "state_dict" and record.options.get("architecture"):
        kind = record.options["architecture"]
        state = read_state_dict(record.artifact(warehouse.home))
        module = build_architecture(kind, state or {})
    else:
        raise ConfigError(
            f"{record.ref} cannot be fine-tuned (it is {record.framework}, not a torchvision state dict or a "
            "version made by session.train); use base='efficientnet_lite0' or a torchvision architecture"
        )
    if kind == BUNDLED:
        return replace(_bundled(module, num_classes), input=replace(record.card.input))
    head = _replace_head(module, num_classes)
    return BaseModel(module.train(), _torchvision_blocks(module, head), head, replace(record.card.input), kind)


def build_unweighted(kind: str, num_classes: int, spec: InputSpec) -> BaseModel:
    """The architecture rank 0 built, without weights: under torchrun the other ranks build this and
    DistributedDataParallel copies rank 0's parameters and buffers into it (nothing read, nothing downloaded)."""
    if kind == BUNDLED:
        return replace(_bundled(efficientnet_lite.build(num_classes=1000, pretrained=False), num_classes), input=spec)
    import torchvision

    module = torchvision.models.get_model(kind, weights=None)
    head = _replace_head(module, num_classes)
    return BaseModel(module.train(), _torchvision_blocks(module, head), head, spec, kind)


def build_base(warehouse: Warehouse, registry: Registry, base: str, num_classes: int,
               weights_path: str | None = None) -> BaseModel:
    """The base named ``base`` (bundled, a torchvision architecture, or a registry reference) with a fresh head."""
    if base == BUNDLED:
        return _efficientnet_lite0(num_classes)
    if "@" in base or base in registry.model_names():
        return _from_registry(warehouse, registry, base, num_classes)
    return _torchvision(base, num_classes, weights_path)


def apply_freeze(base: BaseModel, freeze: str | int) -> int:
    """Freeze the whole body ('backbone'), nothing ('none') or the first N blocks; returns trainable tensors."""
    for p in base.module.parameters():
        p.requires_grad = True
    if freeze == "backbone":
        head_params = {id(p) for p in base.head.parameters()}
        for p in base.module.parameters():
            p.requires_grad = id(p) in head_params
    elif isinstance(freeze, int) and freeze > 0:
        if freeze > len(base.blocks):
            raise ConfigError(f"freeze={freeze} but the base has {len(base.blocks)} blocks; use at most {len(base.blocks)}")
        for block in base.blocks[:freeze]:
            for p in block.parameters():
                p.requires_grad = False
    return sum(1 for p in base.module.parameters() if p.requires_grad)


def train_input(base: BaseModel, image_size: int | None, resize: str | None = None) -> InputSpec:
    """The card input: the base's statistics at the chosen size; ``resize='squash'`` keeps the whole image
    (no centre crop), for data whose evidence can sit at the border."""
    spec = base.input
    if image_size is not None:
        spec = replace(spec, height=image_size, width=image_size)
    if resize is not None:
        spec = replace(spec, resize=resize)  # type: ignore[arg-type]
    return spec
